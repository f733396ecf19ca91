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
 * Writes a whole file atomically: a temp file in the same directory, then a rename. A file that
 * exists keeps its mode (RHEL's /etc/sysconfig/iptables is 0600); a new one gets `mode`.
 */
export function writeFile(path: string, content: string, mode = "0644"): Step[] {
  const tmp = `${path}.pulumi-conntrack.tmp`;
  const encoded = Buffer.from(content, "utf8").toString("base64");
  return [
    run(`create ${dirOf(path)}`, "mkdir", "-p", dirOf(path)),
    { name: `write ${path}`, shell: `printf %s ${quote(encoded)} | base64 -d > ${quote(tmp)}` },
    { name: `chmod ${path}`, shell: `{ [ -e ${quote(path)} ] && chmod --reference=${quote(path)} ${quote(tmp)}; } || ${command("chmod", mode, tmp)}` },
    run(`write ${path}`, "mv", "-f", tmp, path),
  ];
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

export function removeFile(path: string): Step {
  return run(`remove ${path}`, "rm", "-f", path);
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

const stepMark = "@@pulumi-conntrack-step ";
const failMark = "@@pulumi-conntrack-failed ";

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
    const onFailure = step.optional ? `printf '%s\\n' ${quote(`(${step.name}: not essential, continuing)`)} >&2` : `{ s=$?; printf '%s%s %s\\n' ${quote(failMark)} "$s" ${label} >&2; exit 1; }`;
    lines.push(`${step.shell} || ${onFailure}`);
  }
  lines.push("exit 0");
  return lines.join("\n") + "\n";
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
  const lines = outcome.stderr.split("\n");
  let step: string | undefined;
  let failed: { step: string; status: string } | undefined;
  let message: string[] = [];
  for (const line of lines) {
    if (line.startsWith(stepMark)) {
      step = line.slice(stepMark.length);
      message = [];
    } else if (line.startsWith(failMark)) {
      const rest = line.slice(failMark.length);
      const space = rest.indexOf(" ");
      failed = { status: rest.slice(0, space), step: rest.slice(space + 1) };
    } else if (line.trim() !== "") {
      message.push(line.trim());
    }
  }
  const hostSaid = message.join("; ") || "(no message on stderr)";
  if (failed) {
    throw new HostError(host, "command", `${what}: step "${failed.step}" failed (exit ${failed.status}): ${hostSaid}`);
  }
  const where = step ? ` during step "${step}"` : "";
  throw new HostError(host, "command", `${what} stopped${where} (exit ${outcome.code}): ${hostSaid}`);
}
