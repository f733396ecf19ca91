import { conntrackStatusReader, type ConntrackStatusFacts } from "../facts/conntrackStatus";
import { batchScript, parseBatch } from "../facts/reader";
import { session } from "../transport/pool";
import { parseTarget, toTarget } from "../transport/target";
import type { Credentials } from "../../sdk/internal/connectionInputs";
import { readingOf, type Reading } from "./health";

export interface StoredWaveHost {
  name: string;
  connection: Record<string, unknown>;
  applied?: boolean;
}

/**
 * Reads every host's conntrack readings at once, one round trip each, over the process's shared
 * connection to the host: a host whose table is full drops new SSH connections, but the one its
 * wave's resources opened is already tracked and keeps working. Reads /proc only.
 */
export async function readWave(hosts: StoredWaveHost[], credentials: Credentials[]): Promise<Record<string, Reading>> {
  const readers = [conntrackStatusReader];
  const read = async (h: StoredWaveHost, i: number): Promise<Reading> => {
    const parsed = parseTarget({ connection: h.connection, credentials: credentials[i] });
    if (!parsed.success) return { error: `invalid connection: ${parsed.error.issues.map((x) => x.message).join("; ")}` };
    const target = toTarget(parsed.data);
    try {
      const r = await (await session(target)).run(batchScript(readers), "read the conntrack status");
      if (r.code !== 0) return { error: `${target.label}: reading the conntrack status failed (exit ${r.code}): ${r.stderr.trim() || "(no message on stderr)"}` };
      return readingOf((parseBatch(r.stdout, readers) as Record<string, ConntrackStatusFacts>)[conntrackStatusReader.name]);
    } catch (err) {
      return { error: (err as Error).message };
    }
  };
  const readings = await Promise.all(hosts.map(read));
  return Object.fromEntries(hosts.map((h, i) => [h.name, readings[i]]));
}
