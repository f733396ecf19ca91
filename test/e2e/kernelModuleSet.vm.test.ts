import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabHost } from "../lab/host";
import { bootVm, destroyVm, rebootVm, vmExec, vmSh } from "../lab/vm";
import { testStack, type TestStack } from "./harness";

// The seed's fourth remedy on a real kernel (Debian 12, 6.1, iptables-nft), through the real
// pulumi CLI: the seed's module list, refused while a -m state rule uses conntrack, applied once
// the rule is gone; then every way a module comes back is tried, before and after a reboot.
const vmName = "kms-e2e";
const seedList = ["xt_NOTRACK", "nf_conntrack_netbios_ns", "nf_conntrack_ipv4", "xt_state", "nf_conntrack"];
const stateRule = "-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT";
const blockFile = "/etc/modprobe.d/00-pulumi-conntrack-modules.conf";
/** Everything conntrack-related the kernel may have loaded; what we compare before and after. */
const watched = ["nf_conntrack", "nf_conntrack_broadcast", "nf_conntrack_netbios_ns", "nf_conntrack_ftp", "nf_conntrack_netlink", "xt_CT", "xt_conntrack", "xt_state"];
let vm: LabHost;
let stack: TestStack;
/** A second stack that keeps xt_multiport loaded (state "present"), through the same reboot. */
let present: TestStack;
const multiportLoaded = async () => (await sh("cut -d' ' -f1 /proc/modules")).split("\n").includes("xt_multiport");
const loadFile = "/etc/modules-load.d/pulumi-conntrack.conf";
let connection: Record<string, unknown>;

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);
/** The watched modules in /proc/modules, sorted. */
const loadedNow = async () => (await sh("cut -d' ' -f1 /proc/modules")).split("\n").filter((m) => watched.includes(m)).sort();
/** A command expected to fail: its exit code and what it printed on stderr. */
const attempt = async (command: string) => {
  const r = await vmExec(vmName, command);
  return { code: r.code, stderr: r.stderr.trim() };
};
/** A pulumi operation expected to be refused: everything the CLI printed. */
async function refused(op: Promise<unknown>): Promise<string> {
  try {
    await op;
  } catch (err) {
    return String((err as Error).message);
  }
  throw new Error("the operation was expected to be refused, but it succeeded");
}

/** Every way back in: by name, as a dependency, by alias, for a rule (state and NOTRACK). */
async function everyLoadFails(): Promise<void> {
  const explicit = await attempt("modprobe nf_conntrack");
  expect(explicit.code).toBe(1);
  expect(explicit.stderr).toContain("Error running install command '/bin/false' for module nf_conntrack");
  // nf_conntrack_ftp isn't listed: it needs nf_conntrack, whose install command fails.
  const dependency = await attempt("modprobe nf_conntrack_ftp");
  expect(dependency.code).toBe(1);
  expect(dependency.stderr).toContain("for module nf_conntrack: retcode 1");
  // By alias, kmod skips blacklisted modules quietly (exit 0): nothing loads.
  expect((await attempt("modprobe ip_conntrack")).code).toBe(0);
  expect((await attempt("modprobe ipt_NOTRACK")).code).toBe(0);
  const rule = await attempt("iptables -A INPUT -m state --state NEW -j ACCEPT");
  expect(rule.code).toBe(4);
  expect(rule.stderr).toContain("RULE_APPEND failed");
  expect((await attempt("iptables -t raw -A PREROUTING -p udp --dport 53 -j NOTRACK")).code).toBe(4);
  expect(await loadedNow()).toEqual([]);
  expect(await sh("iptables-save | grep -c -- '^-A' || true")).toBe("0");
}

beforeAll(async () => {
  const t = Date.now();
  vm = await bootVm(vmName);
  console.log(`[figure] KernelModuleSet VM boot: ${Date.now() - t} ms`);
  // The seed's host: a stateful accept, and a conntrack helper loaded.
  await sh(`iptables ${stateRule} && modprobe nf_conntrack_netbios_ns`);
  connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("kernel-module-set", {
    hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true },
    modules: { value: JSON.stringify({ modules: seedList, force: true }) },
  });
});

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
    await present?.destroy().catch(() => undefined);
    await present?.dispose();
  } finally {
    await destroyVm(vmName);
  }
});

describe("KernelModuleSet on a real kernel", () => {
  it("is refused while a -m state rule uses conntrack, naming the rule; force removes no rule", async () => {
    expect(await loadedNow()).toEqual(["nf_conntrack", "nf_conntrack_broadcast", "nf_conntrack_netbios_ns", "xt_conntrack"]);
    const message = await refused(stack.preview());
    expect(message).toContain(`iptables -t filter ${stateRule} uses nf_conntrack, xt_conntrack: remove or change it first (this resource never removes rules)`);
    expect(await sh("iptables -S INPUT")).toContain(stateRule);
    expect(await loadedNow()).toEqual(["nf_conntrack", "nf_conntrack_broadcast", "nf_conntrack_netbios_ns", "xt_conntrack"]);
  });

  it("once the rule is gone, unloads what exists (holders first) and reports what this kernel lacks", async () => {
    await sh(`iptables ${stateRule.replace("-A", "-D")}`);
    const preview = await stack.preview();
    expect(preview.changes).toEqual({ create: 2 });
    expect(preview.stdout).toMatch(/module nf_conntrack\s*: "loaded → absent"/);
    expect(preview.stdout).toContain("nf_conntrack_ipv4: not in this kernel (merged into nf_conntrack in Linux 4.19); nothing to unload");
    expect(await loadedNow()).toHaveLength(4);
    const t = Date.now();
    const { outputs } = await stack.up();
    console.log(`[figure] KernelModuleSet VM up (unload 4 modules): ${Date.now() - t} ms`);
    const vmOut = outputs.vm as Record<string, any>;
    expect(vmOut.resolved).toEqual({
      xt_NOTRACK: "xt_CT (no module or alias xt_NOTRACK here; x_tables loads xt_CT for NOTRACK (alias ipt_NOTRACK))",
      nf_conntrack_netbios_ns: "a module",
      nf_conntrack_ipv4: "not in this kernel (merged into nf_conntrack in Linux 4.19)",
      xt_state: "a module",
      nf_conntrack: "a module",
    });
    expect(vmOut.warnings).toEqual([
      "nf_conntrack_ipv4: not in this kernel (merged into nf_conntrack in Linux 4.19); nothing to unload",
      "force: also unloading nf_conntrack_broadcast, xt_conntrack, which hold the listed modules",
    ]);
    expect(vmOut.previous).toEqual({
      "module nf_conntrack": "loaded",
      "module nf_conntrack_broadcast": "loaded",
      "module nf_conntrack_netbios_ns": "loaded",
      "module xt_CT": "absent",
      "module xt_conntrack": "loaded",
      "module xt_state": "absent",
    });
    expect(await loadedNow()).toEqual([]);
    expect(await sh(`grep -v '^#' ${blockFile}`)).toBe(
      ["nf_conntrack", "nf_conntrack_netbios_ns", "xt_CT", "xt_state"].map((m) => `blacklist ${m}\ninstall ${m} /bin/false`).join("\n"),
    );
    expect((await stack.preview()).changes).toEqual({ same: 2 });
  });

  it("keeps them out against loads by name, as a dependency, by alias and for rules", everyLoadFails);

  it("a ConntrackLimits beside it in the same program is refused in the preview, naming both", async () => {
    await stack.setConfig({ limits: { value: JSON.stringify({ max: 8192 }) } });
    const message = await refused(stack.preview());
    // Whichever the engine checks first: the clash in this program, or the ledger's record of the set.
    expect(message).toMatch(/e2e-kernel-module-set\/test\/KernelModuleSet\/modules-vm (removes module nf_conntrack|keeps nf_conntrack unloaded on this host), which e2e-kernel-module-set\/test\/ConntrackLimits\/limits-vm needs/);
    await stack.stack.removeConfig("limits");
    expect(await loadedNow()).toEqual([]);
  });

  it("state present loads a module by its alias and lists it in modules-load.d", async () => {
    present = await testStack("kernel-module-set", {
      hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true },
      modules: { value: JSON.stringify({ modules: ["ipt_multiport"], state: "present" }) },
    }, { stackName: "present" });
    expect(await multiportLoaded()).toBe(false);
    const { outputs } = await present.up();
    expect((outputs.vm as Record<string, any>).resolved).toEqual({ ipt_multiport: "xt_multiport (alias in modules.alias)" });
    expect(await multiportLoaded()).toBe(true);
    expect(await sh(`grep -v '^#' ${loadFile}`)).toBe("xt_multiport");
  });

  it("they stay out after a reboot, the preview is a no-op, and every load still fails", async () => {
    const t = Date.now();
    await rebootVm(vmName);
    console.log(`[figure] KernelModuleSet VM reboot: ${Date.now() - t} ms`);
    expect(await loadedNow()).toEqual([]);
    expect((await stack.preview()).changes).toEqual({ same: 2 });
    expect(await multiportLoaded()).toBe(true); // systemd-modules-load, from modules-load.d
    expect((await present.preview()).changes).toEqual({ same: 2 });
    await everyLoadFails();
  });

  it("destroy loads again what was loaded, not what wasn't, and removes its files", async () => {
    await present.destroy();
    expect(await multiportLoaded()).toBe(false);
    expect(await sh(`grep -c . ${blockFile}`)).not.toBe("0"); // the other stack's file stays
    expect((await attempt(`ls ${loadFile}`)).code).toBe(2);
    const t = Date.now();
    await stack.destroy();
    console.log(`[figure] KernelModuleSet VM destroy (load 4 modules): ${Date.now() - t} ms`);
    expect(await loadedNow()).toEqual(["nf_conntrack", "nf_conntrack_broadcast", "nf_conntrack_netbios_ns", "xt_conntrack"]);
    expect(await sh(`ls ${blockFile} /var/lib/pulumi-conntrack 2>&1 || true`)).toMatch(/No such file or directory[\s\S]*No such file or directory/);
    await sh("modprobe nf_conntrack_ftp && iptables -A INPUT -m state --state NEW -j ACCEPT");
    expect(await loadedNow()).toEqual(["nf_conntrack", "nf_conntrack_broadcast", "nf_conntrack_ftp", "nf_conntrack_netbios_ns", "xt_conntrack"]);
  });
});
