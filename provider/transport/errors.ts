/** Where a failure happened, so callers (and users) know whether retrying can help. */
export type FailureLayer =
  | "config"
  | "dns"
  | "connect"
  | "timeout"
  | "hostkey"
  | "authentication"
  | "protocol"
  | "sudo"
  | "command"
  /** An open connection closed or broke under a call (the call may have run on the host). */
  | "disconnected"
  | "verify"
  /** A change cut new SSH connections; the host's lockout guard reverted it. */
  | "lockout";

/** An error that names the host, what failed and, where known, how to fix it. */
export class HostError extends Error {
  constructor(
    readonly host: string,
    readonly layer: FailureLayer,
    readonly detail: string,
    readonly fix?: string,
  ) {
    super(`${host}: ${detail}${fix ? `. Fix: ${fix}` : ""}`);
    this.name = "HostError";
  }
}
