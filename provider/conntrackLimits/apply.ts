import { command, quote, writeFileAtomically } from "../transport/shell";
import type { ConntrackPlan } from "./plan";
import { hashsizeKey, procPath } from "./keys";

/** Serialises changes to one host across processes and machines running pulumi at once. */
const lockPrologue = [
  "set -e",
  "exec 9>>/run/pulumi-conntrack.lock 2>/dev/null || exec 9>>/tmp/pulumi-conntrack.lock",
  "flock -w 120 9 || { echo 'another pulumi-conntrack change has held this host for 120 s' >&2; exit 75; }",
];

/** Loads the module and waits for udev to finish what the load triggered. */
export function loadModuleScript(module: string): string {
  return [...lockPrologue, command("modprobe", module), "udevadm settle --timeout=30 2>/dev/null || true"].join("\n");
}

/**
 * One script that carries out a plan: files first (so a module load racing with us applies the
 * new values), then hashsize, then the sysctls, then udev picks up the rule.
 */
export function applyScript(plan: ConntrackPlan): string {
  const lines = [...lockPrologue];
  for (const [path, content] of Object.entries(plan.writeFiles)) lines.push(writeFileAtomically(path, content));
  for (const path of plan.removeFiles) lines.push(command("rm", "-f", path));
  for (const change of plan.changes) {
    if (change.key === hashsizeKey(plan.module)) {
      lines.push(writeKernelValue(`/sys/module/${plan.module}/parameters/hashsize`, change.key, change.to));
    }
  }
  for (const change of plan.changes) {
    if (change.key === hashsizeKey(plan.module)) continue;
    lines.push(writeKernelValue(procPath(change.key), change.key, change.to));
  }
  const touchedUdev = [...Object.keys(plan.writeFiles), ...plan.removeFiles].some((p) => p.startsWith("/etc/udev/"));
  if (touchedUdev) lines.push("udevadm control --reload 2>/dev/null || true");
  return lines.join("\n") + "\n";
}

function writeKernelValue(path: string, key: string, value: string): string {
  const complaint = `could not set ${key} to ${value} (${path})`;
  return `echo ${quote(value)} > ${quote(path)} || { echo ${quote(complaint)} >&2; exit 1; }`;
}
