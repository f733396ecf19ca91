// Compile-time only (run by `npx tsc -p test/tsconfig.json`): the zod schemas the provider
// plugin's package schema is generated from (provider/plugin/outputs.ts) describe exactly what
// the Node.js SDK declares, so a YAML, Python, Go or .NET program reads the same outputs and
// readings a TypeScript one does. A field added, removed or retyped on one side fails here.
import type * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import type { ConntrackLimits, ConntrackStatus, FirewallState, KernelModuleSet, NotrackRule } from "pulumi-conntrack";
import type { conntrackStatusSchema, resourceOutputSchemas } from "../../provider/plugin/outputs";

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <A, B>(proof: Same<A, B>) => proof;

/** The outputs a resource class declares, as plain values. */
type Declared<R, K extends keyof R> = { [P in K]: R[P] extends pulumi.Output<infer T> ? T : never };
type Common = "previous" | "live" | "files" | "plan" | "warnings";
type Plugin<T extends keyof typeof resourceOutputSchemas> = z.output<(typeof resourceOutputSchemas)[T]>;

export const proofs = [
  same<Plugin<"ConntrackLimits">, Declared<ConntrackLimits, Common | "memoryEstimate">>(true),
  same<Plugin<"NotrackRule">, Declared<NotrackRule, Common>>(true),
  same<Plugin<"FirewallState">, Declared<FirewallState, Common>>(true),
  same<Plugin<"KernelModuleSet">, Declared<KernelModuleSet, Common | "resolved">>(true),
  same<z.output<typeof conntrackStatusSchema>, ConntrackStatus>(true),
];
