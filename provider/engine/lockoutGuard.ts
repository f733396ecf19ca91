import { randomBytes } from "node:crypto";
import type { HostFacts } from "../facts/host";
import { HostError } from "../transport/errors";
import { openSession } from "../transport/ssh";
import { sh } from "../transport/shell";
import type { HostTarget } from "../transport/target";
import { checkOutcome, detach, removeFile, renderScript, run, stepNotes, stepsSaid, tryRun, writeFile, type Step } from "./commands";
import { finishJob, firstPartDone, startJob, type JobOutcome } from "./hostJobs";
import { driverOf, type ItemDriver } from "./items";
import { ledgerDir, ledgerPath } from "./ledger";
import type { HostPlan } from "./plan";

/**
 * The lockout guard, the way iptables-apply and Ansible's iptables_state do it: before a change
 * that can cut traffic, the host arms a timer that puts everything back; after the change, a NEW
 * SSH connection must get in and disarm it. If the change cut SSH, nobody can disarm it, and the
 * host reverts by itself. Its files live under /run: a reboot ends the timer, and the host then
 * boots into what was persisted.
 */
const guardRoot = "/run/pulumi-conntrack-guard";

/** Seconds the host waits for the disarm: long enough for the apply and one fresh SSH handshake. */
export function guardWindow(target: HostTarget): number {
  return Math.max(30, 2 * target.perDialTimeout);
}

/**
 * What puts the host back as `facts` found it, if `plan` changes items that can cut traffic;
 * undefined when it changes none. Live items first (that restores access), then the files the
 * apply writes or removes, the ledger among them.
 */
export function revertSteps(facts: HostFacts, plan: HostPlan): Step[] | undefined {
  const changed = new Map<ItemDriver, string[]>();
  for (const c of plan.changes) {
    const { driver, name } = driverOf(c.item);
    if (driver.revert) changed.set(driver, [...(changed.get(driver) ?? []), name]);
  }
  if (changed.size === 0) return undefined;
  const steps = [...changed].flatMap(([driver, names]) => driver.revert!(facts, names));
  for (const path of [...Object.keys(plan.writeFiles), ...plan.removeFiles]) {
    const before = facts.files[path];
    steps.push(...(before === undefined ? [removeFile(path)] : writeFile(path, before)));
  }
  if (plan.writeFiles[ledgerPath] !== undefined && facts.files[ledgerPath] === undefined) steps.push(tryRun(`remove ${ledgerDir} if empty`, "rmdir", ledgerDir));
  // Every step runs whatever an earlier one did: a revert that stops at its first failure would
  // leave the rest of the change in place. Each outcome is in the guard's revert.log.
  return steps.map((step) => ({ ...step, optional: true }));
}

/**
 * Steps that arm a timer running `revert` unless the marker `armed` is gone by then. The window
 * starts when the apply is done (it writes `done`), however long the apply takes (firewall-cmd
 * under load takes a minute); an apply that never gets there gives up waiting after `cap` s.
 */
function armSteps(dir: string, revert: Step[], seconds: number, cap: number): Step[] {
  // Whoever renames the marker first wins: the timer (then it reverts) or the disarm.
  const timer = [
    sh`i=0; while [ ! -e ${dir}/done ] && [ $i -lt ${cap} ]; do sleep 1; i=$((i+1)); done`,
    sh`sleep ${seconds}`,
    sh`mv ${dir}/armed ${dir}/fired 2>/dev/null || exit 0`,
    sh`sh ${dir}/revert.sh >${dir}/revert.log 2>&1`,
  ].join("\n") + "\n";
  return [
    ...writeFile(`${dir}/revert.sh`, renderScript(revert), "0600"),
    ...writeFile(`${dir}/timer.sh`, timer, "0600"),
    ...writeFile(`${dir}/armed`, "", "0600"),
    // Detached: the timer outlives this SSH session; its descriptors are closed so the session ends.
    detach(`arm the lockout guard (revert ${seconds} s after the apply unless a new SSH connection disarms it)`, "sh", "-c", 'exec sh "$0" </dev/null >/dev/null 2>&1', `${dir}/timer.sh`),
  ];
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Opens a NEW connection (not the pooled one) within `seconds` and disarms; false if it can't. */
async function disarm(target: HostTarget, dir: string, seconds: number): Promise<{ disarmed: boolean; why: string; gotIn: boolean; refused?: HostError }> {
  const fresh = { ...target, dialErrorLimit: 1, perDialTimeout: Math.max(1, Math.min(target.perDialTimeout, seconds)), commandTimeout: Math.max(5, seconds) };
  let gotIn = false;
  try {
    const s = await openSession(fresh);
    gotIn = true;
    try {
      const r = await s.run(sh`mv ${dir}/armed ${dir}/disarmed && rm -rf ${dir}`.text, "disarm the lockout guard");
      // In only after the timer fired: as good as not in (the host has reverted), whether the
      // change cut SSH until its revert or the host was too slow to let anyone in within the window.
      return r.code === 0 ? { disarmed: true, why: "", gotIn } : { disarmed: false, why: `a new connection got in only after the guard's timer had fired (${r.stderr.trim() || `exit ${r.code}`})`, gotIn: false };
    } finally {
      s.close();
    }
  } catch (err) {
    // A host that answered but refused us (its key, our credentials, sudo) is not cut off.
    const refused = err instanceof HostError && refusals.includes(err.layer) ? err : undefined;
    return { disarmed: false, why: err instanceof HostError ? err.detail : (err as Error).message, gotIn, refused };
  }
}

/** Failures of the disarm's dial that say the host answered: not a lockout, whatever else it is. */
const refusals = ["hostkey", "authentication", "sudo"];

/**
 * The job's wait for the disarm: a persisted change must never be one the host is about to revert
 * (nor, after a reboot, one that cut SSH). Fails if the timer fired instead.
 */
function awaitDisarm(dir: string): Step {
  return { name: "wait for a new SSH connection to disarm the lockout guard", shell: sh`while [ -e ${dir}/armed ]; do sleep 0.2 2>/dev/null || sleep 1; done; [ ! -e ${dir}/fired ] || { echo "nobody disarmed the lockout guard: the host put the change back" >&2; false; }`.text };
}

/** What became of the guard in `dir`, seen over a new connection, with its revert's log; "unreachable" if none gets in. */
async function guardState(target: HostTarget, dir: string): Promise<{ state: "fired" | "armed" | "disarmed" | "unreachable"; log: string }> {
  try {
    const s = await openSession({ ...target, dialErrorLimit: 3 });
    try {
      const r = await s.run(sh`if [ -e ${dir}/fired ]; then echo fired; cat ${dir}/revert.log >&2; elif [ -e ${dir}/armed ]; then echo armed; else echo disarmed; fi`.text, "look at the lockout guard");
      const said = r.stdout.trim();
      return { state: said === "fired" || said === "armed" || said === "disarmed" ? said : "unreachable", log: r.stderr };
    } finally {
      s.close();
    }
  } catch {
    return { state: "unreachable", log: "" };
  }
}

/** What the revert did, from its log: every step put back, or the ones that weren't, in the host's words. */
export function revertReport(log: string): string {
  const steps = stepsSaid(log);
  if (steps.length === 0) return "the host has no record of its revert";
  const failed = steps.filter((s) => s.failed);
  if (failed.length === 0) return `all ${steps.length} steps of the revert succeeded`;
  return `${failed.length} of ${steps.length} steps of the revert failed, so part of the change may still be in place: ${failed.map((s) => `"${s.step}" (exit ${s.failed!.status}: ${s.failed!.said})`).join("; ")}`;
}

/**
 * Runs the apply `steps` under the guard, then `persist` once a new connection disarmed it: one
 * job on the host, so a connection lost after the disarm still gets the change persisted.
 * Resolves once the job is done; throws a "lockout" HostError once the host has reverted.
 */
export async function guardedApply(target: HostTarget, what: string, steps: Step[], revert: Step[], persist: Step[]): Promise<string[]> {
  const seconds = guardWindow(target);
  const dir = `${guardRoot}/${randomBytes(6).toString("hex")}`;
  const done = run("start the lockout guard's window", "touch", `${dir}/done`);
  const script = renderScript([run("create the guard's directory", "mkdir", "-p", dir), ...armSteps(dir, revert, seconds, target.commandTimeout), ...steps, done, firstPartDone, awaitDisarm(dir), ...persist]);
  // If the change cuts this connection, the host still finishes the script; the call then fails
  // (keepalives, or its timeout) and the disarm below can't get in either.
  let lost = "";
  const outcome: JobOutcome | undefined = await startJob(target, script, what, "ready").catch((err: Error) => ((lost = err.message), undefined));
  if (outcome && outcome.code !== 0 && !outcome.stderr.includes("arm the lockout guard")) {
    checkOutcome(target.label, what, outcome); // failed before anything was armed
  }
  const result = await disarm(target, dir, seconds - 1);
  const disarmed = async () => {
    if (!outcome) throw new HostError(target.label, "disconnected", `${what}: the connection broke during the apply (${lost}), though a new one got in afterwards and disarmed the guard: the host persists the change by itself`, "run pulumi up again");
    checkOutcome(target.label, what, outcome);
    const rest = outcome.finished ? undefined : await finishJob(target, outcome.id, what);
    if (rest) checkOutcome(target.label, what, rest);
    return stepNotes(`${outcome.stderr}${rest?.stderr ?? ""}`).map((note) => `${what}: ${note}`);
  };
  if (result.disarmed) return disarmed();
  // No disarm we know of: let the timer fire, then look at what the host did. A disarm whose
  // connection broke after it got in has disarmed it all the same.
  await sleep((seconds + 5) * 1000);
  const { state, log } = await guardState(target, dir);
  if (state === "disarmed") return disarmed();
  // What the host did, from its own record when a new connection could read it.
  const record = state === "fired" ? revertReport(log) : "its record of the revert can't be read yet";
  if (result.refused) {
    throw new HostError(target.label, result.refused.layer, `${what}: the host refused the new SSH connection that was to disarm the lockout guard (${result.why}); the host put back its rules and files by itself ${seconds} s after the apply (${record}), as it does when nobody disarms it`, result.refused.fix);
  }
  if (result.gotIn) {
    // SSH wasn't cut: the disarm's own connection broke under it (a network blip, an sshd crash).
    throw new HostError(target.label, "disconnected", `${what}: a new SSH connection got in to disarm the lockout guard but broke before it could (${result.why}); the host put back its rules and files by itself ${seconds} s after the apply (${record}), as it does when nobody disarms it`, "run pulumi up again");
  }
  throw new HostError(
    target.label,
    "lockout",
    `${what} cut new SSH connections to the host (${result.why}); the host put back its rules and files by itself ${seconds} s after the apply (${record})` + (state === "fired" ? ", and SSH answers again" : ", but SSH still doesn't answer"),
    "the plan missed a rule that keeps SSH open (e.g. an accept in a chain of your own); accept the port's untracked packets yourself, then run pulumi up again",
  );
}
