import type * as pulumi from "@pulumi/pulumi";

/**
 * The provider object Pulumi serializes into the state of every resource of this package. It
 * holds no logic: each method loads the installed package's compiled provider when it runs, so
 * state stays small and `read`/`delete` on an old stack run today's code, not a frozen copy.
 * The methods capture nothing (the provider picks the resource type from the props'
 * `resourceType`) and name the module with a string literal: the closure serializer keeps such
 * `require` calls as text, and they resolve from the program's node_modules in the provider process.
 */
export const stubProvider: pulumi.dynamic.ResourceProvider = {
  check(olds, news) { return require("pulumi-conntrack/provider").check(olds, news); },
  diff(id, olds, news) { return require("pulumi-conntrack/provider").diff(id, olds, news); },
  create(inputs) { return require("pulumi-conntrack/provider").create(inputs); },
  read(id, props) { return require("pulumi-conntrack/provider").read(id, props); },
  update(id, olds, news) { return require("pulumi-conntrack/provider").update(id, olds, news); },
  delete(id, props) { return require("pulumi-conntrack/provider").delete(id, props); },
};
