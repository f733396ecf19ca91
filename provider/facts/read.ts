import { HostError } from "../transport/errors";
import { session } from "../transport/pool";
import type { HostTarget } from "../transport/target";
import { conntrackFactsScript, parseConntrackFacts, type ConntrackFacts } from "./conntrack";

/**
 * Facts are read once per host per operation and shared by every resource on it; anything that
 * writes to the host drops them so the next reader sees the change.
 */
const cache = new Map<string, Promise<ConntrackFacts>>();

export function conntrackFacts(target: HostTarget, fresh = false): Promise<ConntrackFacts> {
  let facts = fresh ? undefined : cache.get(target.key);
  if (!facts) {
    facts = (async () => {
      const result = await (await session(target)).run(conntrackFactsScript, "read conntrack facts");
      if (result.code !== 0) throw new HostError(target.label, "command", `reading conntrack facts failed (exit ${result.code}): ${result.stderr.trim()}`);
      return parseConntrackFacts(result.stdout);
    })();
    facts.catch(() => cache.delete(target.key));
    cache.set(target.key, facts);
  }
  return facts;
}

export function forgetFacts(target: HostTarget): void {
  cache.delete(target.key);
}
