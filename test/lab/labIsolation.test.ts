import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runLabScript } from "./host";
import { HOSTS_SCRIPT, hostExec, startHosts, stopHosts, type LabHost } from "./netns";
import { VM_SCRIPT } from "./vm";

// Two lab directories on one machine (the demo's and the tests', or two checkouts' test runs):
// cleaning up or starting hosts in one never stops what the other started, even under the same
// host prefix and VM name. Lab A holds a namespaced host and a stand-in VM; lab B is where the
// cleanup runs. A's path ends in B's (/tmp/pcl-lab-a-…/tmp/pcl-lab-b-…), so that every path of
// A's contains B's: telling them apart takes whole paths, not substrings.
const prefix = "pcli";
const vmName = "pcli-vm";
const labB = mkdtempSync("/tmp/pcl-lab-b-");
const roots = [labB, mkdtempSync("/tmp/pcl-lab-a-")];
const labA = join(roots[1], labB);
const runDir = (lab: string) => join(lab, "vm", vmName);
let host: LabHost;
let standIn: ChildProcess;
let standInExit: Promise<unknown>;

/** A's host still answers SSH with the host key it was started with. */
const answers = async () => (await hostExec(host, "true", { timeoutMs: 30_000 })).code === 0;
const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;
const namespaces = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").map((line) => line.split(" ")[0]);

beforeAll(async () => {
  [host] = await startHosts(1, prefix, { labDir: labA });
  // A qemu as vm.sh finds one: its run dir's pid file names it, and one of its arguments is that
  // pid file (`-pidfile DIR/qemu.pid`; here argv[0]), so A's own cleanup would stop it.
  standIn = spawn("sleep", ["3600"], { argv0: join(runDir(labA), "qemu.pid"), stdio: "ignore" });
  standInExit = new Promise((resolve) => standIn.once("exit", resolve));
  mkdirSync(runDir(labA), { recursive: true });
  writeFileSync(join(runDir(labA), "qemu.pid"), `${standIn.pid}\n`);
  // B has a run dir of the same name whose pid file names A's process too (a copied lab
  // directory, or a pid reused since B's VM died).
  mkdirSync(runDir(labB), { recursive: true });
  writeFileSync(join(runDir(labB), "qemu.pid"), `${standIn.pid}\n`);
});

afterAll(async () => {
  try {
    // B too: with scripts that take A's prefix for B's, B's `up` would have started hosts there.
    for (const lab of [labB, labA]) {
      await stopHosts(prefix, { labDir: lab });
      await runLabScript(VM_SCRIPT, ["cleanup"], { labDir: lab });
    }
  } finally {
    standIn.kill("SIGKILL");
    for (const root of roots) rmSync(root, { recursive: true, force: true });
  }
});

it("hosts.sh down --all and vm.sh cleanup in lab B leave lab A's host and VM running", async () => {
  const down = await runLabScript(HOSTS_SCRIPT, ["down", "--all"], { labDir: labB });
  expect(down.code, down.stderr).toBe(0);
  const cleanup = await runLabScript(VM_SCRIPT, ["cleanup"], { labDir: labB });
  expect(cleanup.code, cleanup.stderr).toBe(0);
  expect(cleanup.stderr).toContain("pid file names no process of this VM");
  expect(await answers()).toBe(true);
  expect(alive(standIn)).toBe(true);
});

it("hosts.sh up of lab A's prefix in lab B fails naming lab A, and A's host keeps answering", async () => {
  const up = await runLabScript(HOSTS_SCRIPT, ["up", "1", prefix], { labDir: labB });
  expect(up.code).not.toBe(0);
  expect(up.stderr).toContain(`${prefix}-h1 (the lab in ${labA})`);
  expect(await answers()).toBe(true);
});

it("lab A's own cleanup stops its host and its VM", async () => {
  await stopHosts(prefix, { labDir: labA });
  const cleanup = await runLabScript(VM_SCRIPT, ["cleanup"], { labDir: labA });
  expect(cleanup.code, cleanup.stderr).toBe(0);
  const stopped = await Promise.race([standInExit.then(() => true), new Promise((r) => setTimeout(() => r(false), 15_000))]);
  expect(stopped).toBe(true);
  expect(namespaces()).not.toContain(`${prefix}-h1`);
});
