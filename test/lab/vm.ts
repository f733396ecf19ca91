// Typed wrapper around lab/vm/vm.sh: Debian 12 VMs (qemu, software emulation) reached over SSH
// through a 127.0.0.1 port forward. Node built-ins only.
import { labDir, labHostFromJson, runLabScript, sshExec, type ExecOptions, type ExecResult, type HostJson, type LabHost } from "./host";
import { readFile } from "node:fs/promises";
import path from "node:path";

export type { ExecOptions, ExecResult, LabHost } from "./host";

/** Absolute path of lab/vm/vm.sh. */
export const VM_SCRIPT = path.resolve(import.meta.dirname, "../../lab/vm/vm.sh");

const NAME_RE = /^[a-z0-9-]{1,32}$/;
function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new Error(`bad lab VM name ${JSON.stringify(name)} (must match ${NAME_RE})`);
}

async function vmScript(args: string[], timeoutMs: number): Promise<string> {
  const r = await runLabScript(VM_SCRIPT, args, { timeoutMs });
  if (r.code !== 0) {
    throw new Error(`vm.sh ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr.trimEnd()}`);
  }
  return r.stdout;
}

function lastJsonLine(stdout: string): HostJson {
  const line = stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as HostJson;
  } catch {
    throw new Error(`vm.sh printed no host JSON; last line: ${JSON.stringify(line)}`);
  }
}

/** vm.sh's description of a booted VM: its SSH endpoint and key, and the host port forwarded to its port 80. */
export async function vmHostJson(name: string): Promise<HostJson & { httpPort: number }> {
  return (await readHostJson(name)) as HostJson & { httpPort: number };
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

/** The Debian releases the lab builds VM images of (lab/vm/build-image.sh). */
export type DebianRelease = "bullseye" | "bookworm" | "trixie";
/** A release's image, or its variant with ufw instead of netfilter-persistent (they conflict), or with Docker and fail2ban. */
export type LabImage = DebianRelease | `${DebianRelease}+ufw` | `${DebianRelease}+neighbours`;

/** Start VM `name` (or resume it after powerOffVm, same disk and host key); resolves once SSH answers. */
export async function bootVm(name: string, release: LabImage = "bookworm"): Promise<LabHost> {
  checkName(name);
  return labHostFromJson(lastJsonLine(await vmScript(["boot", name, release], BOOT_TIMEOUT_MS)));
}

/** The LabHost of a VM booted earlier (by this or another process). */
export async function vmInfo(name: string): Promise<LabHost> {
  return labHostFromJson(await readHostJson(name));
}

/** Reboot the guest; resolves once SSH answers again (with the same host key) from a new boot. */
export async function rebootVm(name: string): Promise<LabHost> {
  checkName(name);
  return labHostFromJson(lastJsonLine(await vmScript(["reboot", name], REBOOT_TIMEOUT_MS)));
}

/** Clean shutdown; the disk, keys and port are kept for the next bootVm(name). */
export async function powerOffVm(name: string): Promise<void> {
  checkName(name);
  await vmScript(["poweroff", name], 4 * 60_000);
}

/** A power cut: qemu SIGKILLed, the guest's unwritten page cache lost; bootVm(name) starts it again from its disk. */
export async function powerCutVm(name: string): Promise<void> {
  checkName(name);
  await vmScript(["powercut", name], 60_000);
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
  return sshExec(h, h.privateKeyPath, command, opts);
}

/** Run `command` as root in the VM: its trimmed stdout, or an error naming the VM, the command, its exit code and stderr. */
export async function vmSh(name: string, command: string): Promise<string> {
  const r = await vmExec(name, command);
  if (r.code !== 0) throw new Error(`${name}: ${command} → exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}
