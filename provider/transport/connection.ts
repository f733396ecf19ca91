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
   * Runs a POSIX sh script (fed on stdin, so no quoting of the script and no limit on its size),
   * as root if the target says so. One deadline (target.commandTimeout) covers opening the
   * channel and running.
   */
  async run(target: HostTarget, script: string, what: string): Promise<ExecResult> {
    const done = await this.exec(target, what, "sh -s", { stdin: wholeScriptOnly(script), timeoutMs: target.commandTimeout * 1000 });
    return done.result!;
  }

  /**
   * Starts a long-running command and resolves once it prints `readyLine` (see SshSession.hold).
   * Until then it is bounded like run(): by `timeoutMs` from now, and failed at once if the
   * connection goes. Afterwards it lives as long as the channel: release() ends it.
   */
  async hold(target: HostTarget, script: string, what: string, readyLine: string, timeoutMs: number): Promise<Held> {
    const done = await this.exec(target, what, `sh -c ${quote(script)}`, { readyLine, timeoutMs });
    return done.held!;
  }

  /**
   * The one path of every command: open a channel, become root, feed stdin, collect what it says,
   * and settle exactly once, on its end (with `stdin`) or on `readyLine` (a holder), on the
   * deadline, or when the connection goes.
   * With `sudo: { password }`, sudo is given the password only when it asks for it (its prompt is
   * ours), and nothing else is sent until the root shell says it runs: an account that needs no
   * password never reads the password as input, and a wrong one is never followed by lines of
   * the script read as further attempts.
   */
  private exec(target: HostTarget, what: string, rootCommand: string, io: { stdin?: string; readyLine?: string; timeoutMs: number }): Promise<{ result?: ExecResult; held?: Held }> {
    const { sudo, label } = target;
    const wrapper =
      sudo === false
        ? `${rootCheck}; exec ${rootCommand}`
        : sudo === true
          ? `sudo -n -- ${rootCommand}`
          : `sudo -S -p ${quote(sudoPrompt)} -- sh -c ${quote(`echo ${rootMark}; exec ${rootCommand}`)}`;
    return new Promise((resolve, reject) => {
      let channel: ClientChannel | undefined;
      let closed = false;
      let settled = false;
      const settle = (outcome: { error: HostError } | { result: ExecResult } | { held: Held }) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        this.pending.delete(onLost);
        if ("error" in outcome) {
          if (io.readyLine !== undefined) channel?.close();
          reject(outcome.error);
        } else resolve(outcome);
      };
      const onLost = (cause: string) => settle({ error: lostWhile(target, what, cause) });
      const deadline = setTimeout(() => {
        if (channel) {
          const message = io.readyLine === undefined ? `"${what}" did not finish within ${io.timeoutMs / 1000} s` : `"${what}" did not succeed within ${io.timeoutMs / 1000} s`;
          settle({ error: new HostError(label, "timeout", message, "raise connection.commandTimeout or check the host's load") });
          channel.close();
          return;
        }
        // The host never answered the request to open a channel: the connection is stuck, not the
        // command. Dropping it fails every other call on it now and makes the next call dial again.
        settle({ error: new HostError(label, "timeout", `"${what}" could not start within ${io.timeoutMs / 1000} s: the host did not answer on its SSH connection`, "check the host's load and network; raise connection.commandTimeout for slow hosts") });
        this.lose(`it did not answer for ${io.timeoutMs / 1000} s`);
      }, io.timeoutMs);
      if (this.lostBecause !== undefined) return onLost(this.lostBecause);
      this.pending.add(onLost);
      try {
        this.client.exec(wrapper, (err, opened: ClientChannel) => {
          if (settled) return opened?.close();
          if (err) return settle({ error: new HostError(label, "protocol", `could not start "${what}": ${err.message}`, "check the host's sshd (MaxSessions, its log) and run the operation again") });
          channel = opened;
          const out: Buffer[] = [];
          let errText = "";
          let asRoot = typeof sudo !== "object";
          let prompts = 0;
          const raw = () => Buffer.concat(out).toString("utf8");
          const stdout = () => (typeof sudo === "object" ? raw().replace(`${rootMark}\n`, "") : raw());
          const begin = () => {
            if (io.stdin !== undefined) opened.end(io.stdin);
          };
          opened.on("data", (d: Buffer) => {
            out.push(d);
            if (!asRoot && raw().includes(`${rootMark}\n`)) {
              asRoot = true;
              begin();
            }
            const text = stdout();
            if (asRoot && io.readyLine !== undefined && text.includes(`${io.readyLine}\n`)) {
              settle({ held: { said: text.slice(0, text.indexOf(`${io.readyLine}\n`)), release: () => opened.end(), send: (line) => void (opened.writable && opened.write(`${line}\n`)), get alive() { return !closed; } } });
            }
          });
          opened.stderr.on("data", (d: Buffer) => {
            errText += d.toString("utf8");
            if (typeof sudo !== "object" || asRoot) return;
            const asked = errText.split(sudoPrompt).length - 1;
            if (asked === prompts) return;
            prompts = asked;
            // The first prompt gets the password; a second means it was wrong: end sudo's input so it gives up now.
            if (asked === 1) opened.write(`${sudo.password}\n`);
            else opened.end();
          });
          opened.on("close", (code: number | null | undefined, signal?: string) => {
            closed = true;
            const stderr = errText.split(sudoPrompt).join("");
            if (typeof code === "number") {
              const refused = code !== 0 || io.readyLine !== undefined ? notRoot(target, what, stderr) : undefined;
              if (refused) return settle({ error: refused });
              if (io.readyLine !== undefined) return settle({ error: new HostError(label, "command", `"${what}" failed (exit ${code}): ${stderr.trim() || "(no message on stderr)"}`) });
              return settle({ result: { stdout: stdout(), stderr, code } });
            }
            // No exit status. When the connection is going down, its own event may come a moment
            // after the channel's: let that better reason win before blaming the command.
            setTimeout(() => settle({ error: noExitStatus(label, what, signal, stderr) }), 50);
          });
          if (asRoot) begin();
        });
      } catch (err) {
        // ssh2 throws "Not connected" when the socket is already gone, before any event said so.
        this.lose(`it had already closed (${(err as Error).message})`);
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
  /** False once its channel closed: whatever it held on the host is let go. */
  readonly alive: boolean;
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
/** sudo's password prompt (on stderr with -S), answered with the password; a second one means it was wrong. */
const sudoPrompt = "@@pulumi-conntrack-sudo-password\n";
/** The first line of the root shell under sudo with a password: input may follow now. */
const rootMark = "@@pulumi-conntrack-root";

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

