// What both halves of the lab hand to tests: a host reachable over SSH with a pinned key, and a
// way to run commands on it with the system's own ssh client (independent of the code under test).
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { constants } from "node:os";

/** One SSH-reachable lab host (a namespaced host or a VM). */
export interface LabHost {
  /** Host name; for namespaced hosts also the network namespace's name (`ip netns exec NAME`). */
  name: string;
  /** Address to connect to. */
  host: string;
  port: number;
  user: string;
  /** The lab client's private key (OpenSSH text), authorized for `user`. */
  privateKey: string;
  /** The host's public key, `ssh-ed25519 AAAA...` (no comment): pin it. */
  hostKey: string;
  /** A known_hosts file that lists this host's key. */
  knownHostsPath: string;
}

/** How lab/netns/hosts.sh (hosts.json) and lab/vm/vm.sh (host.json) describe a host. */
export interface HostJson {
  name: string;
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  hostKey: string;
  knownHostsPath: string;
}

/** A lab script's host description, with the key read in. */
export async function labHostFromJson(j: HostJson): Promise<LabHost> {
  const { privateKeyPath, ...rest } = j;
  return { ...rest, privateKey: await readFile(privateKeyPath, "utf8") };
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; 128 + signal number if the process was killed; ssh itself fails with 255. */
  code: number;
}

export interface ExecOptions {
  /** Written to the command's stdin. */
  input?: string;
  /** Kill the command after this long. */
  timeoutMs?: number;
  /** Variables added to this process's environment for the command. */
  env?: Record<string, string>;
}

/**
 * The lab directory of the tests' hosts and VMs: scripts/test.sh's, also when vitest runs
 * directly, so that tests never stop or reuse what the demo runs in the lab scripts' own default
 * (/tmp/pulumi-conntrack-lab).
 */
export function labDir(): string {
  return process.env.PULUMI_CONNTRACK_LAB_DIR || "/tmp/pulumi-conntrack-lab-tests";
}

/** Runs a lab script (lab/netns/hosts.sh, lab/vm/vm.sh) in `labDir` (the tests' unless given). */
export function runLabScript(script: string, args: string[], options: ExecOptions & { labDir?: string } = {}): Promise<ExecResult> {
  const { labDir: dir = labDir(), env, ...rest } = options;
  return runProcess("bash", [script, ...args], { ...rest, env: { ...env, PULUMI_CONNTRACK_LAB_DIR: dir } });
}

/** Runs a local program; resolves with its exit status, never rejects for a non-zero exit. */
export function runProcess(file: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], timeout: options.timeoutMs, killSignal: "SIGKILL", env: options.env && { ...process.env, ...options.env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const sig = signal ? ((constants.signals as Record<string, number>)[signal] ?? 0) : 0;
      resolve({ stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), code: code ?? 128 + sig });
    });
    child.stdin.on("error", () => {}); // the command may exit without reading its input
    child.stdin.end(options.input ?? "");
  });
}

/**
 * Runs `command` (a shell command line) on a lab host through the system's ssh client, verifying
 * the host key against its known_hosts file. Resolves with the remote exit code.
 */
export function sshExec(host: Omit<LabHost, "privateKey">, keyPath: string, command: string, options: ExecOptions = {}): Promise<ExecResult> {
  return runProcess("ssh", sshArgs(host, keyPath, command), { timeoutMs: 120_000, ...options });
}

/** The system ssh client's arguments for running `command` on a lab host with its key pinned. */
export function sshArgs(host: Omit<LabHost, "privateKey">, keyPath: string, command: string): string[] {
  return [
    "-F", "/dev/null",
    "-i", keyPath,
    "-p", String(host.port),
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=yes",
    "-o", `UserKnownHostsFile=${host.knownHostsPath}`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "CheckHostIP=no",
    "-o", "UpdateHostKeys=no",
    "-o", "ConnectTimeout=30",
    // a host removed under an open session must not hang the test
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=6",
    "-o", "LogLevel=ERROR",
    // cheaper than OpenSSH's default sntrup761x25519 (~55 ms of client CPU per connection)
    "-o", "KexAlgorithms=^curve25519-sha256",
    "--",
    `${host.user}@${host.host}`,
    command,
  ];
}
