import { randomBytes } from "node:crypto";
import { HostError } from "../transport/errors";
import { session } from "../transport/pool";
import { quote } from "../transport/shell";
import type { HostTarget } from "../transport/target";
import type { StepsOutcome } from "./commands";

/**
 * Changes run on the host as jobs detached from the SSH session (setsid): a connection that drops
 * in the middle of an apply can't stop the apply half way, whether sshd notices the drop or not.
 * Each job records how it ended in its own directory; the SSH call only waits for that record,
 * prints it and removes it. When the call is cut, the record stays: the next transaction on the
 * host (hostLock.ts) first waits for any job still running (each holds the jobs' lock while it
 * runs), then reports and removes the records nobody collected.
 *
 * Under /run (tmpfs): a reboot ends the jobs and clears their records, and the host boots into
 * what the job had persisted by then.
 */
const stateDir = "d=/run; [ -d /run ] && [ -w /run ] || d=/tmp";
const jobsDir = '"$d/pulumi-conntrack-jobs"';
/** Held by a running job; the next transaction waits for it before it reads anything. */
const jobLock = '"$d/pulumi-conntrack-jobs.lock"';
const orphanMark = "@@pulumi-conntrack-orphan ";

/** Shell lines that point `d` at the host's state directory (/run, or /tmp where /run isn't writable). */
export const hostStateDir = stateDir;

/**
 * Shell lines, run under the host lock, that wait up to `waitSeconds` for a job still running,
 * then print one line per job whose record nobody collected and remove the records.
 */
export function collectOrphansScript(waitSeconds: number): string {
  return [
    `flock -w ${waitSeconds} ${jobLock} true || { echo "an earlier change is still running on this host after ${waitSeconds} s (its lock is ${jobLock.replace(/"/g, "")})" >&2; exit 1; }`,
    `for j in ${jobsDir}/*/; do [ -d "$j" ] || continue;`,
    `  w=$(cat "$j/what" 2>/dev/null); s=$(cat "$j/exit" 2>/dev/null || echo killed); e=$(grep -v '^@@pulumi-conntrack-step ' "$j/err" 2>/dev/null | tail -n 3 | tr '\\n' ' ');`,
    `  printf '${orphanMark}%s|%s|%s\\n' "$w" "$s" "$e"; rm -rf "$j"; done`,
  ].join("\n");
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
 * Runs `script` on the host as a detached job and waits for its outcome, within the target's
 * commandTimeout. A connection that breaks meanwhile fails the call, and the job goes on.
 */
export async function runJob(target: HostTarget, script: string, what: string): Promise<StepsOutcome> {
  const id = randomBytes(6).toString("hex");
  const polls = Math.ceil(target.commandTimeout * 5) + 25;
  const launcher = [
    stateDir,
    `j=${jobsDir}/${id}`,
    'mkdir -p "$j" || exit 1',
    `printf %s ${quote(Buffer.from(script, "utf8").toString("base64"))} | base64 -d >"$j/script" || exit 1`,
    `printf '%s\\n' ${quote(what.replace(/[\r\n|]/g, " "))} >"$j/what"`,
    // The job writes its status last, through a rename: a record with `exit` is complete. flock -o:
    // what the job leaves running (the lockout guard's timer) doesn't hold the jobs' lock.
    `setsid -f sh -c 'flock -o "$1" sh "$2/script" >"$2/out" 2>"$2/err"; echo $? >"$2/exit.tmp"; mv "$2/exit.tmp" "$2/exit"' sh ${jobLock} "$j" </dev/null >/dev/null 2>&1 || exit 1`,
    `i=0; while [ ! -e "$j/exit" ] && [ $i -lt ${polls} ]; do sleep 0.2; i=$((i+1)); done`,
    `[ -e "$j/exit" ] || { echo "still running on the host after ${Math.round(polls / 5)} s (job $j)" >&2; exit 124; }`,
    // Removed only once its outcome went out: a cut connection leaves it for the next transaction.
    'cat "$j/out" && cat "$j/err" >&2 && s=$(cat "$j/exit") && rm -rf "$j" && exit "$s"',
    "exit 1",
  ].join("\n");
  try {
    return await (await session(target)).run(launcher, what);
  } catch (err) {
    if (err instanceof HostError && (err.layer === "disconnected" || err.layer === "timeout")) {
      throw new HostError(target.label, err.layer, `${err.detail}; if it had started, the change goes on on the host by itself, and the next operation on this host waits for it and reports how it ended`, "run pulumi up again");
    }
    throw err;
  }
}
