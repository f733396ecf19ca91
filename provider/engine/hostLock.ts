import { floorBlockers } from "../facts/tools";
import { HostError } from "../transport/errors";
import { session, withHostLock } from "../transport/pool";
import type { HostTarget } from "../transport/target";
import { sh } from "../transport/shell";
import { collectOrphansScript, hostStateDir, orphanReports } from "./hostJobs";

/**
 * One change at a time per host, across processes, stacks and machines: a `flock` on the host,
 * held by a process that lives as long as our SSH channel to it (its stdin). When this process or
 * its connection dies, sshd ends the holder and the kernel releases the lock, so a dead holder
 * never blocks the next run. A client that vanished without closing its connection (sshd may not
 * notice for hours) stops sending the heartbeat the holder waits for: the holder gives the lock
 * up `heartbeat.leaseSeconds` after the last one.
 * Previews never take it, so they leave no lock file behind.
 */
const ready = "@@pulumi-conntrack-locked";
export const heartbeat = { everyMs: 5_000, leaseSeconds: 30 };

/** The holder's script: takes the lock within `waitSeconds`, then holds it while heartbeats come (exported for tests). */
export function lockScript(waitSeconds: number): string {
  // Inside the lock: wait for a change still running detached from an earlier, cut connection
  // (hostJobs.ts) and report the ones nobody collected; then hold while heartbeats come.
  const holder = [
    collectOrphansScript(waitSeconds),
    sh`echo ${ready}`,
    sh`while b=$(timeout ${heartbeat.leaseSeconds} head -n 1) && [ "$b" = beat ]; do :; done`,
  ].join("\n");
  // A flock that is missing or fails for want of a flag (busybox's has no -w) isn't a lock held
  // by someone: say which, as the facts read would (a preview refuses such a host before this).
  const [noFlock] = floorBlockers({ missing: ["flock"], lacking: [] });
  const [oldFlock] = floorBlockers({ missing: [], lacking: ["flock"] });
  return [
    hostStateDir,
    sh`command -v flock >/dev/null 2>&1 || { echo ${noFlock} >&2; exit 1; }`,
    sh`flock -w ${waitSeconds} "$d/pulumi-conntrack.lock" sh -c ${`d=$1; ${holder}`} sh "$d" || { s=$?; flock -s -w 1 -o / true >/dev/null 2>&1 || { echo ${oldFlock} >&2; exit $s; }; echo ${`another pulumi-conntrack change held this host for ${waitSeconds} s`} "(lock $d/pulumi-conntrack.lock)" >&2; exit $s; }`,
  ].join("\n");
}

/**
 * Runs `work` holding this host's lock, in this process (one resource at a time) and on the host.
 * `work` gets a guard to call before each change: it throws once the connection that holds the
 * lock is gone (the host has released the lock then, and another run may be changing the host),
 * and what the host reported of earlier changes cut from their connection.
 */
export function withHostTransaction<T>(target: HostTarget, work: (stillLocked: () => void, earlier: string[]) => Promise<T>): Promise<T> {
  return withHostLock(target, async () => {
    const wait = target.commandTimeout;
    const holder = await session(target);
    const held = await holder.hold(lockScript(wait), "take the host lock", ready, (2 * wait + 15) * 1000).catch((err: unknown) => {
      if (err instanceof HostError) throw err;
      throw new HostError(target.label, "command", `taking the host lock: ${(err as Error).message}`);
    });
    const beats = setInterval(() => held.send("beat"), heartbeat.everyMs);
    const stillLocked = () => {
      // The holder's own channel counts, not only the connection: a holder that ended (its
      // heartbeat read something else, sshd ended it) has let the lock go on the host.
      if (!holder.alive || !held.alive) throw new HostError(target.label, "disconnected", "the host lock's holder ended (or its connection closed), so the host released the lock; nothing more was changed", "run pulumi up again");
    };
    try {
      return await work(stillLocked, orphanReports(held.said));
    } finally {
      clearInterval(beats);
      held.release();
    }
  });
}
