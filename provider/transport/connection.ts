import type { Client, ClientChannel } from "ssh2";
import { keepalive } from "./dial";
import { HostError } from "./errors";
import { quote } from "./shell";
import type { HostTarget } from "./target";

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** The command's exit status; a command that ended without one rejects instead. */
  code: number;
}

/**
 * The script as `sh -s` should read it: one brace group, which the shell parses whole before it
 * runs any of it. A script cut short (the connection dropped while it was being sent) is then a
 * syntax error and runs nothing, instead of running its first lines, or half of its last one.
 */
export function wholeScriptOnly(script: string): string {
  return `{\n${script}\n}\n`;
}

/**
 * An open SSH connection to one host, shared by every resource on it within this process.
 * Every call settles within its caller's commandTimeout, and the moment the connection closes or
 * breaks, every call pending on it fails with the reason.
 */
export class Connection {
  /** How each pending call is failed when the connection goes. */
  private readonly pending = new Set<(cause: string) => void>();
  private lostBecause: string | undefined;
  /** Resolves with the reason once the connection can't be used any more; the pool drops it then. */
  readonly gone: Promise<string>;
  private markGone!: (cause: string) => void;

  constructor(private readonly client: Client) {
    this.gone = new Promise((resolve) => (this.markGone = resolve));
    client.on("error", (err: Error & { level?: string }) =>
      this.lose(err.level === "client-timeout" ? `no answer to keepalives for ${(keepalive.intervalMs * keepalive.countMax) / 1000} s` : err.message.replace(/\s+/g, " ")),
    );
    client.on("end", () => this.lose("the host ended the connection"));
    client.on("close", () => this.lose("the connection closed"));
  }

  /** False once the connection closed, broke or was closed by us. */
  get alive(): boolean {
    return this.lostBecause === undefined;
  }

  /**
   * Runs a POSIX sh script (fed on stdin, so no quoting of the script itself), as root if the
   * target says so. One deadline (target.commandTimeout) covers opening the channel and running.
   */
  run(target: HostTarget, script: string, what: string): Promise<ExecResult> {
    const { sudo, label } = target;
    // With a password, stdin carries only the password and the script travels base64-encoded in
    // the command line: a wrong password costs one sudo attempt and is never followed by our
    // script's lines being read as further attempts.
    const wrapper =
      sudo === false
        ? `${rootCheck}; exec sh -s`
        : sudo === true
          ? "sudo -n -- sh -s"
          : `sudo -S -p '' -- sh -c 'printf %s "$0" | base64 -d | sh -s' ${Buffer.from(script).toString("base64")}`;
    const stdin = sudo === false || sudo === true ? wholeScriptOnly(script) : `${sudo.password}\n`;
    const seconds = target.commandTimeout;
    return new Promise((resolve, reject) => {
      let channel: ClientChannel | undefined;
      let settled = false;
      const settle = (outcome: { error: HostError } | { result: ExecResult }) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        this.pending.delete(onLost);
        if ("error" in outcome) reject(outcome.error);
        else resolve(outcome.result);
      };
      const onLost = (cause: string) => settle({ error: lostWhile(target, what, cause) });
      const deadline = setTimeout(() => {
        if (channel) {
          settle({ error: new HostError(label, "timeout", `"${what}" did not finish within ${seconds} s`, "raise connection.commandTimeout or check the host's load") });
          channel.close();
          return;
        }
        // The host never answered the request to open a channel: the connection is stuck, not the
        // command. Dropping it fails every other call on it now and makes the next call dial again.
        settle({ error: new HostError(label, "timeout", `"${what}" could not start within ${seconds} s: the host did not answer on its SSH connection`, "check the host's load and network; raise connection.commandTimeout for slow hosts") });
        this.lose(`it did not answer for ${seconds} s`);
      }, seconds * 1000);
      if (this.lostBecause !== undefined) return onLost(this.lostBecause);
      this.pending.add(onLost);
      try {
        this.client.exec(wrapper, (err, opened: ClientChannel) => {
          if (settled) return opened?.close();
          if (err) {
            return settle({ error: new HostError(label, "protocol", `could not start "${what}": ${err.message}`, "check the host's sshd (MaxSessions, its log) and run the operation again") });
          }
          channel = opened;
          const out: Buffer[] = [];
          const errOut: Buffer[] = [];
          opened.on("data", (d: Buffer) => out.push(d));
          opened.stderr.on("data", (d: Buffer) => errOut.push(d));
          opened.on("close", (code: number | null | undefined, signal?: string) => {
            const result = { stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(errOut).toString("utf8") };
            if (typeof code === "number") {
              const refused = code !== 0 ? notRoot(target, what, result.stderr) : undefined;
              if (refused) return settle({ error: refused });
              return settle({ result: { ...result, code } });
            }
            // No exit status. When the connection is going down, its own event may come a moment
            // after the channel's: let that better reason win before blaming the command.
            setTimeout(() => settle({ error: noExitStatus(label, what, signal, result.stderr) }), 50);
          });
          opened.end(stdin);
        });
      } catch {
        // ssh2 throws "Not connected" when the socket is already gone, before any event said so.
        this.lose("it had already closed");
      }
    });
  }

  /**
   * Starts a long-running command and resolves once it prints `readyLine` (see SshSession.hold).
   * Until then it is bounded like run(): by `timeoutMs` from now, and failed at once if the
   * connection goes. Afterwards it lives as long as the channel: release() ends it.
   */
  hold(target: HostTarget, script: string, what: string, readyLine: string, timeoutMs: number): Promise<Held> {
    const { sudo, label } = target;
    const sh = `sh -c ${quote(script)}`;
    const wrapped = sudo === false ? `${rootCheck}; exec ${sh}` : sudo === true ? `sudo -n -- ${sh}` : `sudo -S -p '' -- ${sh}`;
    return new Promise((resolve, reject) => {
      let channel: ClientChannel | undefined;
      let settled = false;
      let out = "";
      const settle = (outcome: { error: HostError } | { ready: ClientChannel }) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        this.pending.delete(onLost);
        if ("error" in outcome) {
          channel?.close();
          reject(outcome.error);
        } else {
          const held = outcome.ready;
          const said = out.slice(0, out.indexOf(`${readyLine}\n`));
          resolve({ said, release: () => held.end(), send: (line) => void (held.writable && held.write(`${line}\n`)) });
        }
      };
      const onLost = (cause: string) => settle({ error: lostWhile(target, what, cause) });
      const deadline = setTimeout(() => settle({ error: new HostError(label, "timeout", `"${what}" did not succeed within ${timeoutMs / 1000} s`) }), timeoutMs);
      if (this.lostBecause !== undefined) return onLost(this.lostBecause);
      this.pending.add(onLost);
      try {
        this.client.exec(wrapped, (err, opened: ClientChannel) => {
          if (settled) return opened?.close();
          if (err) return settle({ error: new HostError(label, "protocol", `could not start "${what}": ${err.message}`) });
          channel = opened;
          let errOut = "";
          opened.on("data", (d: Buffer) => {
            if (settled) return;
            out += d.toString("utf8");
            if (out.includes(`${readyLine}\n`)) settle({ ready: opened });
          });
          opened.stderr.on("data", (d: Buffer) => (errOut += d.toString("utf8")));
          opened.on("close", (code: number | null | undefined, signal?: string) => {
            if (settled) return;
            if (typeof code === "number") {
              return settle({ error: notRoot(target, what, errOut) ?? new HostError(label, "command", `"${what}" failed (exit ${code}): ${errOut.trim() || "(no message on stderr)"}`) });
            }
            // As in run(): a connection going down right now is the better reason.
            setTimeout(() => settle({ error: noExitStatus(label, what, signal, errOut) }), 50);
          });
          if (typeof sudo === "object") opened.write(`${sudo.password}\n`);
        });
      } catch {
        this.lose("it had already closed");
      }
    });
  }

  close(): void {
    this.lose("this provider closed it");
    this.client.end();
  }

  /** The connection can't be used any more: fail what is pending on it, once, and let it go. */
  private lose(cause: string): void {
    if (this.lostBecause !== undefined) return;
    this.lostBecause = cause;
    for (const fail of [...this.pending]) fail(cause);
    this.pending.clear();
    if (cause !== "this provider closed it") this.client.destroy();
    this.markGone(cause);
  }
}

/** A long-running command started by hold(). */
export interface Held {
  /** What it printed before its ready line. */
  said: string;
  /** Writes a line to its stdin. */
  send(line: string): void;
  /** Closes its stdin. */
  release(): void;
}

/**
 * Every script needs root. Without sudo, the login shell checks that it is root before it reads
 * the script, so a user who isn't gets told why instead of seeing the first command that failed.
 * bash (root's usual login shell) and zsh set EUID to the effective uid themselves: reading it
 * saves the fork and exec of `id` (on a lab host, 5.3 → 3.6 ms of sshd CPU per command). Other
 * shells leave it unset and run `id`; they would take an EUID from the environment, which a
 * login gets only when the host sets it up (sshd's AcceptEnv or PermitUserEnvironment, pam_env).
 */
const notRootMark = "pulumi-conntrack: this login is not root";
const rootCheck = `[ "\${EUID:-$(id -u)}" = 0 ] || { echo ${quote(notRootMark)} >&2; exit 1; }`;

/** What sudo says when it won't run a command, most telling first (it also prints warnings, e.g. "unable to resolve host"). */
const sudoRefusals: Array<{ said: RegExp; fix: (user: string) => string }> = [
  { said: /is not in the sudoers file|is not allowed to (execute|run)|may not run sudo/, fix: (user) => `give ${user} sudo rights on the host (a line in /etc/sudoers.d), or log in as a user who has them` },
  { said: /incorrect password/, fix: (user) => `check connection.sudo.password: it must be ${user}'s password on the host` },
  { said: /Sorry, try again|no password was provided/, fix: (user) => `check connection.sudo.password: it must be ${user}'s password on the host` },
  { said: /must have a tty/, fix: (user) => `the host's sudoers has "Defaults requiretty": exempt ${user} (Defaults:${user} !requiretty)` },
  { said: /a password is required|a terminal is required/, fix: () => "allow the user passwordless sudo (NOPASSWD in sudoers), or pass connection.sudo = { password }" },
];

/** The error of a script that didn't run because the login isn't root and can't become root; undefined when that isn't why it failed. */
function notRoot(target: HostTarget, what: string, stderr: string): HostError | undefined {
  const { label, user, sudo } = target;
  const lines = stderr.split("\n").map((l) => l.trim());
  if (sudo === false) {
    if (!lines.includes(notRootMark)) return undefined;
    return new HostError(label, "sudo", `user ${user} isn't root and connection.sudo isn't set, so "${what}" can't run as root`,
      `set connection.sudo = true if ${user} has passwordless sudo, or connection.sudo = { password } if sudo asks for a password; or log in as root`);
  }
  for (const refusal of sudoRefusals) {
    const said = lines.find((l) => refusal.said.test(l));
    if (said) return new HostError(label, "sudo", `sudo refused to run "${what}" as root for ${user}: ${said.replace(/\.$/, "")}`, refusal.fix(user));
  }
  return undefined;
}

/** A call that was pending when its connection went. */
function lostWhile(target: HostTarget, what: string, cause: string): HostError {
  return new HostError(target.label, "disconnected", `connection to ${target.host} closed while running "${what}" (${cause})`,
    "run the operation again (the next call dials a new connection); if it keeps happening, look for sshd restarts or OOM kills in the host's journal and for a flaky network path");
}

/** Why a command ended without an exit status, in the words a user can act on. */
function noExitStatus(label: string, what: string, signal: string | undefined, stderr: string): HostError {
  const said = stderr.trim().split("\n").pop();
  const tail = said ? `; its last words: ${said}` : "";
  if (signal) {
    return new HostError(label, "command", `"${what}" was killed by ${signal} before it finished${tail}`, "look for what killed it on the host (OOM killer, a watchdog) and run the operation again");
  }
  return new HostError(label, "protocol", `"${what}" ended without an exit status: sshd closed the channel${tail}`, "look at the host's sshd log and run the operation again");
}

