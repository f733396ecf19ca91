// Typed wrapper around lab/vm/vm.sh: Debian 12 VMs (qemu, software emulation) reached over SSH
// through a 127.0.0.1 port forward. Node built-ins only.
import { execFile } from "node:child_process";
import { constants as osConstants } from "node:os";
import { readFile } from "node:fs/promises";
import path from "node:path";

export interface LabHost {
  name: string;
  host: string;
  port: number;
  user: string;
  /** The lab's client private key (OpenSSH format), authorized for root in every lab VM. */
  privateKey: string;
  /** The VM's own host key, "ssh-ed25519 AAAA..." (no comment). */
  hostKey: string;
  /** known_hosts file with exactly this VM's `[127.0.0.1]:PORT ssh-ed25519 ...` line. */
  knownHostsPath: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code of the remote command; 255 = ssh itself failed; 128+N = killed by signal N locally. */
  code: number;
}

export interface ExecOptions {
  /** Local timeout for the whole ssh run (default 120 s). */
  timeoutMs?: number;
  /** Written to the remote command's stdin. */
  input?: string;
}

/** Absolute path of lab/vm/vm.sh. */
export const VM_SCRIPT = path.resolve(import.meta.dirname, "../../lab/vm/vm.sh");

/** The lab's run dir (same default as vm.sh). */
export function labDir(): string {
  return process.env.PULUMI_CONNTRACK_LAB_DIR || "/tmp/pulumi-conntrack-lab";
}

const NAME_RE = /^[a-z0-9-]{1,32}$/;
function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new Error(`bad lab VM name ${JSON.stringify(name)} (must match ${NAME_RE})`);
}

function run(file: string, args: string[], timeoutMs: number, input?: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { encoding: "utf8", maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs, killSignal: "SIGTERM" },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr, code: 0 });
        const e = err as NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals | null; killed?: boolean };
        if (typeof e.code === "number") return resolve({ stdout, stderr, code: e.code });
        if (e.signal) {
          const n = osConstants.signals[e.signal] ?? 0;
          const why = e.killed ? ` (killed after ${timeoutMs} ms)` : "";
          return resolve({ stdout, stderr: `${stderr}${stderr.endsWith("\n") || !stderr ? "" : "\n"}${file}: ${e.signal}${why}\n`, code: 128 + n });
        }
        reject(err); // spawn failure (ENOENT, ...)
      },
    );
    child.stdin?.on("error", () => {}); // the remote side may close stdin early
    child.stdin?.end(input ?? "");
  });
}

async function vmScript(args: string[], timeoutMs: number): Promise<string> {
  const r = await run("bash", [VM_SCRIPT, ...args], timeoutMs);
  if (r.code !== 0) {
    throw new Error(`vm.sh ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr.trimEnd()}`);
  }
  return r.stdout;
}

interface HostJson {
  name: string;
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  hostKey: string;
  knownHostsPath: string;
}

async function toLabHost(j: HostJson): Promise<LabHost> {
  return {
    name: j.name,
    host: j.host,
    port: j.port,
    user: j.user,
    privateKey: await readFile(j.privateKeyPath, "utf8"),
    hostKey: j.hostKey,
    knownHostsPath: j.knownHostsPath,
  };
}

function lastJsonLine(stdout: string): HostJson {
  const line = stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as HostJson;
  } catch {
    throw new Error(`vm.sh printed no host JSON; last line: ${JSON.stringify(line)}`);
  }
}

async function readHostJson(name: string): Promise<HostJson> {
  checkName(name);
  const file = path.join(labDir(), "vm", name, "host.json");
  try {
    return JSON.parse(await readFile(file, "utf8")) as HostJson;
  } catch (err) {
    throw new Error(`lab VM ${name} has no ${file} (boot it first): ${(err as Error).message}`);
  }
}

// Boot builds the image on first use (1-4 min) and then waits up to 180 s (PULUMI_CONNTRACK_VM_TIMEOUT) for SSH.
const BOOT_TIMEOUT_MS = 15 * 60_000;
const REBOOT_TIMEOUT_MS = 6 * 60_000;

/** Start VM `name` (or resume it after powerOffVm, same disk and host key); resolves once SSH answers. */
export async function bootVm(name: string): Promise<LabHost> {
  checkName(name);
  return toLabHost(lastJsonLine(await vmScript(["boot", name], BOOT_TIMEOUT_MS)));
}

/** The LabHost of a VM booted earlier (by this or another process). */
export async function vmInfo(name: string): Promise<LabHost> {
  return toLabHost(await readHostJson(name));
}

/** Reboot the guest; resolves once SSH answers again (with the same host key) from a new boot. */
export async function rebootVm(name: string): Promise<LabHost> {
  checkName(name);
  return toLabHost(lastJsonLine(await vmScript(["reboot", name], REBOOT_TIMEOUT_MS)));
}

/** Clean shutdown; the disk, keys and port are kept for the next bootVm(name). */
export async function powerOffVm(name: string): Promise<void> {
  checkName(name);
  await vmScript(["poweroff", name], 4 * 60_000);
}

/** Stop the VM (by its own pid file) and delete its disk and state. */
export async function destroyVm(name: string): Promise<void> {
  checkName(name);
  await vmScript(["destroy", name], 2 * 60_000);
}

/** Destroy every lab VM left under the lab dir (e.g. by a crashed run). */
export async function cleanupVms(): Promise<void> {
  await vmScript(["cleanup"], 5 * 60_000);
}

/** Run `command` (a shell command line) as root in the VM over the system ssh client. */
export async function vmExec(name: string, command: string, opts: ExecOptions = {}): Promise<ExecResult> {
  const h = await readHostJson(name);
  const args = [
    "-F", "none",
    "-i", h.privateKeyPath,
    "-p", String(h.port),
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=yes",
    "-o", `UserKnownHostsFile=${h.knownHostsPath}`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "HostKeyAlgorithms=ssh-ed25519",
    "-o", "CheckHostIP=no",
    "-o", "UpdateHostKeys=no",
    "-o", "ConnectTimeout=30",
    "-o", "ServerAliveInterval=10",
    "-o", "ServerAliveCountMax=6",
    "-o", "LogLevel=ERROR",
    `${h.user}@${h.host}`,
    command,
  ];
  return run("ssh", args, opts.timeoutMs ?? 120_000, opts.input);
}
