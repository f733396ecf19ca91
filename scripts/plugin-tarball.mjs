#!/usr/bin/env node
// scripts/plugin-tarball.mjs: builds the provider plugin's tarball, the file of
//
//   pulumi plugin install resource conntrack <version> --file <tarball>
//
// and prints its path as the last line of stdout. Usage (after npm ci, with Node 22+ on PATH):
//
//   node scripts/plugin-tarball.mjs [out-dir]     (default: dist/plugin)
//
// The tarball holds, at its root, `pulumi-resource-conntrack` (bin/'s sh script, which runs the
// compiled entry beside it with the `node` on PATH: Node.js 22 or newer where pulumi runs),
// dist/ compiled from this checkout, package.json, LICENSE, and node_modules with what the plugin
// loads: the package's dependencies with theirs, except @pulumi/pulumi's own, since the plugin
// uses only the generated gRPC stubs in @pulumi/pulumi/proto, which need @grpc/grpc-js and
// google-protobuf (dependencies of this package). Nothing is fetched: node_modules is copied
// from this checkout. Before packing, the staged plugin is started and must print its port.
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { arch, tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "..");
const outDir = resolve(process.argv[2] ?? join(repo, "dist", "plugin"));
const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8"));
/** Packages whose dependencies the plugin never loads (see above). */
const notDescended = new Set(["@pulumi/pulumi"]);
const log = (message) => process.stderr.write(`plugin-tarball: ${message}\n`);

/** Where Node finds `name` from `fromDir`: the nearest node_modules/<name> up the tree, within the checkout. */
function installed(name, fromDir) {
  for (let dir = fromDir; dir.startsWith(repo); dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dir === repo) break;
  }
  return undefined;
}

/** Every package directory the plugin's dependencies need, as found in this checkout. */
function runtimePackages() {
  const found = new Set();
  const visit = (dir, deps, optional) => {
    for (const name of Object.keys(deps)) {
      const at = installed(name, dir);
      if (!at) {
        if (optional.has(name)) continue;
        throw new Error(`${name} (needed by ${relative(repo, dir) || "pulumi-conntrack"}) is not installed: run npm ci`);
      }
      if (found.has(at)) continue;
      found.add(at);
      if (notDescended.has(name)) continue;
      const own = JSON.parse(readFileSync(join(at, "package.json"), "utf8"));
      const optionalDeps = own.optionalDependencies ?? {};
      visit(at, { ...own.dependencies, ...optionalDeps }, new Set(Object.keys(optionalDeps)));
    }
  };
  visit(repo, pkg.dependencies, new Set());
  return [...found].sort();
}

/** Starts the staged plugin as the CLI would (no engine) and waits for the port on its first line. */
function startsAndPrintsPort(executable) {
  return new Promise((done, fail) => {
    const child = spawn(executable, [], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      if (/^\d+\n/.test(out)) child.kill("SIGINT");
    });
    child.stderr.on("data", (chunk) => (err += chunk));
    child.on("exit", () => {
      clearTimeout(timer);
      if (/^\d+\n/.test(out)) done();
      else fail(new Error(`the staged plugin did not print its port: ${err.trim() || out.trim() || "(no output)"}`));
    });
  });
}

const stage = mkdtempSync(join(tmpdir(), "pulumi-resource-conntrack-"));
try {
  log(`compiling into ${stage}/dist`);
  execFileSync(join(repo, "node_modules", ".bin", "tsc"), ["-p", join(repo, "tsconfig.build.json"), "--outDir", join(stage, "dist")], { stdio: "inherit" });
  copyFileSync(join(repo, "bin", "pulumi-resource-conntrack"), join(stage, "pulumi-resource-conntrack"));
  chmodSync(join(stage, "pulumi-resource-conntrack"), 0o755);
  for (const file of ["package.json", "LICENSE"]) copyFileSync(join(repo, file), join(stage, file));
  const packages = runtimePackages();
  for (const dir of packages) cpSync(dir, join(stage, relative(repo, dir)), { recursive: true, dereference: true });
  log(`copied ${packages.length} packages: ${packages.map((d) => relative(join(repo, "node_modules"), d)).join(" ")}`);
  await startsAndPrintsPort(join(stage, "pulumi-resource-conntrack"));
  mkdirSync(outDir, { recursive: true });
  const tarball = join(outDir, `pulumi-resource-conntrack-v${pkg.version}-linux-${arch() === "x64" ? "amd64" : arch()}.tar.gz`);
  execFileSync("tar", ["-czf", tarball, "--owner=0", "--group=0", "-C", stage, "."]);
  log(`wrote ${tarball}; install it with: pulumi plugin install resource conntrack ${pkg.version} --file ${tarball}`);
  process.stdout.write(`${tarball}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
