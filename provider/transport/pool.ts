import { openSession, type SshSession } from "./ssh";
import type { HostTarget } from "./target";

/**
 * Connections live for the whole provider process (one Pulumi operation): every resource on a
 * host shares one TCP connection, and changes to a host run one at a time.
 */
const sessions = new Map<string, Promise<SshSession>>();
const locks = new Map<string, Promise<unknown>>();

/** How many connections this process opened per host (for tests and benchmarks). */
export const connectionsOpened = new Map<string, number>();

export function session(target: HostTarget): Promise<SshSession> {
  let s = sessions.get(target.key);
  if (!s) {
    connectionsOpened.set(target.key, (connectionsOpened.get(target.key) ?? 0) + 1);
    s = openSession(target);
    // A failed dial is not cached: the next resource on this host tries again.
    s.catch(() => sessions.delete(target.key));
    sessions.set(target.key, s);
  }
  return s;
}

/** Runs `work` while holding this process's lock for the host; the remote scripts add a flock. */
export function withHostLock<T>(target: HostTarget, work: () => Promise<T>): Promise<T> {
  const before = locks.get(target.key) ?? Promise.resolve();
  const run = before.then(work, work);
  locks.set(target.key, run.catch(() => undefined));
  return run;
}

export async function closeAll(): Promise<void> {
  const open = [...sessions.values()];
  sessions.clear();
  for (const s of open) {
    try { (await s).close(); } catch { /* a failed dial has nothing to close */ }
  }
}
