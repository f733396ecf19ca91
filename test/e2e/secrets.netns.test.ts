import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { testStack, type TestStack } from "./harness";

// The secrets of a connection (private key, its passphrase, login password, sudo passwords) stay
// out of everything a user or the host can see: `pulumi stack export` and the backend's files, the
// engine's -v=9 logs (plugins included), error messages, `preview --diff`, and the argv and
// environment of every process the host starts during two failed ups, two ups, a preview, a refresh
// and a destroy (execve traced on the sshd that serves the stack). Each value is distinctive and
// random per run.
const prefix = "pcsec";
const port = 2201;
let host: LabHost;
let stack: TestStack;
let tracer: ChildProcess;
const dir = mkdtempSync(join(tmpdir(), "pct-secrets-"));
const traceLog = join(dir, "execve.log");

const distinct = (word: string) => `${word}-${randomBytes(9).toString("hex")}`;
const secret = {
  passphrase: distinct("Passphrase-Okapi"),
  keyUserSudo: distinct("SudoPw-Axolotl"),
  login: distinct("LoginPw-Narwhal"),
  wrongPassphrase: distinct("WrongPassphrase-Quagga"),
  wrongSudo: distinct("WrongSudo-Tapir"),
  rotatedSudo: distinct("RotatedSudo-Dugong"),
};
execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", secret.passphrase, "-C", "secrets-e2e", "-f", join(dir, "key")]);
const privateKey = readFileSync(join(dir, "key"), "utf8");

/**
 * What must never be seen: each secret as text and base64-encoded at each of the three byte
 * alignments (the middle of a longer encoded text), and each line of the key's body but its
 * first (openssh-key-v1 and the cipher names, the same in every key) and its short last.
 */
function forbidden(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of Object.entries({ ...secret, privateKey })) {
    out.push([name, value]);
    for (const pad of [0, 1, 2]) out.push([`base64 of ${name} (+${pad})`, Buffer.concat([Buffer.alloc(pad), Buffer.from(value)]).toString("base64").slice(pad ? 4 : 0, -4)]);
  }
  const body = privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
  for (const line of body.slice(1, -1)) out.push(["a line of privateKey", line]);
  return out;
}
function expectNoSecret(where: string, text: string): void {
  const seen = forbidden().filter(([, value]) => text.includes(value)).map(([name]) => name);
  expect(seen, `secrets found in ${where}`).toEqual([]);
}

/** A connection to the second sshd, which allows passwords; both users need sudo's password. */
const byKey = (passphrase = secret.passphrase, sudoPassword = secret.keyUserSudo) => ({ host: host.host, port, user: "seckey", privateKey, privateKeyPassword: passphrase, hostKey: host.hostKey, sudo: { password: sudoPassword } });
const byPassword = (sudoPassword = secret.login) => ({ host: host.host, port, user: "secpw", password: secret.login, hostKey: host.hostKey, sudo: { password: sudoPassword } });
const setConnections = (key: object, password: object, udpTimeout = 31) =>
  stack.setConfig({ byKey: { value: JSON.stringify(key), secret: true }, byPassword: { value: JSON.stringify(password), secret: true }, udpTimeout: { value: String(udpTimeout) } });
/** The engine's and its plugins' logs at -v=9, on stderr. */
const verbose = { logVerbosity: 9, logToStdErr: true, logFlow: true, color: "never" as const };

beforeAll(async () => {
  [host] = await startHosts(1, prefix);
  const pub = readFileSync(join(dir, "key.pub"), "utf8").trim();
  const labConfig = join(dirname(host.knownHostsPath), "h1", "sshd", "sshd_config");
  // Users live in the host's private /etc, their homes in its private /tmp. The second sshd is the
  // host's own configuration with passwords allowed, on another port.
  // chpasswd reads the passwords from the script on stdin, so they never sit in an argv there.
  const setup = [
    "set -e",
    "for u in seckey secpw; do id $u >/dev/null 2>&1 || useradd -M -d /tmp/$u -s /bin/sh $u; mkdir -p /tmp/$u/.ssh; chown -R $u /tmp/$u; chmod 700 /tmp/$u/.ssh; echo \"$u ALL=(ALL) ALL\" > /etc/sudoers.d/$u; chmod 440 /etc/sudoers.d/$u; done",
    `echo '${pub}' > /tmp/seckey/.ssh/authorized_keys; chown seckey /tmp/seckey/.ssh/authorized_keys`,
    "chpasswd <<EOF",
    `seckey:${secret.keyUserSudo}`,
    `secpw:${secret.login}`,
    "EOF",
    `sed -e 's/^Port 22$/Port ${port}/' -e 's/^PasswordAuthentication no$/PasswordAuthentication yes/' -e 's|^PidFile none$|PidFile /tmp/secrets-sshd.pid|' ${labConfig} > /tmp/secrets-sshd_config`,
    "/usr/sbin/sshd -f /tmp/secrets-sshd_config -E /tmp/secrets-sshd.log",
    // the daemon writes its pid file after it forks away from us
    "for i in $(seq 100); do [ -s /tmp/secrets-sshd.pid ] && break; sleep 0.05; done; cat /tmp/secrets-sshd.pid",
  ].join("\n");
  const r = await hostExec(host, "sh -s", { input: setup });
  expect(r).toMatchObject({ code: 0, stderr: "" });
  const sshdPid = r.stdout.trim().split("\n").pop()!;
  tracer = spawn("strace", ["-f", "-e", "trace=execve", "-v", "-s", "4096", "-o", traceLog, "-p", sshdPid], { stdio: ["ignore", "ignore", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    tracer.stderr!.on("data", (d: Buffer) => d.toString().includes("attached") && resolve());
    tracer.once("exit", (code) => reject(new Error(`strace exited with ${code}`)));
  });
  stack = await testStack("secrets", {});
}, 120_000);

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    tracer?.kill("SIGINT");
    await stopHosts(prefix);
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("connection secrets through failed ups, up, preview --diff, refresh and destroy", () => {
  const seen: Record<string, string> = {};

  it("a wrong passphrase (refused in check) and a wrong sudo password fail naming host and step, not the values", async () => {
    const failedUp = async (key: object, password: object) => {
      await setConnections(key, password);
      const err = await stack.stack.up(verbose).then(() => undefined, (e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      return String(err);
    };
    seen["up with a wrong passphrase (error, stdout, -v=9 stderr)"] = await failedUp(byKey(secret.wrongPassphrase), byPassword());
    expect(seen["up with a wrong passphrase (error, stdout, -v=9 stderr)"]).toContain(`seckey@${host.host}:${port}: bad credentials: Cannot parse privateKey`);
    seen["up with a wrong sudo password (error, stdout, -v=9 stderr)"] = await failedUp(byKey(), byPassword(secret.wrongSudo));
    expect(seen["up with a wrong sudo password (error, stdout, -v=9 stderr)"]).toContain(`secpw@${host.host}:${port}: sudo refused to run`);
  }, 180_000);

  it("up, a sudo password rotated: preview --diff and up, refresh, destroy", async () => {
    await setConnections(byKey(), byPassword());
    const up = await stack.stack.up({ ...verbose, diff: true });
    seen["up output"] = up.stdout;
    seen["up -v=9 stderr"] = up.stderr;
    expect(up.outputs.statusHost.value).toBe(`secpw@${host.host}:${port}`);
    expect(up.stderr.length).toBeGreaterThan(20_000);
    // The SDK's routine line that printed the credentials outputs stays in the program
    // (sdk/internal/debugLog.ts); the engine's own line names the registration.
    expect(up.stderr).toMatch(/ResourceMonitor\.RegisterResource received: t=pulumi-nodejs:dynamic\/pulumi-conntrack:\w+, name=by-key,/);
    expect(up.stderr).not.toMatch(/RegisterResource RPC (prepared|finished): .*by-key/);

    const rotated = await hostExec(host, "chpasswd", { input: `seckey:${secret.rotatedSudo}\n` });
    expect(rotated.code).toBe(0);
    await setConnections(byKey(secret.passphrase, secret.rotatedSudo), byPassword(), 32);
    const preview = await stack.stack.preview({ ...verbose, diff: true });
    seen["preview --diff output"] = preview.stdout;
    seen["preview -v=9 stderr"] = preview.stderr;
    expect(preview.stdout).toMatch(/~ .*udp/);
    expect(preview.stdout).toMatch(/credentials\s*:\s*\[secret\]/);
    const again = await stack.stack.up({ ...verbose, diff: true });
    seen["second up output"] = again.stdout;
    seen["second up -v=9 stderr"] = again.stderr;
    const refresh = await stack.stack.refresh(verbose);
    seen["refresh output and -v=9 stderr"] = refresh.stdout + refresh.stderr;

    // The automation API's exportStack adds --show-secrets: run the command a user would.
    const exported = execFileSync("pulumi", ["stack", "export", "--stack", "test"], { cwd: stack.stack.workspace.workDir, env: { ...process.env, ...stack.stack.workspace.envVars }, encoding: "utf8" });
    seen["stack export"] = exported;
    expect(exported).toContain('"user": "secpw"');
    expect(exported).toContain("ciphertext");
    const destroy = await stack.stack.destroy(verbose);
    seen["destroy output and -v=9 stderr"] = destroy.stdout + destroy.stderr;
    seen["backend files (state, history, backups)"] = stack.backendFiles().join("\n");
  }, 300_000);

  it("appear nowhere: not in state, logs, errors or diffs, nor in any argv or environment on the host", async () => {
    for (const [where, text] of Object.entries(seen)) expectNoSecret(where, text);
    tracer.kill("SIGINT");
    await new Promise((r) => tracer.once("exit", r));
    const trace = readFileSync(traceLog, "utf8");
    // The trace saw the stack's work: logins of both users, their sudo, the host lock, iptables.
    const programs = new Set([...trace.matchAll(/execve\("([^"]+)"/g)].map((m) => m[1].split("/").pop()));
    for (const p of ["sshd", "sudo", "sh", "base64", "flock", "iptables-restore"]) expect(programs, `execve of ${p} traced`).toContain(p);
    expect(trace).toMatch(/USER=secpw/);
    expect(trace).toMatch(/USER=seckey/);
    expectNoSecret("the host's execve log (argv and environment)", trace);
  }, 60_000);
});
