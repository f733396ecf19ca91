// Runs one pulumi operation of a test stack within a bound, whatever the provider does: past the
// bound, the processes of that run (found by the run's private PULUMI_HOME) are killed.
import { readdirSync, readFileSync } from "node:fs";
import type { EngineEvent, Stack } from "@pulumi/pulumi/automation";

export interface Outcome {
  ok: boolean;
  ms: number;
  /** Error diagnostics per resource name ("" for ones not tied to a resource). */
  errors: Map<string, string[]>;
  changes: Record<string, number>;
  /** What the CLI printed, for the failure message of a test. */
  output: string;
}

/** Processes whose environment carries this PULUMI_HOME: the CLI and the plugins it started. */
function processesWithHome(home: string): number[] {
  const marker = `PULUMI_HOME=${home}\0`;
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, "latin1").includes(marker)) found.push(Number(entry));
    } catch {
      /* gone, or not ours to read */
    }
  }
  return found;
}

/** Ends what this test's pulumi run started, found by its private PULUMI_HOME. */
export function killPulumiRun(home: string): number {
  const pids = processesWithHome(home);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  return pids.length;
}

/**
 * Runs `pulumi preview`, `up` or `destroy` and never waits past `boundMs`: past it, the pulumi
 * processes of this run are killed and the outcome says so. Failed operations resolve too.
 */
export async function boundedRun(stack: Stack, home: string, kind: "preview" | "up" | "destroy", boundMs: number, options: { continueOnError?: boolean } = {}): Promise<Outcome & { overran: boolean }> {
  const errors = new Map<string, string[]>();
  const onEvent = (e: EngineEvent) => {
    const d = e.diagnosticEvent;
    if (!d || d.severity !== "error") return;
    const name = d.urn ? d.urn.split("::").pop()! : "";
    errors.set(name, [...(errors.get(name) ?? []), d.message.trim()]);
  };
  let overran = false;
  const watchdog = setTimeout(() => {
    overran = true;
    killPulumiRun(home);
  }, boundMs);
  const started = Date.now();
  try {
    const opts = { color: "never" as const, onEvent };
    let output: string;
    let changes: Record<string, number> | undefined;
    if (kind === "preview") {
      const r = await stack.preview(opts);
      [output, changes] = [r.stdout, r.changeSummary as Record<string, number>];
    } else {
      const r = kind === "up" ? await stack.up({ ...opts, ...options }) : await stack.destroy({ ...opts, ...options });
      [output, changes] = [r.stdout, r.summary.resourceChanges as Record<string, number>];
    }
    return { ok: true, ms: Date.now() - started, errors, changes: changes ?? {}, output, overran };
  } catch (err) {
    return { ok: false, ms: Date.now() - started, errors, changes: {}, output: String((err as Error).message), overran };
  } finally {
    clearTimeout(watchdog);
  }
}
