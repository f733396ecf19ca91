import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHosts, stopHosts, type LabHost } from "../lab/netns";

// What the README tells a user to do, done as a user would: `npm pack` this repository, install the
// tarball into a fresh Pulumi TypeScript project outside it, put the README's program in index.ts,
// set the config the README names and run `pulumi preview --diff` with the real CLI against one
// namespaced lab host. Nothing of the repository is on the program's PATH or module path.
const repo = resolve(import.meta.dirname, "..", "..");
const prefix = "pcpk";
let host: LabHost;
let dir: string;
let project: string;
let tarball: string;
let packed: string[];
let env: NodeJS.ProcessEnv;

function run(file: string, args: string[], options: { cwd: string; input?: string; env?: NodeJS.ProcessEnv }) {
  const r = spawnSync(file, args, { cwd: options.cwd, input: options.input, env: options.env ?? env, encoding: "utf8", timeout: 600_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "", output: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

function ok(file: string, args: string[], options: { cwd: string; input?: string }) {
  const r = run(file, args, options);
  if (r.code !== 0) throw new Error(`${file} ${args.join(" ")} → exit ${r.code}\n${r.output}`);
  return r;
}

/**
 * The README's install commands, as written: each `npm install ...` of its ```sh block that runs
 * `npm pack`, comments dropped, `&&` chains split, the tarball path put in for the placeholder.
 */
function readmeInstalls(tarballPath: string): string[][] {
  const block = [...readFileSync(join(repo, "README.md"), "utf8").matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes("npm pack"));
  if (!block) throw new Error("README.md has no ```sh block with npm pack");
  return block
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter((line) => line.startsWith("npm install"))
    .flatMap((line) => line.split("&&").map((c) => c.trim().split(/\s+/).map((w) => (w.endsWith(".tgz") ? tarballPath : w))));
}

/** The first ```ts block of the README: the program the README shows first. */
function readmeProgram(): string {
  const m = /```ts\n([\s\S]*?)```/.exec(readFileSync(join(repo, "README.md"), "utf8"));
  if (!m) throw new Error("README.md has no ```ts block");
  return m[1];
}

const which = (cmd: string) => execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim();
const inNs = (...argv: string[]) => execFileSync("ip", ["netns", "exec", host.name, ...argv], { encoding: "utf8" }).trim();

beforeAll(async () => {
  host = (await startHosts(1, prefix))[0];
  dir = mkdtempSync(join(tmpdir(), "pcpk-install-"));
  project = join(dir, "my-project");
  mkdirSync(project);
  mkdirSync(join(dir, "backend"));
  mkdirSync(join(dir, "home"));
  // A user's PATH: the pulumi CLI with its language host, node, npm and the system; the
  // dynamic-provider host script comes from the program's own @pulumi/pulumi (a CLI install ships
  // the same script beside pulumi).
  env = {
    HOME: process.env.HOME,
    NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS,
    PATH: [dirname(which("pulumi")), dirname(process.execPath), join(project, "node_modules", "@pulumi", "pulumi"), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].join(delimiter),
    PULUMI_BACKEND_URL: `file://${join(dir, "backend")}`,
    PULUMI_HOME: join(dir, "home"),
    PULUMI_CONFIG_PASSPHRASE: "",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
});

afterAll(async () => {
  try {
    if (dir) rmSync(dir, { recursive: true, force: true });
  } finally {
    await stopHosts(prefix);
  }
});

describe("installing the npm pack tarball into a fresh Pulumi project", () => {
  it("npm pack builds the package and ships only what users need, and the checkout's dist/ stays whole meanwhile", async () => {
    const t = Date.now();
    // The other lab files run programs from this checkout's dist/ while this one packs it.
    const watched = join(repo, "dist", "provider", "index.js");
    const packing = new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      const child = spawn("npm", ["pack", "--json", "--pack-destination", dir], { cwd: repo, env });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("close", (code) => done({ code, stdout, stderr }));
    });
    let missing = 0;
    let finished = false;
    void packing.then(() => (finished = true));
    while (!finished) {
      if (!existsSync(watched)) missing++;
      await new Promise((r) => setTimeout(r, 10));
    }
    const r = await packing;
    if (r.code !== 0) throw new Error(`npm pack → exit ${r.code}\n${r.stdout}${r.stderr}`);
    expect(missing, "times dist/provider/index.js was missing while npm pack ran").toBe(0);
    console.log(`[figure] npm pack (prepare builds dist/): ${Date.now() - t} ms`);
    const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf("["))) as Array<{ filename: string; size: number; files: Array<{ path: string }> }>;
    tarball = join(dir, info.filename);
    packed = info.files.map((f) => f.path).sort();
    console.log(`[figure] tarball: ${info.size} bytes, ${packed.length} files`);
    expect(packed).toContain("package.json");
    expect(packed).toContain("README.md");
    expect(packed).toContain("dist/sdk/index.js");
    expect(packed).toContain("dist/sdk/index.d.ts");
    expect(packed).toContain("dist/provider/index.js");
    expect(packed).toContain("LICENSE");
    // The provider plugin's entry script ships too, for `node_modules/.bin` on PATH (docs/api.md).
    expect(packed).toContain("bin/pulumi-resource-conntrack");
    const unwanted = packed.filter((p) => !/^(package\.json|README\.md|LICENSE|bin\/pulumi-resource-conntrack|dist\/(sdk|provider)\/.+\.(js|d\.ts))$/.test(p));
    expect(unwanted).toEqual([]);
  });

  it("installs into a project outside the repository", () => {
    expect(project.startsWith(repo)).toBe(false);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "my-project", private: true, main: "index.ts" }, null, 2));
    writeFileSync(join(project, "Pulumi.yaml"), "name: my-project\nruntime: nodejs\ndescription: the README's program\n");
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { strict: true, outDir: "bin", target: "es2020", module: "commonjs", moduleResolution: "node", sourceMap: true, skipLibCheck: true }, files: ["index.ts"] }, null, 2),
    );
    writeFileSync(join(project, "index.ts"), readmeProgram());
    const commands = readmeInstalls(tarball);
    expect(commands.map((c) => c.slice(0, 3).join(" "))).toEqual(["npm install " + tarball, "npm install @pulumi/pulumi", "npm install --save-dev"]);
    const t = Date.now();
    for (const [file, ...args] of commands) ok(file, args, { cwd: project });
    console.log(`[figure] npm install of the tarball and its dependencies: ${Date.now() - t} ms`);
    const installed = join(project, "node_modules", "pulumi-conntrack");
    expect(JSON.parse(readFileSync(join(installed, "package.json"), "utf8")).name).toBe("pulumi-conntrack");
    // The newest @pulumi/pulumi the registry serves, once: the package's own dependency dedupes
    // with it (a second copy would be a second SDK runtime that the engine never started).
    const newest = ok("npm", ["view", "@pulumi/pulumi", "version"], { cwd: project }).stdout.trim();
    const copies = run("find", ["node_modules", "-path", "*/@pulumi/pulumi/package.json"], { cwd: project }).stdout.trim().split("\n");
    expect(copies).toEqual(["node_modules/@pulumi/pulumi/package.json"]);
    expect(JSON.parse(readFileSync(join(project, copies[0]), "utf8")).version).toBe(newest);
    // A copy, not a link to the repository, with the compiled provider the state's stub requires.
    expect(run("node", ["-p", "require('fs').realpathSync(require.resolve('pulumi-conntrack/provider'))"], { cwd: project }).stdout.trim()).toBe(join(installed, "dist", "provider", "index.js"));
  });

  it("pulumi preview --diff of the README's program shows the planned changes for the host", () => {
    ok("pulumi", ["stack", "init", "dev", "--non-interactive"], { cwd: project });
    ok("pulumi", ["config", "set", "host", host.host], { cwd: project });
    ok("pulumi", ["config", "set", "port", String(host.port)], { cwd: project });
    ok("pulumi", ["config", "set", "hostKey", host.hostKey], { cwd: project });
    ok("pulumi", ["config", "set", "--secret", "privateKey"], { cwd: project, input: host.privateKey });
    const est = inNs("sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_established");
    const udp = inNs("sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout");
    const t = Date.now();
    const r = ok("pulumi", ["preview", "--diff", "--non-interactive", "--color", "never"], { cwd: project });
    console.log(`[figure] pulumi preview of the README's program (TypeScript): ${Date.now() - t} ms`);
    expect(r.stdout).toMatch(/\+ pulumi-nodejs:dynamic\/pulumi-conntrack:ConntrackLimits: \(create\)/);
    expect(r.stdout).toMatch(new RegExp(`host\\s*: "${host.host.replace(/\./g, "\\.")}"`));
    expect(r.stdout).toMatch(new RegExp(`net\\.netfilter\\.nf_conntrack_tcp_timeout_established\\s*: "${est} → 86400"`));
    expect(r.stdout).toMatch(new RegExp(`net\\.netfilter\\.nf_conntrack_udp_timeout\\s*: "${udp} → 20"`));
    expect(r.stdout).toMatch(/\/etc\/sysctl\.d\/90-pulumi-conntrack\.conf\s*: "write"/);
    expect(r.stdout).not.toContain(host.privateKey.split("\n")[1]);
    // Preview changes nothing on the host.
    expect(inNs("sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_established")).toBe(est);
  });

  it("the same program with max set is refused for a network namespace, naming the host", () => {
    ok("pulumi", ["config", "set", "max", "262144"], { cwd: project });
    const r = run("pulumi", ["preview", "--diff", "--non-interactive", "--color", "never"], { cwd: project });
    expect(r.code).not.toBe(0);
    expect(r.output).toContain(`root@${host.host}:${host.port}: max are global to the kernel but this host is a network namespace`);
  });
});
