// npm's `prepare` step: builds what the package ships (dist/sdk and dist/provider, no source maps)
// from a clean slate. npm runs it on `npm ci`/`npm install` in this repository, before `npm pack`
// and `npm publish`, and when a program installs the package from git (after installing our
// devDependencies). `npm install <directory>` only links the directory and runs this there
// without installing anything, hence the check below.
//
// The build goes to a staging directory first and each file then replaces its old copy by a
// rename, stale files going last: a program running from this checkout meanwhile (a test's
// dynamic provider loading dist/provider while another test runs `npm pack`) never finds a file
// missing or half written.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let tsc;
try {
  tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc");
} catch {
  console.error(
    `pulumi-conntrack: can't build ${root}: TypeScript (a devDependency) isn't installed there.\n` +
      `Installing a directory links it without installing its dependencies: run \`npm ci\` in ${root} first,\n` +
      "or install a tarball made there by `npm pack`, or the git URL (npm then installs what the build needs).",
  );
  process.exit(1);
}

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir) {
  let found = [];
  try {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) found = found.concat(filesUnder(path).map((f) => join(entry, f)));
      else found.push(entry);
    }
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
  return found;
}

mkdirSync(join(root, "dist"), { recursive: true });
const staging = mkdtempSync(join(root, "dist", ".prepare-"));
try {
  const r = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", staging], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
  for (const part of ["sdk", "provider"]) {
    const built = new Set(filesUnder(join(staging, part)));
    for (const file of built) {
      mkdirSync(dirname(join(root, "dist", part, file)), { recursive: true });
      renameSync(join(staging, part, file), join(root, "dist", part, file));
    }
    for (const file of filesUnder(join(root, "dist", part))) {
      if (!built.has(file)) rmSync(join(root, "dist", part, file));
    }
  }
} finally {
  rmSync(staging, { recursive: true, force: true });
}
