import * as pulumi from "@pulumi/pulumi";
import type { Credentials } from "./connectionInputs";

/**
 * Starts reading the host's facts from the program process as soon as the connection is known,
 * so the reads of all hosts overlap (the engine's `check` runs one resource at a time). The result
 * becomes an input that `check` plans from and drops; `preview` tells it whether this run is a
 * preview (show the plan) or the update that follows (decide same or update). While the
 * connection is unknown there is nothing to read. The reading code is loaded only when needed,
 * at run time, so importing the SDK never loads SSH code. Bad settings are never read for: `check`
 * refuses them before anything reaches the host.
 */
export function prefetchedFacts(resourceType: string, connection: pulumi.Output<Record<string, unknown>>, credentials: pulumi.Output<Credentials>, settings: pulumi.Inputs): pulumi.Output<unknown> {
  const preview = pulumi.runtime.isDryRun();
  // Settings are nearly always plain values: wrapping them in outputs only to unwrap them again
  // would cost the SDK a few KB per resource for the whole run.
  const parts: Array<pulumi.Input<unknown>> = [connection, credentials];
  if (holdsOutputs(settings)) parts.push(pulumi.output(settings));
  const facts = pulumi.all(parts).apply(([c, creds, s = settings]) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { prefetchFor } = require("../../provider/prefetch") as { prefetchFor(type: string, stored: object, preview: boolean, settings: unknown): Promise<unknown> };
    return prefetchFor(resourceType, { connection: c, credentials: creds }, preview, s).then((read) => {
      warnUnreachable(read as { error?: string; unreachable?: boolean } | undefined, preview);
      return read;
    });
  });
  // The host's output holds no credential; keep it from being marked secret with them.
  return pulumi.unsecret(facts);
}

/** Whether a value holds an output or a promise anywhere inside it. */
function holdsOutputs(value: unknown): boolean {
  if (pulumi.Output.isInstance(value) || value instanceof Promise) return true;
  if (typeof value !== "object" || value === null) return false;
  return Object.values(value).some(holdsOutputs);
}

const warned = new Set<string>();

/**
 * A preview goes on past a host it couldn't reach (its resources fail at the apply), and shows
 * why in their plans; but the engine cuts long values there, and the message's fix (how to get
 * into a host whose full conntrack table drops SSH, say) comes last. A warning is shown whole,
 * once per host and reason.
 */
function warnUnreachable(read: { error?: string; unreachable?: boolean } | undefined, preview: boolean): void {
  if (!preview || !read?.unreachable || !read.error || warned.has(read.error)) return;
  warned.add(read.error);
  pulumi.log.warn(read.error);
}
