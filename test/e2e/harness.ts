import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalWorkspace, type ConfigMap, type Stack } from "@pulumi/pulumi/automation";
import { expect } from "vitest";
import { quote } from "../../provider/transport/shell";

const repo = resolve(import.meta.dirname, "..", "..");

export interface TestStack {
  stack: Stack;
  dir: string;
  /** Everything one `pulumi` call printed, for asserting on what a user would see. */
  preview(): Promise<{ stdout: string; changes: Record<string, number> }>;
  up(): Promise<{ stdout: string; changes: Record<string, number>; outputs: Record<string, unknown> }>;
  /** Refresh, with the outputs that changed on the host, per resource name. */
  refresh(): Promise<{ stdout: string; drift: Record<string, string[]> }>;
  /** Every file the file backend wrote (state, backups, history), as stored on disk. */
  backendFiles(): string[];
  destroy(): Promise<{ stdout: string }>;
  state(): Promise<any>;
  setConfig(config: ConfigMap): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * A program from test/e2e/programs in a throwaway directory with its own file backend and
 * PULUMI_HOME, driven through the real `pulumi` CLI and Node.js language host on PATH.
 * `options.from`: a program directory to copy instead (an example).
 */
export async function testStack(program: string, config: ConfigMap, options: { nodeModules?: string; stackName?: string; from?: string } = {}): Promise<TestStack> {
  const dir = mkdtempSync(join(tmpdir(), `pct-e2e-${program}-`));
  const work = join(dir, "program");
  cpSync(options.from ?? join(repo, "test", "e2e", "programs", program), work, { recursive: true });
  // The program resolves pulumi-conntrack and @pulumi/pulumi from the repo, as an installed package would.
  symlinkSync(options.nodeModules ?? join(repo, "node_modules"), join(work, "node_modules"));
  const envVars = {
    PULUMI_BACKEND_URL: `file://${join(dir, "backend")}`,
    PULUMI_CONFIG_PASSPHRASE: "",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_HOME: join(dir, "home"),
  };
  mkdirSync(join(dir, "backend"));
  mkdirSync(join(dir, "home"));
  const stack = await LocalWorkspace.createOrSelectStack({ stackName: options.stackName ?? "test", workDir: work }, { envVars, pulumiHome: envVars.PULUMI_HOME });
  await stack.setAllConfig(config);
  const changes = (summary: Record<string, number> | undefined) => summary ?? {};
  return {
    stack,
    dir,
    async preview() {
      const r = await stack.preview({ diff: true, color: "never" });
      return { stdout: r.stdout, changes: changes(r.changeSummary as Record<string, number>) };
    },
    async up() {
      const r = await stack.up({ diff: true, color: "never" });
      const outputs = Object.fromEntries(Object.entries(r.outputs).map(([k, v]) => [k, v.value]));
      return { stdout: r.stdout, changes: changes(r.summary.resourceChanges as Record<string, number>), outputs };
    },
    async refresh() {
      // The engine reports "update" for every refreshed custom resource; drift is what changed.
      const drift: Record<string, string[]> = {};
      let events = 0;
      const r = await stack.refresh({
        color: "never",
        onEvent: (e) => {
          events++;
          const m = e.resOutputsEvent?.metadata;
          if (!m?.old || !m.new) return;
          const before = m.old.outputs ?? {};
          const after = m.new.outputs ?? {};
          const changed = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
          if (changed.length > 0) drift[m.urn.split("::").pop()!] = changed.sort();
        },
      });
      if (events === 0) throw new Error("pulumi refresh delivered no engine events");
      return { stdout: r.stdout, drift };
    },
    async destroy() {
      const r = await stack.destroy({ color: "never" });
      return { stdout: r.stdout };
    },
    backendFiles() {
      const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [readFileSync(join(d, e.name), "utf8")]));
      return walk(join(dir, "backend"));
    },
    async state() {
      return (await stack.exportStack()).deployment;
    },
    async setConfig(more) {
      await stack.setAllConfig(more);
    },
    async dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One resource of the "declared" program: a type of the package, a name and its arguments. */
export interface Declared {
  type: string;
  name: string;
  args: object;
}

/** A stack of the "declared" program: these resources, on the host `connection` reaches (kept secret in config). */
export function declaredStack(stackName: string, connection: object, declared: Declared[]): Promise<TestStack> {
  return testStack("declared", { connection: { value: JSON.stringify(connection), secret: true }, declared: { value: JSON.stringify(declared) } }, { stackName });
}

/** A "declared" stack on lab host `h` as root by its key, added to `stacks` (the file's teardown destroys them). */
export async function declaredStackOn(h: { host: string; port: number; user: string; privateKey: string; hostKey: string }, stacks: TestStack[], stackName: string, declared: Declared[]): Promise<TestStack> {
  const s = await declaredStack(stackName, { host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey }, declared);
  stacks.push(s);
  return s;
}

/** `pulumi preview --expect-no-changes --diff` passes; else the test fails with what the preview would change `after` what. */
export async function expectNoChanges(s: TestStack, after: string): Promise<void> {
  const { code, output } = await pulumiCli(s, ["preview", "--expect-no-changes", "--diff"]);
  expect(code, `preview after ${after}: ${output}`).toBe(0);
}

/**
 * Runs the `pulumi` CLI itself in the stack's program directory, with the stack's backend and
 * PULUMI_HOME, exactly as a user types it (for documented commands). Never rejects.
 */
export function pulumiCli(s: TestStack, args: string[]): Promise<{ code: number; output: string }> {
  const env = { ...process.env, PULUMI_BACKEND_URL: `file://${join(s.dir, "backend")}`, PULUMI_CONFIG_PASSPHRASE: "", PULUMI_SKIP_UPDATE_CHECK: "true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true", PULUMI_HOME: join(s.dir, "home") };
  return new Promise((resolve) => {
    execFile("pulumi", [...args, "--stack", s.stack.name, "--non-interactive", "--color", "never"], { cwd: join(s.dir, "program"), env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` });
    });
  });
}

/** The shell line that runs `script` in the background on a host, detached from the SSH session. */
export const inBackground = (script: string) => `setsid -f sh -c ${quote(script)} </dev/null >/dev/null 2>&1`;

/**
 * iptables-save's text as rulesets are compared: without comments and counters, and without the
 * tables that hold no rule and only ACCEPT policies. iptables can't remove a table once a rule
 * made it exist (iptables-nft has no command for it, iptables-legacy keeps its module loaded), and
 * such a table changes nothing.
 */
export function comparableRuleset(save: string): string {
  const text = save.split("\n").filter((l) => !l.startsWith("#")).map((l) => l.replace(/ \[\d+:\d+\]$/, "")).join("\n");
  return text.split(/(?=^\*)/m).filter((t) => t.split("\n").some((l) => l.startsWith("-A ") || /^:\S+ (DROP|REJECT)/.test(l))).join("").trim();
}

/**
 * The end of a test file: destroys each stack (a failed destroy is left for the host's teardown
 * to sweep away), removes its directory, and then, whatever happened, takes the hosts down.
 */
export async function disposeStacks(stacks: Array<TestStack | undefined>, takeDownHosts: () => Promise<void>): Promise<void> {
  try {
    for (const s of stacks) {
      await s?.destroy().catch(() => undefined);
      await s?.dispose();
    }
  } finally {
    await takeDownHosts();
  }
}
