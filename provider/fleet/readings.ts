import { readStatusFacts } from "../status";
import { session } from "../transport/pool";
import { parseTarget, toTarget } from "../transport/target";
import type { Credentials } from "../../sdk/internal/connectionHalves";
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
  const read = async (h: StoredWaveHost, i: number): Promise<Reading> => {
    const parsed = parseTarget({ connection: h.connection, credentials: credentials[i] });
    if (!parsed.success) return { error: `invalid connection: ${parsed.error.issues.map((x) => x.message).join("; ")}` };
    try {
      return readingOf(await readStatusFacts(await session(toTarget(parsed.data))));
    } catch (err) {
      return { error: (err as Error).message };
    }
  };
  const readings = await Promise.all(hosts.map(read));
  return Object.fromEntries(hosts.map((h, i) => [h.name, readings[i]]));
}
