import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { Client, type ClientChannel, type ConnectConfig } from "ssh2";
import { HostError, type FailureLayer } from "./errors";
import { quote } from "./shell";
import { judgeHostKey, type HostKeyVerdict } from "./hostKeys";
import type { HostTarget, Hop } from "./target";

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

// curve25519 first: OpenSSH's default sntrup761 hybrid costs ~55 ms of client CPU per handshake,
// which dominates a fleet-wide preview.
const preferredKex = [
  "curve25519-sha256",
  "curve25519-sha256@libssh.org",
  "ecdh-sha2-nistp256",
  "ecdh-sha2-nistp384",
  "ecdh-sha2-nistp521",
  "diffie-hellman-group-exchange-sha256",
  "diffie-hellman-group14-sha256",
] as const;

/** An open SSH connection to one host, shared by every resource on it within this process. */
export class SshSession {
  constructor(
    readonly target: HostTarget,
    private readonly client: Client,
  ) {}

  /** Runs a POSIX sh script (fed on stdin, so no quoting of the script itself), as root if configured. */
  run(script: string, what: string): Promise<ExecResult> {
    const { sudo } = this.target;
    // With a password, stdin carries only the password and the script travels base64-encoded in
    // the command line: a wrong password costs one sudo attempt and is never followed by our
    // script's lines being read as further attempts.
    const wrapper =
      sudo === false
        ? "sh -s"
        : sudo === true
          ? "sudo -n -- sh -s"
          : `sudo -S -p '' -- sh -c 'printf %s "$0" | base64 -d | sh -s' ${Buffer.from(script).toString("base64")}`;
    const stdin = sudo === false || sudo === true ? script : `${sudo.password}\n`;
    const label = this.target.label;
    const timeoutMs = this.target.commandTimeout * 1000;
    return new Promise((resolve, reject) => {
      this.client.exec(wrapper, (err, channel: ClientChannel) => {
        if (err) return reject(new HostError(label, "protocol", `could not start "${what}": ${err.message}`));
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        const timer = setTimeout(() => {
          channel.close();
          reject(new HostError(label, "timeout", `"${what}" did not finish within ${timeoutMs / 1000} s`, "raise connection.commandTimeout or check the host's load"));
        }, timeoutMs);
        channel.on("data", (d: Buffer) => out.push(d));
        channel.stderr.on("data", (d: Buffer) => errOut.push(d));
        channel.on("close", (code: number | null) => {
          clearTimeout(timer);
          const result = { stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(errOut).toString("utf8"), code: code ?? -1 };
          if (sudo !== false && result.code !== 0 && /sudo: (a password is required|.*incorrect password|.*not in the sudoers)|may not run sudo/.test(result.stderr)) {
            return reject(new HostError(label, "sudo", `sudo refused to run "${what}" as root: ${result.stderr.trim().split("\n")[0]}`, "allow the user passwordless sudo, or pass connection.sudo = { password }"));
          }
          resolve(result);
        });
        channel.end(stdin);
      });
    });
  }

  /**
   * Starts a long-running command (`sh -c`, so its stdin stays free) and resolves once it prints
   * `readyLine`; it runs until release() closes its stdin or the connection goes. The host lock
   * is held this way: when the connection dies, sshd ends the holder and the kernel drops the lock.
   */
  hold(script: string, what: string, readyLine: string, timeoutMs: number): Promise<{ release(): void }> {
    const { sudo } = this.target;
    const sh = `sh -c ${quote(script)}`;
    const wrapped = sudo === false ? sh : sudo === true ? `sudo -n -- ${sh}` : `sudo -S -p '' -- ${sh}`;
    const label = this.target.label;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new HostError(label, "timeout", `"${what}" did not succeed within ${timeoutMs / 1000} s`)), timeoutMs);
      this.client.exec(wrapped, (err, channel: ClientChannel) => {
        if (err) { clearTimeout(timer); return reject(new HostError(label, "protocol", `could not start "${what}": ${err.message}`)); }
        let out = "";
        let errOut = "";
        let ready = false;
        channel.on("data", (d: Buffer) => {
          out += d.toString("utf8");
          if (!ready && out.split("\n").includes(readyLine)) {
            ready = true;
            clearTimeout(timer);
            resolve({ release: () => channel.end() });
          }
        });
        channel.stderr.on("data", (d: Buffer) => (errOut += d.toString("utf8")));
        channel.on("close", (code: number | null) => {
          clearTimeout(timer);
          if (!ready) reject(new HostError(label, "command", `"${what}" failed (exit ${code ?? "none"}): ${errOut.trim() || "(no message on stderr)"}`));
        });
        if (typeof sudo === "object") channel.write(`${sudo.password}\n`);
      });
    });
  }

  close(): void {
    this.client.end();
  }
}

function classify(err: Error & { level?: string; code?: string }): FailureLayer {
  if (err.level === "client-authentication") return "authentication";
  if (err.level === "client-timeout") return "timeout";
  if (err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") return "dns";
  if (err.level === "client-socket" || err.code) return "connect";
  return "protocol";
}

function knownHostsText(): string {
  const files = [join(homedir(), ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"];
  return files.map((f) => { try { return readFileSync(f, "utf8"); } catch { return ""; } }).join("\n");
}

function hostKeyError(label: string, hop: Hop, verdict: Exclude<HostKeyVerdict, { ok: true }>): HostError {
  if (verdict.reason === "changed") {
    return new HostError(label, "hostkey", `host key changed: the host presented ${verdict.presented}, expected ${verdict.expected!.join(" or ")}`,
      "if the host was really reinstalled, update connection.hostKey or known_hosts; otherwise someone may be intercepting the connection");
  }
  if (verdict.reason === "revoked") return new HostError(label, "hostkey", `host key ${verdict.presented} is marked @revoked in known_hosts`);
  return new HostError(label, "hostkey", `unknown host key ${verdict.presented} for ${hop.host}:${hop.port}`,
    `check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then pass connection.hostKey = "${verdict.presented}" or add it to ~/.ssh/known_hosts`);
}

/** One connection attempt to one hop, over `sock` when tunnelled through a bastion. */
function dialOnce(label: string, hop: Hop, sock?: NodeJS.ReadableStream): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let verdict: HostKeyVerdict = { ok: true };
    const config: ConnectConfig = {
      host: hop.host,
      port: hop.port,
      username: hop.user,
      readyTimeout: hop.perDialTimeout * 1000,
      algorithms: { kex: [...preferredKex] },
      tryKeyboard: hop.password !== undefined,
      hostVerifier: (key: Buffer) => {
        if (hop.insecureSkipHostKeyCheck) return true;
        verdict = judgeHostKey(key, { pinned: hop.hostKey, knownHosts: hop.hostKey ? undefined : knownHostsText(), host: hop.host, port: hop.port });
        return verdict.ok;
      },
    };
    if (sock) config.sock = sock as ConnectConfig["sock"];
    if (hop.privateKey) config.privateKey = hop.privateKey;
    if (hop.privateKeyPassword) config.passphrase = hop.privateKeyPassword;
    if (hop.password) config.password = hop.password;
    const agent = hop.agentSocketPath ?? process.env.SSH_AUTH_SOCK;
    if (agent) config.agent = agent;
    if (!hop.privateKey && !hop.password && !agent) {
      return reject(new HostError(label, "config", "no way to authenticate", "give connection.privateKey or password, or run an ssh-agent (SSH_AUTH_SOCK)"));
    }
    if (hop.password) {
      client.on("keyboard-interactive", (_n, _i, _l, prompts, finish) => finish(prompts.map(() => hop.password!)));
    }
    client.once("ready", () => resolve(client));
    client.once("error", (err: Error & { level?: string; code?: string }) => {
      client.end();
      if (!verdict.ok) return reject(hostKeyError(label, hop, verdict));
      const layer = classify(err);
      if (layer === "authentication") {
        const tried = [hop.privateKey && "privateKey", hop.password && "password", agent && "agent"].filter(Boolean).join(", ");
        return reject(new HostError(label, layer, `authentication failed for user ${hop.user} (tried ${tried})`, "check connection.user and that the key or password is authorized on the host"));
      }
      reject(new HostError(label, layer, err.message.replace(/\s+/g, " ")));
    });
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 throws synchronously for unreadable keys; its message never contains the key.
      reject(new HostError(label, "config", `bad credentials: ${(err as Error).message}`, "check connection.privateKey and privateKeyPassword"));
    }
  });
}

const retryable: ReadonlySet<FailureLayer> = new Set(["connect", "timeout", "dns", "protocol"]);

/** Dials one hop, retrying connection-level failures up to dialErrorLimit times. */
async function dial(label: string, hop: Hop, tunnel?: () => Promise<NodeJS.ReadableStream>): Promise<Client> {
  let last: HostError | undefined;
  for (let attempt = 1; attempt <= hop.dialErrorLimit; attempt++) {
    const started = Date.now();
    try {
      return await dialOnce(label, hop, tunnel ? await tunnel() : undefined);
    } catch (err) {
      if (!(err instanceof HostError) || !retryable.has(err.layer)) throw err;
      last = err;
      // A refused connection fails at once: wait a little, within this attempt's time budget.
      const spare = hop.perDialTimeout * 1000 - (Date.now() - started);
      if (attempt < hop.dialErrorLimit && spare > 0) await new Promise((r) => setTimeout(r, Math.min(500, spare)));
    }
  }
  throw new HostError(label, last!.layer, `unreachable after ${hop.dialErrorLimit} tries (${last!.message.slice(label.length + 2)})`,
    "check that the host is up and that sshd listens on that address and port");
}

/** Opens a connection to the target, through its bastion if it has one. */
export async function openSession(target: HostTarget): Promise<SshSession> {
  const { proxy } = target;
  if (!proxy) return new SshSession(target, await dial(target.label, target));
  const bastion = await dial(`${target.label} (via bastion ${proxy.host})`, proxy);
  const tunnel = () =>
    new Promise<NodeJS.ReadableStream>((resolve, reject) =>
      bastion.forwardOut("127.0.0.1", 0, target.host, target.port, (err, stream) =>
        err ? reject(new HostError(target.label, "connect", `bastion ${proxy.host} could not reach the host: ${err.message}`)) : resolve(stream),
      ),
    );
  const client = await dial(target.label, target, tunnel);
  client.once("close", () => bastion.end());
  return new SshSession(target, client);
}

