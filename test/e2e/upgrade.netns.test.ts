import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { testStack, type TestStack } from "./harness";

// Stacks written by pulumi-conntrack 0.1 (commit 53e71ef, before the ledger) keep working when
// the installed package is upgraded: a no-op preview, a clean destroy, and a migration on update.
const oldCommit = "53e71ef";
const repo = resolve(import.meta.dirname, "..", "..");
const prefix = "pcup";
let hosts: LabHost[];
let work: string;
let modules: string;
const stacks: TestStack[] = [];

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const timeouts = (h: LabHost) => inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_established", "net.netfilter.nf_conntrack_udp_timeout").split("\n");
const ours = async (h: LabHost) => (await hostExec(h, "ls /etc/sysctl.d /etc/modprobe.d /etc/udev/rules.d /var/lib | grep pulumi-conntrack | tr '\\n' ' '")).stdout.trim();

/** Points the programs' node_modules/pulumi-conntrack at a build of the package. */
function install(packageDir: string): void {
  rmSync(join(modules, "pulumi-conntrack"), { force: true });
  symlinkSync(packageDir, join(modules, "pulumi-conntrack"));
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "pct-upgrade-"));
  // The 0.1 package, built from its commit with today's toolchain.
  const old = join(work, "pulumi-conntrack-0.1");
  mkdirSync(old);
  execFileSync("sh", ["-c", `git -C "$1" archive ${oldCommit} | tar -x -C "$2"`, "sh", repo, old]);
  symlinkSync(join(repo, "node_modules"), join(old, "node_modules"));
  execFileSync(join(repo, "node_modules", ".bin", "tsc"), ["-p", join(old, "tsconfig.json")], { stdio: "inherit" });
  // The programs' node_modules: everything from the repo but pulumi-conntrack, which we choose.
  modules = join(work, "node_modules");
  mkdirSync(modules);
  for (const entry of readdirSync(join(repo, "node_modules"))) {
    if (entry !== "pulumi-conntrack") symlinkSync(join(repo, "node_modules", entry), join(modules, entry));
  }
  install(old);
  hosts = await startHosts(2, prefix);
});

afterAll(async () => {
  try {
    install(repo);
    for (const s of stacks) {
      await s.destroy().catch(() => undefined);
      await s.dispose();
    }
  } finally {
    await stopHosts(prefix);
    rmSync(work, { recursive: true, force: true });
  }
});

describe(`a stack written by pulumi-conntrack 0.1 (${oldCommit})`, () => {
  it("previews as a no-op with the new package, destroys cleanly, and migrates on update", async () => {
    const settings = { timeouts: { tcpEstablished: 3600, udp: 45 } };
    for (const h of hosts) {
      const s = await testStack("conntrack-limits", {
        hosts: { value: JSON.stringify([{ name: h.name, connection: { host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey } }]), secret: true },
        settings: { value: JSON.stringify(settings) },
      }, { nodeModules: modules });
      stacks.push(s);
      await s.up();
      expect(timeouts(h)).toEqual(["3600", "45"]);
      expect(await ours(h)).toMatch(/^90-pulumi-conntrack-limits-pcup-h\d-[0-9a-f]{8}\.conf 90-pulumi-conntrack-limits-pcup-h\d-[0-9a-f]{8}\.rules$/);
    }
    install(repo);
    const [kept, migrated] = stacks;
    expect((await kept.preview()).changes).toEqual({ same: 2 });
    expect((await migrated.preview()).changes).toEqual({ same: 2 });

    // Destroyed as 0.1 left it: the originals come back and its files go.
    await kept.destroy();
    expect(timeouts(hosts[0])).toEqual(["432000", "30"]);
    expect(await ours(hosts[0])).toBe("");

    // Updated: it moves into the ledger, keeping the originals 0.1 recorded.
    await migrated.setConfig({ settings: { value: JSON.stringify({ timeouts: { tcpEstablished: 7200 } }) } });
    const { changes } = await migrated.up();
    expect(changes).toMatchObject({ update: 1 });
    expect(timeouts(hosts[1])).toEqual(["7200", "30"]);
    expect(await ours(hosts[1])).toBe("90-pulumi-conntrack.conf 90-pulumi-conntrack.rules pulumi-conntrack");
    expect((await migrated.preview()).changes).toEqual({ same: 2 });
    await migrated.destroy();
    expect(timeouts(hosts[1])).toEqual(["432000", "30"]);
    expect(await ours(hosts[1])).toBe("");
  });
});
