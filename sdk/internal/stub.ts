import type * as pulumi from "@pulumi/pulumi";

/**
 * The provider object Pulumi serializes into state for every resource. It holds no logic: each
 * method loads the installed package's compiled provider when it runs, so state stays a few
 * hundred bytes and `delete`/`read` on an old stack run today's code, not a frozen copy.
 * The module path is a string literal on purpose: the closure serializer keeps `require(...)`
 * calls as text, which then resolve from the program's node_modules in the provider process.
 */
export function stubProvider(kind: string): pulumi.dynamic.ResourceProvider {
  return {
    check: (olds, news) => require("pulumi-conntrack/provider").dispatch(kind, "check", olds, news),
    diff: (id, olds, news) => require("pulumi-conntrack/provider").dispatch(kind, "diff", id, olds, news),
    create: (inputs) => require("pulumi-conntrack/provider").dispatch(kind, "create", inputs),
    read: (id, props) => require("pulumi-conntrack/provider").dispatch(kind, "read", id, props),
    update: (id, olds, news) => require("pulumi-conntrack/provider").dispatch(kind, "update", id, olds, news),
    delete: (id, props) => require("pulumi-conntrack/provider").dispatch(kind, "delete", id, props),
  };
}
