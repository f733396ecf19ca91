import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startHosts, stopHosts, type LabHost } from "../lab/netns";
import { disposeStacks, type TestStack } from "./harness";

// The provider plugin as a user gets it: the tarball scripts/plugin-tarball.mjs builds, installed
// with `pulumi plugin install resource conntrack <version> --file <tarball>` (README, docs/api.md),
// and the real Pulumi YAML language host, built by scripts/pulumi-yaml.sh, on PATH.
const repo = resolve(import.meta.dirname, "..", "..");
export const pluginVersion = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string }).version;

function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((done, fail) => {
    execFile(file, args, { cwd: repo, env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${file} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
      else done(stdout);
    });
  });
}

const lastLine = (out: string) => out.trim().split("\n").pop() ?? "";

let tarball: Promise<string> | undefined;

/** Builds the plugin tarball once per test run (from this checkout, compiled afresh). */
export function pluginTarball(outDir: string): Promise<string> {
  tarball ??= run("node", [join(repo, "scripts", "plugin-tarball.mjs"), outDir]).then(lastLine);
  return tarball;
}

/** Puts the real pulumi-language-yaml on PATH for the CLI this process starts (built on first use, cached). */
export async function useYamlLanguageHost(): Promise<void> {
  const dir = lastLine(await run("bash", [join(repo, "scripts", "pulumi-yaml.sh")]));
  if (!(process.env.PATH ?? "").split(":").includes(dir)) process.env.PATH = `${dir}:${process.env.PATH}`;
}

/** `pulumi plugin install resource conntrack <version> --file <tarball>` into the stack's PULUMI_HOME, as documented. */
export async function installPlugin(stack: TestStack, file: string): Promise<string> {
  const env = { ...process.env, PULUMI_HOME: join(stack.dir, "home"), PULUMI_SKIP_UPDATE_CHECK: "true" };
  return run("pulumi", ["plugin", "install", "resource", "conntrack", pluginVersion, "--file", file, "--non-interactive"], env);
}

/** `pulumi schema check conntrack`: the engine starts the installed plugin and checks the schema it serves. */
export async function checkSchema(stack: TestStack): Promise<string> {
  const env = { ...process.env, PULUMI_HOME: join(stack.dir, "home"), PULUMI_SKIP_UPDATE_CHECK: "true" };
  return run("pulumi", ["schema", "check", "conntrack"], env);
}

/** What a test file of the plugin needs: namespaced hosts, the tarball, the YAML host on PATH. */
export interface PluginLab {
  hosts: LabHost[];
  tarball: string;
  /** Destroys the stacks, takes the hosts down and removes the tarball. */
  end(stacks: TestStack[]): Promise<void>;
}

export async function startPluginLab(count: number, prefix: string): Promise<PluginLab> {
  const scratch = mkdtempSync(join(tmpdir(), `pct-${prefix}-`));
  const [hosts, file] = await Promise.all([startHosts(count, prefix), pluginTarball(scratch), useYamlLanguageHost()]);
  return {
    hosts,
    tarball: file,
    async end(stacks) {
      try {
        await disposeStacks(stacks, () => stopHosts(prefix));
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    },
  };
}
