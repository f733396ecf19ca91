import { openSession, type SshSession } from "./ssh";
import type { HostTarget } from "./target";

/**
 * Connections of the PROGRAM process (fact prefetches, getConntrackStatus): calls on one host
 * that overlap share one connection, and it closes when the last of them is done, because an
 * open connection would keep the program from exiting. A host whose table is full drops new
 * SSH connections, so reusing the open one is what lets a status read get in at all.
 */
const open = new Map<string, { session: Promise<SshSession>; users: number }>();

export async function withConnection<T>(target: HostTarget, work: (session: SshSession) => Promise<T>): Promise<T> {
  let entry = open.get(target.key);
  const usable = entry && (await entry.session.then((s) => s.alive, () => false));
  if (!entry || !usable) {
    entry = { session: openSession(target), users: 0 };
    open.set(target.key, entry);
  }
  const mine = entry;
  mine.users++;
  try {
    return await work((await mine.session).for(target));
  } finally {
    if (--mine.users === 0) {
      if (open.get(target.key) === mine) open.delete(target.key);
      mine.session.then((s) => s.close(), () => undefined);
    }
  }
}
