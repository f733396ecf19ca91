import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { Socket } from "node:net";
import { join } from "node:path";
import { Client, type ConnectConfig } from "ssh2";
import { HostError, type FailureLayer } from "./errors";
import { hostKeyAlgorithms, judgeHostKey, type HostKeyTrust, type HostKeyVerdict } from "./hostKeys";
import type { Hop } from "./target";

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

/**
 * A connection that stops answering without closing (a dead route, a frozen host) is found by
 * keepalives within interval × count, and fails every call on it then, instead of each call
 * waiting for its own deadline.
 */
export const keepalive = { intervalMs: 15_000, countMax: 3 };

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
      "if the host was really reinstalled, update connection.hostKey or known_hosts; otherwise someone may be intercepting the connection" +
        (hop.hostKey?.startsWith("SHA256:") ? ". A pinned fingerprint is checked against the key the host shows first (ed25519 when it has one): to pin another key type, give its whole public key line" : ""));
  }
  if (verdict.reason === "revoked") {
    return new HostError(label, "hostkey", `host key ${verdict.presented} is marked @revoked in known_hosts`, "give the host a new host key and trust that one (connection.hostKey or a known_hosts line)");
  }
  if (verdict.reason === "cert-authority") {
    return new HostError(label, "hostkey", `known_hosts vouches for ${hop.host}:${hop.port} only through a @cert-authority line, and host certificates are not verified here, so its key ${verdict.presented} is refused`,
      `check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then pin it with connection.hostKey = "${verdict.presented}" or add a plain key line for the host to ~/.ssh/known_hosts`);
  }
  return new HostError(label, "hostkey", `unknown host key ${verdict.presented} for ${hop.host}:${hop.port}`,
    `check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then pass connection.hostKey = "${verdict.presented}" or add it to ~/.ssh/known_hosts`);
}

/** Dial failures that say the host didn't answer at all (no TCP connection). */
const unanswered = new WeakSet<HostError>();
/** Dial failures no retry can help: the network says there is no route to the host. */
const unroutable = new WeakSet<HostError>();

/** One connection attempt to one hop, over `sock` when tunnelled through a bastion. */
function dialOnce(label: string, hop: Hop, sock?: NodeJS.ReadableStream): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const trust: HostKeyTrust = { pinned: hop.hostKey, knownHosts: hop.hostKey ? undefined : knownHostsText(), host: hop.host, port: hop.port };
    let verdict: HostKeyVerdict = { ok: true };
    let settled = false;
    // ssh2 says "connect" once the TCP connection is up (for a tunnel, the stream is up already).
    let connected = sock !== undefined;
    client.once("connect", () => {
      connected = true;
      // Nagle's algorithm holds a small packet back until the last one is acknowledged, and the
      // server delays its acknowledgements (40 ms on Linux): measured on a lab host, a read went
      // from 105 to 60 ms. Every exchange here is a few small packets in a row.
      client.setNoDelay(true);
    });
    const fail = (err: HostError) => {
      if (settled) return;
      settled = true;
      client.destroy();
      reject(err);
    };
    const config: ConnectConfig = {
      host: hop.host,
      port: hop.port,
      username: hop.user,
      readyTimeout: hop.perDialTimeout * 1000,
      keepaliveInterval: keepalive.intervalMs,
      keepaliveCountMax: keepalive.countMax,
      algorithms: { kex: [...preferredKex], serverHostKey: hostKeyAlgorithms(trust) as NonNullable<ConnectConfig["algorithms"]>["serverHostKey"] },
      tryKeyboard: hop.password !== undefined,
      hostVerifier: (key: Buffer) => {
        if (hop.insecureSkipHostKeyCheck) return true;
        verdict = judgeHostKey(key, trust);
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
    // The methods we have, without ssh2's opening "none" request: that one only asks the server
    // which methods it takes, a round trip and an sshd log line per connection, and we have one.
    config.authHandler = authMethods({ password: hop.password !== undefined, privateKey: hop.privateKey !== undefined, agent: agent !== undefined });
    if (hop.password) {
      client.on("keyboard-interactive", (_n, _i, _l, prompts, finish) => finish(prompts.map(() => hop.password!)));
    }
    client.once("ready", () => {
      if (settled) return;
      settled = true;
      resolve(client);
    });
    // Kept after "ready" too: an "error" event with no listener would crash the provider process.
    client.on("error", (err: Error & { level?: string; code?: string }) => {
      if (settled) return;
      if (!verdict.ok) return fail(hostKeyError(label, hop, verdict));
      const layer = classify(err);
      if (layer === "timeout" && !connected) {
        const silent = new HostError(label, layer, `no answer from ${hop.host}:${hop.port} within ${hop.perDialTimeout} s (no TCP connection)`);
        unanswered.add(silent);
        return fail(silent);
      }
      if (err.code === "EHOSTUNREACH" || err.code === "ENETUNREACH") {
        const noRoute = new HostError(label, layer, `no route to ${hop.host} (${err.code})`);
        unroutable.add(noRoute);
        return fail(noRoute);
      }
      if (layer === "authentication") {
        const tried = [hop.privateKey && "privateKey", hop.password && "password", agent && "agent"].filter(Boolean).join(", ");
        return fail(new HostError(label, layer, `authentication failed for user ${hop.user} (tried ${tried})`, "check connection.user and that the key or password is authorized on the host"));
      }
      fail(new HostError(label, layer, err.message.replace(/\s+/g, " ")));
    });
    // ssh2 stops its ready timer when the socket closes and reports no error once the server's
    // greeting was seen: without this, a connection dropped mid-handshake would be waited on forever.
    client.once("close", () => fail(new HostError(label, "connect", "the connection closed during the SSH handshake")));
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 throws synchronously for unreadable keys; its message never contains the key.
      return fail(new HostError(label, "config", `bad credentials: ${(err as Error).message}`, "check connection.privateKey and privateKeyPassword"));
    }
    answerHostKeysWithoutProof(client);
    if (!sock) coalesceWrites(client);
  });
}

/** The parts of an ssh2 Client, private in 1.17, that answerHostKeysWithoutProof and coalesceWrites use. */
interface ClientInternals {
  _protocol?: { _handlers?: Record<string, unknown>; ping?: () => void };
  _callbacks?: Array<() => void>;
  _sock?: unknown;
}

/**
 * ssh2 writes each encrypted packet to the socket in three pieces (length, cipher text, tag): 34
 * writes per fact read. Each is a system call and a TCP segment that wakes the host's sshd: in a
 * 200-host preview, 1.4 s of the program's profile samples fell inside socket writes (partly
 * waiting while the woken sshd ran). So the writes made in one turn of the event loop go out
 * together: cork at the first, uncork when the turn ends (setImmediate), one writev. A connection
 * that runs one command now sends 11 segments with data, not 32 (test/lab/transport.test.ts
 * counts them). Nothing waits for a later turn, and setNoDelay stays on between turns. If ssh2's
 * internals ever move, its writes go out one by one, as before.
 */
function coalesceWrites(client: Client): void {
  const sock = (client as unknown as ClientInternals)._sock;
  if (!(sock instanceof Socket)) return;
  const write = sock.write;
  let corked = false;
  sock.write = function (this: Socket, ...args: unknown[]) {
    if (!corked) {
      corked = true;
      sock.cork();
      setImmediate(() => {
        corked = false;
        sock.uncork();
      });
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Socket["write"];
}

/**
 * Right after login, OpenSSH's sshd announces all its host keys (hostkeys-00@openssh.com), and
 * ssh2 answers by asking the host to prove each of them: a signature per key, made by the host
 * (RSA-3072 takes 1.8 ms here). Nothing here uses those keys: the key that matters was checked
 * in the key exchange. This sends a keepalive instead. Sending nothing would stall the first
 * command by 40 ms: sshd holds its next packet (Nagle) until the announcement is acknowledged,
 * and a silent client acknowledges it late.
 *
 * Measured on a lab sshd with ed25519, ECDSA and RSA keys: sshd's CPU per connection fell from
 * 30.3 to 26.6 ms, and ours from 8.5 to 7.2 ms. ssh2 has no option for this, so this replaces its
 * handler for that one message, as its own keepalive does: a no-op callback for the reply, then
 * a ping. If ssh2's internals ever move, ssh2 keeps its own behaviour. test/lab/transport.test.ts
 * reads the sshd's log to check which one ran.
 */
function answerHostKeysWithoutProof(client: Client): void {
  const internals = client as unknown as ClientInternals;
  const protocol = internals._protocol;
  const handlers = protocol?._handlers;
  const callbacks = internals._callbacks;
  const ssh2Handler = handlers?.GLOBAL_REQUEST;
  const ping = protocol?.ping?.bind(protocol);
  if (!handlers || typeof ssh2Handler !== "function" || !ping || !Array.isArray(callbacks)) return;
  handlers.GLOBAL_REQUEST = (p: { requestSuccess(): void }, name: string, wantReply: boolean, data: unknown) => {
    if (name !== "hostkeys-00@openssh.com") return ssh2Handler(p, name, wantReply, data);
    if (wantReply) p.requestSuccess();
    callbacks.push(() => {});
    ping();
  };
}

/** ssh2's own order of methods (its default also sends "none" first), for the credentials given. */
export function authMethods(have: { password: boolean; privateKey: boolean; agent: boolean }): Array<"password" | "publickey" | "agent" | "keyboard-interactive"> {
  const methods: Array<"password" | "publickey" | "agent" | "keyboard-interactive"> = [];
  if (have.password) methods.push("password");
  if (have.privateKey) methods.push("publickey");
  if (have.agent) methods.push("agent");
  if (have.password) methods.push("keyboard-interactive");
  return methods;
}

/** A handshake that times out may be a full conntrack table dropping the SYN: say how to get in. */
export const fullTableHint =
  "; if its conntrack table is full (dmesg: \"nf_conntrack: table full, dropping packet\"), it drops new connections: " +
  "a session that is already open still works, as does the console; raise unansweredDialLimit and dialErrorLimit to keep trying, and once in, " +
  "a NotrackRule for port 22 keeps SSH out of the table (docs/troubleshooting.md)";

const retryable: ReadonlySet<FailureLayer> = new Set(["connect", "timeout", "dns", "protocol"]);

/**
 * Dials one hop, retrying connection-level failures up to dialErrorLimit times: at most
 * dialErrorLimit × perDialTimeout in all (plus opening the tunnel, bounded the same way). A host
 * that doesn't answer at all is given up after unansweredDialLimit such tries (30 s by default),
 * and one with no route to it at once.
 */
export async function dial(label: string, hop: Hop, tunnel?: () => Promise<NodeJS.ReadableStream>): Promise<Client> {
  let last: HostError | undefined;
  let silent = 0;
  let attempt = 0;
  while (attempt < hop.dialErrorLimit) {
    attempt++;
    const started = Date.now();
    try {
      return await dialOnce(label, hop, tunnel ? await tunnel() : undefined);
    } catch (err) {
      if (!(err instanceof HostError) || !retryable.has(err.layer)) throw err;
      last = err;
      if (unroutable.has(err)) break;
      if (unanswered.has(err) && ++silent >= hop.unansweredDialLimit) break;
      // A refused connection fails at once: wait a little, within this attempt's time budget.
      const spare = hop.perDialTimeout * 1000 - (Date.now() - started);
      if (attempt < hop.dialErrorLimit && spare > 0) await new Promise((r) => setTimeout(r, Math.min(500, spare)));
    }
  }
  throw markUnreachable(new HostError(label, last!.layer, `unreachable after ${attempt} ${attempt === 1 ? "try" : "tries"} (${last!.message.slice(label.length + 2)})`,
    `check that the host is up and that sshd listens on that address and port${last!.layer === "timeout" ? fullTableHint : ""}`));
}

/** Errors that say no connection could be made at all (not a refused key, login or command). */
const unreachableErrors = new WeakSet<Error>();

export function markUnreachable(err: HostError): HostError {
  unreachableErrors.add(err);
  return err;
}

export function isUnreachable(err: unknown): boolean {
  return err instanceof Error && unreachableErrors.has(err);
}

/** A tunnel to `host:port` through an open bastion connection, given up after `timeoutMs`. */
export function forward(bastion: Client, label: string, via: string, host: string, port: number, timeoutMs: number): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    const fail = (detail: string) => reject(new HostError(label, "connect", `bastion ${via} could not reach the host: ${detail}`));
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
    const onClose = () => fail("the bastion connection closed");
    bastion.once("close", onClose);
    const done = () => {
      clearTimeout(timer);
      bastion.removeListener("close", onClose);
    };
    try {
      bastion.forwardOut("127.0.0.1", 0, host, port, (err, stream) => {
        done();
        if (err) fail(err.message);
        else resolve(stream);
      });
    } catch (err) {
      // ssh2 throws when the bastion's socket is already gone.
      done();
      fail((err as Error).message);
    }
  });
}
