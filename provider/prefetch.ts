import { conntrackLimitsKind } from "./conntrackLimits/provider";
import { notrackRuleKind } from "./notrackRule/provider";
import type { ZodType } from "zod";
import { conntrackLimitsSettingsSchema } from "../sdk/conntrackLimits.schema";
import { firewallStateSettingsSchema } from "../sdk/firewallState.schema";
import { kernelModuleSetSettingsSchema } from "../sdk/kernelModuleSet.schema";
import { notrackRuleSettingsSchema } from "../sdk/notrackRule.schema";
import { firewallStateKind } from "./firewallState/provider";
import { kernelModuleSetKind } from "./kernelModuleSet/provider";
import { alwaysRead, type Prefetched } from "./engine/hostFacts";
import { isUnreachable } from "./transport/dial";
import { readerList, type FactName } from "./facts/host";
import { batchScript } from "./facts/reader";
import { withConnection } from "./transport/borrowed";
import { parseTarget, toTarget, type HostTarget, type StoredConnection } from "./transport/target";

/**
 * Fact reads for planning, run in the PROGRAM process while resources are constructed.
 *
 * Why here: the engine calls a provider's `check` one resource at a time (step_generator.go), so a
 * read inside `check` makes a preview grow by one SSH round trip per host. The program instead
 * constructs every resource at once and waits for their inputs before it registers them, so reads
 * started here overlap across hosts; `check` then gets the host's output as an input, plans
 * without I/O and drops it from what state stores. Measured in bench/preview-fleet.mjs.
 *
 * Both runs of a `pulumi up` do this: its preview and its update are separate program and
 * provider processes (measured: a no-op `pulumi up` opened a second connection to each host
 * when the update's `check` read the host itself), and the update's `check` must know per resource
 * whether the host differs. The changes themselves are made by the provider, which re-reads
 * each host under its lock. Each host gets one connection from this process (shared with a getConntrackStatus on it
 * running at the same time), closed as soon as its read is done, and one read for every resource on it (the readers they ask for, batched).
 */
// Reads in flight at once. Measured on 50 lab hosts (no-op preview, 3 runs each): 16, 32 and 64
// give the same wall time (medians 4.9, 5.1, 5.5 s: CPU-bound on the machine), 8 and 4 stretch the
// reads to 4.5 and 5.7 s. 32 keeps that many ssh2 clients in memory at most.
const maxParallel = 32;
let running = 0;
const waiting: Array<() => void> = [];

async function slot<T>(work: () => Promise<T>): Promise<T> {
  if (running >= maxParallel) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await work();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

interface PendingRead {
  names: Set<FactName>;
  started: boolean;
  result: Promise<Prefetched>;
}

const reads = new Map<string, PendingRead[]>();


async function readHost(target: HostTarget, names: FactName[]): Promise<Prefetched> {
  return slot(async () => {
    try {
      return await withConnection(target, async (s) => {
        const r = await s.run(batchScript(readerList(names)), "read host facts");
        if (r.code !== 0) return { names, error: `${target.label}: reading the host's facts failed (exit ${r.code}): ${r.stderr.trim() || "(no message on stderr)"}` };
        return { names, output: r.stdout };
      });
    } catch (err) {
      return { names, error: (err as Error).message, unreachable: isUnreachable(err) };
    }
  });
}

/**
 * The facts `names` of the host in `stored`, read once per host for every resource that asks
 * before the read starts (they are batched over one tick).
 */
export function prefetchFacts(stored: StoredConnection, names: FactName[]): Promise<Prefetched | undefined> {
  const parsed = parseTarget(stored);
  if (!parsed.success) return Promise.resolve(undefined); // check reports the bad connection
  const target = toTarget(parsed.data);
  const pending = reads.get(target.key) ?? [];
  const covering = pending.find((p) => names.every((n) => p.names.has(n)));
  if (covering) return covering.result;
  const open = pending.find((p) => !p.started);
  if (open) {
    for (const n of names) open.names.add(n);
    return open.result;
  }
  const read: PendingRead = { names: new Set(names), started: false, result: undefined as never };
  read.result = new Promise((resolve) => setImmediate(resolve)).then(() => {
    read.started = true;
    return readHost(target, [...read.names].sort());
  });
  reads.set(target.key, [...pending, read]);
  return read.result;
}

/** What each resource type reads, and the schema of its settings, for prefetching by type name from the program. */
const byType: Record<string, { facts: FactName[]; schema: ZodType }> = {
  [conntrackLimitsKind.type]: { facts: conntrackLimitsKind.facts, schema: conntrackLimitsSettingsSchema },
  [notrackRuleKind.type]: { facts: notrackRuleKind.facts, schema: notrackRuleSettingsSchema },
  [firewallStateKind.type]: { facts: firewallStateKind.facts, schema: firewallStateSettingsSchema },
  [kernelModuleSetKind.type]: { facts: kernelModuleSetKind.facts, schema: kernelModuleSetSettingsSchema },
};

/**
 * Reads the host for one resource, unless its settings are bad: then `check` refuses them before
 * anything, this read included, reaches the host.
 */
export async function prefetchFor(resourceType: string, stored: StoredConnection, preview: boolean, settings: unknown): Promise<Prefetched | undefined> {
  const type = byType[resourceType];
  if (!type || !type.schema.safeParse(settings).success) return undefined;
  const read = await prefetchFacts(stored, [...alwaysRead, ...type.facts]);
  return read && { ...read, preview };
}
