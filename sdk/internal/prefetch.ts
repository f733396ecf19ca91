import * as pulumi from "@pulumi/pulumi";
import type { SplitConnection } from "./connectionInputs";

/**
 * Starts reading the host's facts from the program process as soon as the connection is known,
 * so the reads of all hosts overlap (the engine's `check` runs one resource at a time). The result
 * becomes an input that `check` plans from and drops; `preview` tells it whether this run is a
 * preview (show the plan) or the update that follows (decide same or update). While the
 * connection is unknown there is nothing to read. The reading code is loaded only when needed,
 * at run time, so importing the SDK never loads SSH code. Bad settings are never read for: `check`
 * refuses them before anything reaches the host.
 */
export function prefetchedFacts(resourceType: string, split: SplitConnection, settings: pulumi.Inputs): pulumi.Output<unknown> {
  const preview = pulumi.runtime.isDryRun();
  const read = (stored: object, s: unknown) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { prefetchFor } = require("../../provider/prefetch") as { prefetchFor(type: string, stored: object, preview: boolean, settings: unknown): Promise<unknown> };
    return prefetchFor(resourceType, stored, preview, s).then((result) => {
      warnUnreachable(result as { error?: string; unreachable?: boolean } | undefined, preview);
      return result;
    });
  };
  // Each output costs the SDK a few KB of promises for the whole run: settings are nearly always
  // plain values, and the connection's readable form is shared by the resources on a host.
  if (!holdsOutputs(settings)) return split.forReading.apply((stored) => read(stored, settings));
  return pulumi.unsecret(pulumi.all([split.forReading, pulumi.output(settings)]).apply(([stored, s]) => read(stored, s)));
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
