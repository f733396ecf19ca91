import { readers, type FactName, type HostFacts } from "../facts/host";
import { batchScript, parseBatch, type FactReader } from "../facts/reader";
import { HostError } from "../transport/errors";
import { session } from "../transport/pool";
import type { HostTarget } from "../transport/target";

/** The facts every transaction needs whatever the resource: our files and the ledger among them. */
const alwaysRead: FactName[] = ["system", "files"];

/** Reads the named facts of one host in one round trip. Never changes the host. */
export async function readHostFacts(target: HostTarget, names: FactName[]): Promise<HostFacts> {
  const wanted = [...new Set([...alwaysRead, ...names])].sort();
  const chosen = wanted.map((n) => ({ ...readers[n], name: n }) as FactReader<unknown>);
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

/**
 * Facts read during a preview are shared by every resource on the host for the rest of the
 * operation (one round trip per host); a transaction always reads afresh under the host lock.
 */
const previewCache = new Map<string, Promise<HostFacts>>();

export function previewFacts(target: HostTarget, names: FactName[]): Promise<HostFacts> {
  const key = `${target.key}|${[...names].sort().join(",")}`;
  let facts = previewCache.get(key);
  if (!facts) {
    facts = readHostFacts(target, names);
    facts.catch(() => previewCache.delete(key));
    previewCache.set(key, facts);
  }
  return facts;
}
