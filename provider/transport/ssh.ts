import { Connection, type Held } from "./connection";
import { dial, forward } from "./dial";
import type { HostTarget } from "./target";

export type { ExecResult, Held } from "./connection";
import type { ExecResult } from "./connection";

/**
 * One resource's handle on the shared connection to its host: calls run with this target's
 * settings (sudo, commandTimeout), whichever resource opened the connection.
 */
export class SshSession {
  constructor(
    readonly target: HostTarget,
    private readonly connection: Connection,
  ) {}

  /** Runs a POSIX sh script on the host; settles within target.commandTimeout whatever the connection does. */
  run(script: string, what: string): Promise<ExecResult> {
    return this.connection.run(this.target, script, what);
  }

  /**
   * Starts a long-running command (`sh -c`, so its stdin stays free) and resolves once it prints
   * `readyLine`; it runs until release() closes its stdin or the connection goes. The host lock
   * is held this way: when the connection dies, sshd ends the holder and the kernel drops the lock.
   */
  hold(script: string, what: string, readyLine: string, timeoutMs: number): Promise<Held> {
    return this.connection.hold(this.target, script, what, readyLine, timeoutMs);
  }

  /** False once the connection closed or broke: a new session() dials again. */
  get alive(): boolean {
    return this.connection.alive;
  }

  /** Resolves with the reason once the connection can't be used any more. */
  get gone(): Promise<string> {
    return this.connection.gone;
  }

  /** The same connection, for another resource on the host with its own settings. */
  for(target: HostTarget): SshSession {
    return target === this.target ? this : new SshSession(target, this.connection);
  }

  close(): void {
    this.connection.close();
  }
}

/** Opens a connection to the target, through its bastion if it has one. */
export async function openSession(target: HostTarget): Promise<SshSession> {
  const { proxy } = target;
  if (!proxy) return new SshSession(target, new Connection(await dial(target.label, target)));
  const bastion = await dial(`${target.label} (via bastion ${proxy.host})`, proxy);
  const tunnel = () => forward(bastion, target.label, proxy.host, target.host, target.port, proxy.perDialTimeout * 1000);
  try {
    const client = await dial(target.label, target, tunnel);
    client.once("close", () => bastion.end());
    return new SshSession(target, new Connection(client));
  } catch (err) {
    bastion.end();
    throw err;
  }
}
