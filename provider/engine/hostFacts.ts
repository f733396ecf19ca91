import { readerList, type FactName, type HostFacts } from "../facts/host";
import { batchScript, parseBatch } from "../facts/reader";
import { HostError } from "../transport/errors";
import { session } from "../transport/pool";
import type { HostTarget } from "../transport/target";

/**
 * The facts every transaction needs whatever the resource: our files and the ledger among them,
 * and the tool floor (facts/tools.ts), so a host without a tool is refused before anything runs.
 */
export const alwaysRead: FactName[] = ["system", "files", "tools"];

/** Reads the named facts of one host in one round trip. Never changes the host. */
export async function readHostFacts(target: HostTarget, names: FactName[]): Promise<HostFacts> {
  const chosen = readerList([...alwaysRead, ...names]);
  const result = await (await session(target)).run(batchScript(chosen), "read host facts");
  if (result.code !== 0) {
    throw new HostError(target.label, "command", `reading the host's facts failed (exit ${result.code}): ${result.stderr.trim() || "(no message on stderr)"}`);
  }
  try {
    return parseBatch(result.stdout, chosen) as HostFacts;
  } catch (err) {
    throw new HostError(target.label, "command", `reading the host's facts: ${(err as Error).message}`);
  }
}

/** Facts the program process read for a preview (provider/prefetch.ts), handed to `check` as an input. */
export interface Prefetched {
  /** The readers the script ran. */
  names: FactName[];
  /** The host's output of the batched script, or why it couldn't be read. */
  output?: string;
  error?: string;
  /** The error is that no connection could be made (see isUnreachable). */
  unreachable?: boolean;
  /** Read for a preview (show the plan) rather than for the update that follows. */
  preview?: boolean;
}

/**
 * Facts read during a preview are shared by every resource on the host for the rest of the
 * operation (one round trip per host), whether this process read them or the program process
 * handed them over (provider/prefetch.ts). A transaction always reads afresh under the host lock.
 */
const previewCache = new Map<string, Array<{ names: Set<FactName>; facts: Promise<HostFacts> }>>();

export function previewFacts(target: HostTarget, names: FactName[]): Promise<HostFacts> {
  const wanted = [...new Set([...alwaysRead, ...names])];
  const entries = previewCache.get(target.key) ?? [];
  const hit = entries.find((e) => wanted.every((n) => e.names.has(n)));
  if (hit) return hit.facts;
  const facts = readHostFacts(target, wanted);
  remember(target, wanted, facts);
  return facts;
}

function remember(target: HostTarget, names: FactName[], facts: Promise<HostFacts>): void {
  const entry = { names: new Set(names), facts };
  previewCache.set(target.key, [...(previewCache.get(target.key) ?? []), entry]);
  facts.catch(() => previewCache.set(target.key, (previewCache.get(target.key) ?? []).filter((e) => e !== entry)));
}

/** Keeps facts the program process read for this preview (the output of batchScript over `names`). */
export function seedPreviewFacts(target: HostTarget, names: FactName[], output: string): HostFacts {
  const chosen = readerList(names);
  let facts: HostFacts;
  try {
    facts = parseBatch(output, chosen) as HostFacts;
  } catch (err) {
    throw new HostError(target.label, "command", `reading the host's facts: ${(err as Error).message}`);
  }
  if (!alwaysRead.every((n) => names.includes(n))) throw new HostError(target.label, "command", `prefetched facts lack ${alwaysRead.join(", ")}`);
  remember(target, names, Promise.resolve(facts));
  return facts;
}
