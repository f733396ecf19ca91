import { HostError } from "../transport/errors";
import { command, quote } from "../transport/shell";

/**
 * The one way a change reaches a host: a list of named steps, each built from argv (quoted in
 * transport/shell.ts), rendered into a script that stops at the first failing step and reports
 * which one failed with the host's own message. No `exec` redirections and no `set -e`: dash
 * exits on a failed `exec 9>file` before any fallback runs, and `set -e` is ignored inside
 * `&&` chains, so each step carries its own explicit check instead.
 */
export interface Step {
  /** What the step does, as a user reads it in an error ("write /etc/sysctl.d/90-….conf"). */
  name: string;
  /** The shell text of the step: built only by the helpers below, never by hand. */
  readonly shell: string;
  /** A failure of this step is reported but does not stop the script. */
  optional?: boolean;
}

/** A step that runs one command. */
export function run(name: string, ...argv: Array<string | number>): Step {
  return { name, shell: command(...argv) };
}

/** Like run, for a command whose failure is only worth a note (e.g. udevadm where udev isn't running). */
export function tryRun(name: string, ...argv: Array<string | number>): Step {
  return { name, shell: command(...argv), optional: true };
}

/** Writes `value` and a newline into a kernel file (/proc/sys/…, /sys/module/…/parameters/…). */
export function writeValue(name: string, path: string, value: string): Step {
  return { name, shell: `printf '%s\\n' ${quote(value)} > ${quote(path)}` };
}

/**
 * Writes a whole file atomically and durably: a temp file in the same directory, flushed to the
 * disk, then a rename, then the directory flushed. A power cut at any point leaves the old file or
 * the new one, whole: without the flushes, ext4 commits the rename within 5 s but the data only
 * with its writeback (up to 30 s later), and a cut in between boots into an empty file. A file
 * that exists keeps its mode (RHEL's /etc/sysconfig/iptables is 0600), and its owner and group:
 * the temp file starts as a copy of it (`cp -p`, where `chmod --reference` is GNU's alone), and
 * the new content truncates that copy, which keeps them. A new file gets `mode`.
 */
export function writeFile(path: string, content: string, mode = "0644"): Step[] {
  const tmp = `${path}.pulumi-conntrack.tmp`;
  const encoded = Buffer.from(content, "utf8").toString("base64");
  return [
    run(`create ${dirOf(path)}`, "mkdir", "-p", dirOf(path)),
    { name: `write ${path}`, shell: `{ [ ! -e ${quote(path)} ] || ${command("cp", "-p", path, tmp)}; } && printf %s ${quote(encoded)} | base64 -d > ${quote(tmp)}` },
    { name: `chmod ${path}`, shell: `[ -e ${quote(path)} ] || ${command("chmod", mode, tmp)}` },
    { name: `flush ${path} to disk`, shell: flush(tmp) },
    run(`write ${path}`, "mv", "-f", tmp, path),
    { name: `flush ${dirOf(path)} to disk`, shell: flush(dirOf(path)) },
  ];
}

/**
 * Shell that makes `paths` durable (a directory: its entries, i.e. renames and removals in it).
 * `sync FILE…` (coreutils 8.24+, newer busybox) fsyncs just those; where sync takes no
 * arguments, or one of them is gone, a whole `sync` does it.
 */
export function flush(...paths: string[]): string {
  return `{ ${command("sync", ...paths)} || sync; }`;
}

/** A step that flushes the whole filesystem `path` is on (`sync -f`, else `sync`): for changes made by a tool that doesn't. */
export function flushFilesystemOf(name: string, path: string): Step {
  return { name, shell: `{ ${command("sync", "-f", path)} || sync; }` };
}

/**
 * Starts a command that outlives this script and the SSH session: in the background, in a session
 * of its own, its descriptors closed. `setsid` in the background rather than `setsid -f`, which
 * util-linux has only since 2.32 (its issue #518; RHEL 7 has 2.23) and busybox not at all: a shell
 * without job control leaves a background command in the shell's process group, so the command
 * leads no group and every setsid makes it a session of its own in place. The step fails only
 * where there is no setsid.
 */
export function detach(name: string, ...argv: Array<string | number>): Step {
  return { name, shell: `if command -v setsid >/dev/null 2>&1; then ${command("setsid", ...argv)} </dev/null >/dev/null 2>&1 & else echo 'setsid: not found' >&2; false; fi` };
}

/** Runs a command with `content` on its stdin (e.g. iptables-restore's input). */
export function pipeInto(name: string, content: string, ...argv: Array<string | number>): Step {
  const encoded = Buffer.from(content, "utf8").toString("base64");
  return { name, shell: `printf %s ${quote(encoded)} | base64 -d | ${command(...argv)}` };
}

type Argv = Array<string | number>;

/**
 * Runs `then` only while `test` succeeds (`when: "fails"`: only while it fails), for undo steps
 * that must take out or put back exactly one thing whether or not someone else already did;
 * `orElse` when `then` fails. The step fails only when the action does.
 */
export function runIf(name: string, when: "succeeds" | "fails", test: Argv, then: Argv, orElse?: Argv): Step {
  const check = `${command(...test)} >/dev/null 2>&1`;
  const act = orElse ? `{ ${command(...then)} || ${command(...orElse)}; }` : command(...then);
  return { name, shell: when === "succeeds" ? `{ ! ${check} || ${act}; }` : `{ ${check} || ${act}; }` };
}

/** Removes a file, durably (its directory flushed: a power cut can't bring it back). */
export function removeFile(path: string): Step {
  return { name: `remove ${path}`, shell: `${command("rm", "-f", path)} && ${flush(dirOf(path))}` };
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

const stepMark = "@@pulumi-conntrack-step ";
const failMark = "@@pulumi-conntrack-failed ";
/** An optional step failed and the script went on: the user hears of it as a warning. */
const noteMark = "@@pulumi-conntrack-note ";

/**
 * The script for a list of steps. Each step announces itself on stderr, so the error for a
 * failed step is exactly what the host printed while that step ran. A host-side `timeout`
 * keeps the script from outliving the caller's deadline.
 */
export function renderScript(steps: Step[]): string {
  const lines = ["LC_ALL=C; export LC_ALL", "umask 022"];
  for (const step of steps) {
    const label = quote(step.name.replace(/[\r\n]/g, " "));
    lines.push(`printf '%s%s\\n' ${quote(stepMark)} ${label} >&2`);
    const mark = step.optional ? noteMark : failMark;
    const onFailure = `{ s=$?; printf '%s%s %s\\n' ${quote(mark)} "$s" ${label} >&2;${step.optional ? "" : " exit 1;"} }`;
    lines.push(`${step.shell} || ${onFailure}`);
  }
  lines.push("exit 0");
  return lines.join("\n") + "\n";
}

/** What a script's stderr says of each step: its name, and for a failed one its status and the host's words. */
export function stepsSaid(stderr: string): Array<{ step: string; failed?: { status: string; said: string; optional: boolean } }> {
  const steps: Array<{ step: string; failed?: { status: string; said: string; optional: boolean } }> = [];
  let message: string[] = [];
  for (const line of stderr.split("\n")) {
    if (line.startsWith(stepMark)) {
      steps.push({ step: line.slice(stepMark.length) });
      message = [];
    } else if (line.startsWith(failMark) || line.startsWith(noteMark)) {
      const optional = line.startsWith(noteMark);
      const rest = line.slice((optional ? noteMark : failMark).length);
      const current = steps[steps.length - 1];
      if (current) current.failed = { status: rest.slice(0, rest.indexOf(" ")), said: message.join("; ") || "(no message on stderr)", optional };
    } else if (line.trim() !== "") {
      message.push(line.trim());
    }
  }
  return steps;
}

/** Warnings for the optional steps that failed: the step, its status and the host's words. */
export function stepNotes(stderr: string): string[] {
  return stepsSaid(stderr).filter((s) => s.failed?.optional).map((s) => `step "${s.step}" failed (exit ${s.failed!.status}), and the change went on without it: ${s.failed!.said}`);
}

export interface StepsOutcome {
  stdout: string;
  stderr: string;
  code: number;
}

/**
 * Turns a failed script run into an error that names the host, the step and the host's own
 * message; stderr of the steps that succeeded is dropped from the message but kept in `detail`.
 */
export function checkOutcome(host: string, what: string, outcome: StepsOutcome): void {
  if (outcome.code === 0) return;
  const steps = stepsSaid(outcome.stderr);
  const failed = steps.find((s) => s.failed && !s.failed.optional);
  if (failed) throw new HostError(host, "command", `${what}: step "${failed.step}" failed (exit ${failed.failed!.status}): ${failed.failed!.said}`);
  // Stopped some other way (killed, a timeout): what the host said since the last step began.
  const last = steps[steps.length - 1];
  const since = last ? outcome.stderr.slice(outcome.stderr.lastIndexOf(`${stepMark}${last.step}\n`) + stepMark.length + last.step.length + 1) : outcome.stderr;
  const hostSaid = since.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith(noteMark)).join("; ") || "(no message on stderr)";
  const where = last ? ` during step "${last.step}"` : "";
  throw new HostError(host, "command", `${what} stopped${where} (exit ${outcome.code}): ${hostSaid}`);
}
