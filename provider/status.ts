import { conntrackStatusReader, type ConntrackStatusFacts } from "./facts/conntrackStatus";
import { batchScript, parseBatch } from "./facts/reader";
import { HostError } from "./transport/errors";
import { withConnection } from "./transport/borrowed";
import type { SshSession } from "./transport/ssh";
import { connectionSchema } from "../sdk/connection";
import type { ConntrackStatus } from "../sdk/getConntrackStatus";
import { toTarget } from "./transport/target";

/**
 * Reads the conntrack table's readings of one host in one round trip, from the PROGRAM process
 * (dynamic providers can't serve data functions). Reads /proc only: nothing is loaded or written.
 * Calls on one host that overlap (and the facts prefetch of its resources) share a connection,
 * closed when the last is done: an open one would keep the program from exiting.
 */
export async function readConntrackStatus(connection: unknown): Promise<ConntrackStatus> {
  const parsed = connectionSchema.safeParse(connection);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `connection${i.path.length > 0 ? `.${i.path.join(".")}` : ""}: ${i.message}`);
    throw new Error(`getConntrackStatus: ${issues.join("; ")}`);
  }
  const target = toTarget(parsed.data);
  const facts = await withConnection(target, (session) => readStatusFacts(session));
  if (!facts.tracking) {
    throw new HostError(target.label, "config", "nf_conntrack isn't loaded, so nothing is tracked here (and nothing was loaded to read this)", "nothing to diagnose; a ConntrackLimits or a stateful rule loads it");
  }
  return {
    host: target.label,
    count: facts.count,
    max: facts.max,
    buckets: facts.buckets,
    usage: facts.max > 0 ? facts.count / facts.max : 0,
    drop: facts.drop ?? null,
    earlyDrop: facts.earlyDrop ?? null,
    insertFailed: facts.insertFailed ?? null,
    tableFullMessages: facts.tableFull,
  };
}

/** One round trip on an open session: the host's conntrack readings (getConntrackStatus, Fleet's gates). */
export async function readStatusFacts(session: SshSession): Promise<ConntrackStatusFacts> {
  const readers = [conntrackStatusReader];
  const r = await session.run(batchScript(readers), "read the conntrack status");
  if (r.code !== 0) throw new HostError(session.target.label, "command", `reading the conntrack status failed (exit ${r.code}): ${r.stderr.trim() || "(no message on stderr)"}`);
  return (parseBatch(r.stdout, readers) as Record<string, ConntrackStatusFacts>)[conntrackStatusReader.name];
}
