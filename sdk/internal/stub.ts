import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "../connection";
import { splitConnection } from "./connectionInputs";
import { filterDebugLog } from "./debugLog";
import { prefetchedFacts } from "./prefetch";

/**
 * What Pulumi stores in every resource's state as its dynamic provider (`__provider`), written
 * by hand rather than produced by the closure serializer (which wraps each method in ~250 bytes
 * of scaffolding, ~1.9 KB stored twice per resource). It holds no logic: each call loads the
 * installed package's compiled provider, resolved from the program's node_modules by the
 * provider process, so state stays small and `read`/`delete` on an old stack run today's code.
 * The engine's dynamic-provider host evaluates this text and calls `handler()`.
 */
export const providerStub =
  'exports.handler=function(){function p(){return require("pulumi-conntrack/provider")}' +
  "return{check:function(o,n){return p().check(o,n)},diff:function(i,o,n){return p().diff(i,o,n)}," +
  "create:function(n){return p().create(n)},read:function(i,s){return p().read(i,s)}," +
  "update:function(i,o,n){return p().update(i,o,n)},delete:function(i,s){return p().delete(i,s)}}};";

/**
 * A dynamic resource of this package: the type token Pulumi gives dynamic resources
 * ("pulumi-nodejs:dynamic/<module>:<type>", routed to its dynamic-provider host) with our stub,
 * and what every resource carries: the connection split into a public and a secret half, and,
 * under `__program`, what the program knows: the resource's type, its name and "project/stack"
 * (which name it in the host's ledger, so two stacks never collide) and the host's facts read for
 * this run (prefetchedFacts). The SDK makes an output with its promises for every property, a few
 * KB each for the whole run, even for these, which nobody reads from the resource: so they travel
 * as one property, and `check` stores type, name and scope as properties of their own (the stored
 * inputs are those of earlier versions). Measured on a 200-host no-op preview (400 resources),
 * with the shared readable connection of prefetch.ts: the program's peak RSS 303-305 → 291-294 MB.
 *
 * The SDK's registration stamps every promise it makes with `new Error().stack`, kept only to
 * name a promise that leaks (PULUMI_DEBUG_PROMISE_LEAKS); with the program's source-map
 * support each stamp maps every frame. Our resources carry up to 14 properties, each stamped: measured
 * on a 50-host preview (100 resources), the stamps made while constructing them took 1.1 s of the
 * program's CPU, more than everything else the constructors do. So the constructor registers
 * with no stack frames unless leaks are being debugged, and so do the stamps the SDK makes later
 * (see unstampSdkPromises).
 */
export abstract class StubbedResource extends pulumi.CustomResource {
  constructor(type: string, name: string, connectionInput: pulumi.Input<ConnectionInput>, settings: pulumi.Inputs, outputs: string[], opts?: pulumi.CustomResourceOptions) {
    const split = splitConnection(connectionInput);
    const props: pulumi.Inputs = {
      ...settingsGiven(settings),
      connection: split.connection,
      credentials: split.credentials,
      __program: { resourceType: type, owner: name, scope: `${pulumi.getProject()}/${pulumi.getStack()}`, prefetched: prefetchedFacts(type, split, settings) },
      __provider: providerStub,
    };
    for (const o of ["previous", "live", "files", "plan", "warnings", ...outputs]) props[o] = undefined;
    unstampSdkPromises();
    filterDebugLog();
    const fullStacks = Error.stackTraceLimit;
    if (!process.env.PULUMI_DEBUG_PROMISE_LEAKS) Error.stackTraceLimit = 0;
    try {
      super(`pulumi-nodejs:dynamic/pulumi-conntrack:${type}`, name, props, { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "credentials"] });
    } catch (err) {
      // An error the SDK throws here (a duplicate name...) still points at the program's line.
      Error.stackTraceLimit = fullStacks;
      if (err instanceof Error) Error.captureStackTrace(err);
      throw err;
    } finally {
      Error.stackTraceLimit = fullStacks;
    }
  }
}

/**
 * The settings the program gave: a setting left out is left out of the resource's properties too.
 * The engine gets the same inputs either way (the SDK sends no undefined value), but the SDK makes
 * an output with its promises for every property it is given, a few KB each for the whole run.
 */
function settingsGiven(settings: pulumi.Inputs): pulumi.Inputs {
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
}

let sdkPromisesUnstamped = false;

/**
 * Stamps the SDK's promises with no stack frames, unless leaks are being debugged: the stamps
 * it makes after a constructor has returned (serializing inputs, resolving outputs, its debug
 * log calls), through its one stamping function, which every caller looks up on the module at
 * each call. The stacks are only ever printed with PULUMI_DEBUG_PROMISE_LEAKS, which keeps them.
 * Measured on a 200-host preview (400 resources), the program's peak RSS: 323-325 → 315-319 MB.
 * Should the SDK move that function, its stamps stay as they are.
 */
function unstampSdkPromises(): void {
  if (sdkPromisesUnstamped || process.env.PULUMI_DEBUG_PROMISE_LEAKS) return;
  sdkPromisesUnstamped = true;
  let debuggable: { debuggablePromise?: unknown };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    debuggable = require("@pulumi/pulumi/runtime/debuggable") as typeof debuggable;
  } catch {
    return;
  }
  const stamp = debuggable.debuggablePromise;
  if (typeof stamp !== "function") return;
  debuggable.debuggablePromise = (...args: unknown[]) => {
    const fullStacks = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return stamp(...args);
    } finally {
      Error.stackTraceLimit = fullStacks;
    }
  };
}
