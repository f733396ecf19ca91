import { randomBytes } from "node:crypto";
import { floorBlockers } from "../facts/tools";
import { HostError } from "../transport/errors";
import { session } from "../transport/pool";
import { sh, type ShellText } from "../transport/shell";
import type { HostTarget } from "../transport/target";
import type { Step, StepsOutcome } from "./commands";

/**
 * Changes run on the host as jobs detached from the SSH session (setsid, in the background): a
 * connection that drops in the middle of an apply can't stop the apply half way, whether sshd
 * notices the drop or not.
 * Each job records how it ended in its own directory; the SSH call only waits for that record,
 * prints it and removes it. When the call is cut, the record stays: the next transaction on the
 * host (hostLock.ts) first waits for any job still running (each holds the jobs' lock while it
 * runs), then reports and removes the records nobody collected.
 *
 * Under /run (tmpfs): a reboot ends the jobs and clears their records, and the host boots into
 * what the job had persisted by then.
 */
const noRun = "/run is not a writable directory on this host: pulumi-conntrack keeps its host lock and job records only there (root's tmpfs), never in a world-writable directory such as /tmp";
const stateDir = sh`d=/run; [ -d /run ] && [ -w /run ] || { echo ${noRun} >&2; exit 1; }`;
const jobsDir = sh`"$d/pulumi-conntrack-jobs"`;
/** Held by a running job; the next transaction waits for it before it reads anything. */
const jobLock = sh`"$d/pulumi-conntrack-jobs.lock"`;
const orphanMark = "@@pulumi-conntrack-orphan ";
const stillRunning = "@@pulumi-conntrack-job-running";

/** Shell lines that point `d` at the host's state directory (/run), or stop, saying why, where it can't be written. */
export const hostStateDir: ShellText = stateDir;

/**
 * Shell lines, run under the host lock, that wait up to `waitSeconds` for a job still running,
 * then print one line per job whose record nobody collected and remove the records.
 */
export function collectOrphansScript(waitSeconds: number): string {
  return [
    awaitJobsScript(waitSeconds),
    sh`for j in ${jobsDir}/*/; do [ -d "$j" ] || continue;`,
    sh`  w=$(cat "$j/what" 2>/dev/null); s=$(cat "$j/exit" 2>/dev/null || echo killed); e=$(grep -v '^@@pulumi-conntrack-' "$j/err" 2>/dev/null | tail -n 3 | tr '\n' ' ');`,
    sh`  printf ${`${orphanMark}%s|%s|%s\n`} "$w" "$s" "$e"; rm -rf "$j"; done`,
  ].join("\n");
}

/** Shell that waits up to `waitSeconds` for every job still running on the host, or fails saying so. */
function awaitJobsScript(waitSeconds: number): ShellText {
  return sh`flock -w ${waitSeconds} ${jobLock} true || { echo ${`an earlier change is still running on this host after ${waitSeconds} s`} "(its lock is $d/pulumi-conntrack-jobs.lock)" >&2; exit 1; }`;
}

/**
 * Waits, within the target's commandTimeout, until no job runs on the host: a job whose waiter
 * gave up may still be changing it, and nothing may be planned from facts read meanwhile.
 */
export async function awaitJobs(target: HostTarget, what: string): Promise<void> {
  const r = await (await session(target)).run([stateDir, awaitJobsScript(target.commandTimeout)].join("\n"), what);
  if (r.code !== 0) throw new HostError(target.label, "timeout", `${what}: ${r.stderr.trim()}`, "the change goes on on the host by itself; run pulumi up again once it ended (the next operation waits for it)");
}

/** The uncollected job records a lock holder printed, in words for the user. */
export function orphanReports(said: string): string[] {
  return said.split("\n").filter((l) => l.startsWith(orphanMark)).map((line) => {
    const [what, status, stderr] = line.slice(orphanMark.length).split("|");
    const ended = status === "0" ? "and succeeded" : status === "killed" ? "but was killed before it finished (a reboot or a kill)" : `and failed (exit ${status}): ${stderr.trim() || "no message"}`;
    return `an earlier "${what}" lost its SSH connection; it went on on the host by itself ${ended}; this run read the host as that left it`;
  });
}

/**
 * A step of a job that tells the waiting SSH call the job's first part is done (see startJob).
 * `$J` is the job's own directory, set by the launcher.
 */
export const firstPartDone: Step = { name: "report the first part done", shell: ': >"$J/ready"' };

/** The shell that waits for job `$j` to reach `marker` (or its end) and prints what it said so far (exported for tests). */
export function waiter(target: HostTarget, marker: "exit" | "ready"): string {
  const polls = Math.ceil(target.commandTimeout * 5) + 25;
  const reached = marker === "exit" ? sh`[ -e "$j/exit" ]` : sh`{ [ -e "$j/exit" ] || [ -e "$j/ready" ]; }`;
  return [
    // A fifth of a second a poll; where sleep takes whole seconds only (POSIX's), a second that
    // counts as five polls.
    sh`i=0; while ! ${reached} && [ $i -lt ${polls} ]; do if sleep 0.2 2>/dev/null; then i=$((i+1)); else sleep 1; i=$((i+5)); fi; done`,
    sh`${reached} || { echo ${`still running on the host after ${Math.round(polls / 5)} s`} "(job $j)" >&2; exit 124; }`,
    // A finished job's record is removed only once its outcome went out: a cut connection leaves
    // it for the next transaction. A job still running keeps it anyway.
    sh`[ -e "$j/exit" ] || { cat "$j/out"; cat "$j/err" >&2; echo ${stillRunning} >&2; exit 0; }`,
    sh`cat "$j/out" && cat "$j/err" >&2 && s=$(cat "$j/exit") && rm -rf "$j" && exit "$s"`,
    "exit 1",
  ].join("\n");
}

/** How a detached job runs: under the jobs' lock ($1), in its directory ($2), its status written last through a rename. */
const jobRunner = 'J="$2" flock -o "$1" sh "$2/script" >"$2/out" 2>"$2/err"; echo $? >"$2/exit.tmp"; mv "$2/exit.tmp" "$2/exit"';

/** What a started job did so far; `finished` once it ended (its record is gone then). */
export interface JobOutcome extends StepsOutcome {
  id: string;
  finished: boolean;
}

/**
 * Starts `script` on the host as a detached job and waits, within the target's commandTimeout,
 * for its end, or with `until: "ready"` for its step firstPartDone. A connection that breaks
 * meanwhile fails the call, and the job goes on.
 */
export async function startJob(target: HostTarget, script: string, what: string, until: "exit" | "ready" = "exit"): Promise<JobOutcome> {
  const id = randomBytes(6).toString("hex");
  const launcher = [
    stateDir,
    sh`j=${jobsDir}/${id}`,
    sh`mkdir -p "$j" || exit 1`,
    sh`printf %s ${Buffer.from(script, "utf8").toString("base64")} | base64 -d >"$j/script" || exit 1`,
    sh`printf '%s\n' ${what.replace(/[\r\n|]/g, " ")} >"$j/what"`,
    // A record with `exit` is complete. flock -o: what the job leaves running (the lockout
    // guard's timer) doesn't hold the jobs' lock. Detached as commands.ts's detach does it
    // (setsid in the background: `setsid -f` is util-linux ≥ 2.32's alone).
    sh`command -v setsid >/dev/null 2>&1 || { echo ${floorBlockers({ missing: ["setsid"], lacking: [] })[0]} >&2; exit 1; }`,
    sh`setsid sh -c ${jobRunner} sh ${jobLock} "$j" </dev/null >/dev/null 2>&1 &`,
    waiter(target, until),
  ].join("\n");
  return withCutNote(target, async () => {
    const r = await (await session(target)).run(launcher, what);
    const running = r.stderr.includes(`${stillRunning}\n`);
    return { ...r, stderr: r.stderr.replace(`${stillRunning}\n`, ""), id, finished: !running };
  });
}

/** Waits for the end of job `id`, started with `until: "ready"`. */
export function finishJob(target: HostTarget, id: string, what: string): Promise<StepsOutcome> {
  return withCutNote(target, async () => (await session(target)).run([stateDir, sh`j=${jobsDir}/${id}`, waiter(target, "exit")].join("\n"), what));
}

async function withCutNote<T>(target: HostTarget, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof HostError && (err.layer === "disconnected" || err.layer === "timeout")) {
      throw new HostError(target.label, err.layer, `${err.detail}; if it had started, the change goes on on the host by itself, and the next operation on this host waits for it and reports how it ended`, "run pulumi up again");
    }
    throw err;
  }
}
