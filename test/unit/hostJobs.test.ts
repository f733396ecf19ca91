import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { collectOrphansScript, orphanReports } from "../../provider/engine/hostJobs";

const d = mkdtempSync(join(tmpdir(), "pct-jobs-"));
afterAll(() => rmSync(d, { recursive: true, force: true }));

// The records that jobs cut from their connection leave behind, read by the next transaction's
// lock holder with the host's own sh, flock and grep (here on this machine).
describe("records of jobs nobody collected", () => {
  it("are reported once each, succeeded, failed with the host's words, or killed, and removed", () => {
    const job = (id: string, files: Record<string, string>) => {
      mkdirSync(join(d, "pulumi-conntrack-jobs", id), { recursive: true });
      for (const [name, text] of Object.entries(files)) writeFileSync(join(d, "pulumi-conntrack-jobs", id, name), text);
    };
    job("a", { what: "apply ConntrackLimits\n", exit: "0\n", err: "@@pulumi-conntrack-step write /etc/sysctl.d/x\n" });
    job("b", { what: "apply NotrackRule\n", exit: "1\n", err: "@@pulumi-conntrack-step restore\niptables-restore: line 3 failed\n@@pulumi-conntrack-failed 1 restore\n" });
    job("c", { what: "prepare KernelModuleSet\n", err: "" });
    const said = execFileSync("sh", ["-c", `d=${d}\n${collectOrphansScript(5)}`], { encoding: "utf8" });
    expect(orphanReports(said).sort()).toEqual([
      'an earlier "apply ConntrackLimits" lost its SSH connection; it went on on the host by itself and succeeded; this run read the host as that left it',
      'an earlier "apply NotrackRule" lost its SSH connection; it went on on the host by itself and failed (exit 1): iptables-restore: line 3 failed; this run read the host as that left it',
      'an earlier "prepare KernelModuleSet" lost its SSH connection; it went on on the host by itself but was killed before it finished (a reboot or a kill); this run read the host as that left it',
    ]);
    expect(readdirSync(join(d, "pulumi-conntrack-jobs"))).toEqual([]);
    expect(orphanReports(execFileSync("sh", ["-c", `d=${d}\n${collectOrphansScript(5)}`], { encoding: "utf8" }))).toEqual([]);
  });
});
