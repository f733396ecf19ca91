import { isUnreachable, markUnreachable } from "./dial";
import { HostError } from "./errors";
import { openSession, type SshSession } from "./ssh";
import type { HostTarget } from "./target";

/**
 * Connections live for the whole provider process (one Pulumi operation): every resource on a
 * host shares one TCP connection, and changes to a host run one at a time. A connection leaves
 * the pool the moment it closes or breaks, so the next call on that host dials a new one.
 */
const sessions = new Map<string, Promise<SshSession>>();
const locks = new Map<string, Promise<unknown>>();

/** How many connections this process opened per host (for tests and benchmarks). */
export const connectionsOpened = new Map<string, number>();

/** The open connection behind each settled pool entry, so a dead one is never handed out. */
const opened = new Map<string, SshSession>();

/**
 * Hosts found unreachable in this run: every further resource on one fails at once with the same
 * error, so a dead host costs its dial bound once per operation, not once per resource.
 */
const unreachable = new Map<string, HostError>();

/** Records that another process of this run (the program's reads) found the host unreachable. */
export function rememberUnreachable(target: HostTarget, message: string): void {
  const [detail, fix] = message.replace(`${target.label}: `, "").split(". Fix: ");
  unreachable.set(target.key, new HostError(target.label, "connect", detail, fix));
}

export function session(target: HostTarget): Promise<SshSession> {
  const down = unreachable.get(target.key);
  if (down) return Promise.reject(markUnreachable(new HostError(target.label, down.layer, `${down.detail} (found so earlier in this run: not dialled again)`, down.fix)));
  const pooled = sessions.get(target.key);
  // `gone` removes a lost connection a microtask later; a call in between must not get it either.
  // The pooled connection runs this caller's calls with this caller's settings (commandTimeout).
  if (pooled && opened.get(target.key)?.alive !== false) return pooled.then((open) => open.for(target));
  connectionsOpened.set(target.key, (connectionsOpened.get(target.key) ?? 0) + 1);
  const opening = openSession(target);
  const forget = () => {
    if (sessions.get(target.key) !== opening) return;
    sessions.delete(target.key);
    opened.delete(target.key);
  };
  // A failed dial is not cached either: the next resource on this host tries again.
  opening.then((open) => {
    if (sessions.get(target.key) === opening) opened.set(target.key, open);
    return open.gone.then(forget);
  }, (err: unknown) => {
    if (isUnreachable(err)) unreachable.set(target.key, err as HostError);
    forget();
  });
  sessions.set(target.key, opening);
  opened.delete(target.key);
  return opening;
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
  opened.clear();
  for (const s of open) {
    try { (await s).close(); } catch { /* a failed dial has nothing to close */ }
  }
}
