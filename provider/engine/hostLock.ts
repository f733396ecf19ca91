import { HostError } from "../transport/errors";
import { session, withHostLock } from "../transport/pool";
import type { HostTarget } from "../transport/target";

/**
 * One change at a time per host, across processes, stacks and machines: a `flock` on the host,
 * held by a process that lives as long as our SSH channel to it (its stdin). When this process or
 * its connection dies, sshd ends the holder and the kernel releases the lock, so a dead holder
 * never blocks the next run. A lease bounds a holder whose client vanished without closing the
 * connection (sshd may not notice for a long time): after it the lock is free again.
 * Previews never take it, so they leave no lock file behind.
 */
const ready = "@@pulumi-conntrack-locked";

function lockScript(waitSeconds: number, leaseSeconds: number): string {
  return [
    "d=/run; [ -d /run ] && [ -w /run ] || d=/tmp",
    `flock -w ${waitSeconds} "$d/pulumi-conntrack.lock" sh -c 'echo ${ready}; exec timeout ${leaseSeconds} cat >/dev/null' ` +
      `|| { s=$?; echo "another pulumi-conntrack change held this host for ${waitSeconds} s (lock $d/pulumi-conntrack.lock)" >&2; exit $s; }`,
  ].join("\n");
}

/**
 * Runs `work` holding this host's lock, in this process (one resource at a time) and on the host.
 * `work` gets a guard to call before each change: it throws once the connection that holds the
 * lock is gone (the host has released the lock then, and another run may be changing the host).
 */
export function withHostTransaction<T>(target: HostTarget, work: (stillLocked: () => void) => Promise<T>): Promise<T> {
  return withHostLock(target, async () => {
    const wait = target.commandTimeout;
    const lease = target.commandTimeout * 3;
    const holder = await session(target);
    const held = await holder.hold(lockScript(wait, lease), "take the host lock", ready, (wait + 15) * 1000).catch((err: unknown) => {
      if (err instanceof HostError) throw err;
      throw new HostError(target.label, "command", `taking the host lock: ${(err as Error).message}`);
    });
    const stillLocked = () => {
      if (!holder.alive) throw new HostError(target.label, "disconnected", "the connection that held the host lock closed, so the host released it; nothing more was changed", "run pulumi up again");
    };
    let release = true;
    try {
      return await work(stillLocked);
    } catch (err) {
      // A step that timed out may still be running on the host: keep the lock until this
      // connection ends or the lease runs out, so no other change starts beside it.
      if (err instanceof HostError && err.layer === "timeout") release = false;
      throw err;
    } finally {
      if (release) held.release();
    }
  });
}
