// npm's `prepare` step: builds what the package ships (dist/sdk and dist/provider, no source maps)
// from a clean slate. npm runs it on `npm ci`/`npm install` in this repository, before `npm pack`
// and `npm publish`, and when a program installs the package from git (after installing our
// devDependencies). `npm install <directory>` only links the directory and runs this there
// without installing anything, hence the check below.
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
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
for (const d of ["dist/sdk", "dist/provider"]) rmSync(join(root, d), { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
process.exit(r.status ?? 1);
