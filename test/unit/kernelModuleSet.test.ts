import { describe, expect, it } from "vitest";
import { kernelModuleSetSettingsSchema } from "../../sdk/kernelModuleSet.schema";
import type { HostFacts } from "../../provider/facts/host";
import { kernelModulesReader } from "../../provider/facts/modules";
import { declareIntents } from "../../provider/engine/hostIntents";
import { driverOf } from "../../provider/engine/items";
import { ledgerPath, parseLedger } from "../../provider/engine/ledger";
import { hasWork, planHost, type HostPlan } from "../../provider/engine/plan";
import { claimsOf } from "../../provider/engine/transaction";
import { conntrackLimitsKind } from "../../provider/conntrackLimits/provider";
import { kernelModuleSetKind } from "../../provider/kernelModuleSet/provider";
import { kernelModuleSetIntents, wantKernelModuleSet } from "../../provider/kernelModuleSet/plan";
import { resolveModule } from "../../provider/kernelModuleSet/resolve";
import { nftablesReader } from "../../provider/facts/nftables";
import { notrackRuleKind } from "../../provider/notrackRule/provider";
import { wantNotrackRule } from "../../provider/notrackRule/plan";
import { notrackRuleSettingsSchema } from "../../sdk/notrackRule.schema";
import { facts, fixture } from "./helpers";

// Captured on the lab VM (Debian 12, 6.1.0-50-cloud-amd64, iptables-nft): the seed's host with
// `-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT` and nf_conntrack_netbios_ns loaded,
// then the same host once that rule was deleted (xt_conntrack stays loaded, unused).
const withRule = () => facts("debian12-vm-seed-state-rule");
const rulesGone = () => facts("debian12-vm-seed-rules-removed");
const seedList = ["xt_NOTRACK", "nf_conntrack_netbios_ns", "nf_conntrack_ipv4", "xt_state", "nf_conntrack"];
const settings = (s: Record<string, unknown>) => kernelModuleSetSettingsSchema.parse(s);
const label = "p/s/KernelModuleSet/seed";
const want = (s: Record<string, unknown>, f: HostFacts) => wantKernelModuleSet(settings(s), f, { label });
const backends = kernelModuleSetKind.backends;
const blockPath = "/etc/modprobe.d/00-pulumi-conntrack-modules.conf";
const loadPath = "/etc/modules-load.d/pulumi-conntrack.conf";

function plan(s: Record<string, unknown>, f: HostFacts, owner = "seed#1"): HostPlan {
  const w = want(s, f);
  expect(w.blockers).toEqual([]);
  return planHost({ owner, labels: [label], claims: claimsOf(w, label), facts: f, backends });
}

/** The host after a plan ran: files written, modules unloaded or loaded as the changes say. */
function applied(f: HostFacts, p: HostPlan): HostFacts {
  const files = { ...f.files, ...p.writeFiles };
  for (const path of p.removeFiles) delete files[path];
  const loaded = { ...f.kernelModules.loaded };
  for (const c of p.changes) {
    const m = c.item.slice(7);
    if (c.to === "absent") {
      delete loaded[m];
      for (const other of Object.values(loaded)) other.holders = other.holders.filter((h) => h !== m);
    } else loaded[m] = { refcount: 0, holders: [], permanent: false };
  }
  return { ...f, files, kernelModules: { ...f.kernelModules, loaded } };
}

const stepNames = (p: HostPlan, f: HostFacts) => {
  const changes = p.changes.map((c) => ({ name: c.item.slice(7), to: c.to }));
  return changes.length === 0 ? [] : driverOf("module:x").driver.set(changes, f).map((s) => s.name);
};

describe("kernel module facts", () => {
  it("reads refcounts, holders, built-ins and the netfilter part of the module index", () => {
    const k = withRule().kernelModules;
    expect(k.loadable).toBe(true);
    expect(k.loaded.nf_conntrack).toEqual({ refcount: 3, holders: ["nf_conntrack_broadcast", "nf_conntrack_netbios_ns", "xt_conntrack"], permanent: false });
    // iptables-nft serves -m state through xt_conntrack: the rule is its one user.
    expect(k.loaded.xt_conntrack).toEqual({ refcount: 1, holders: [], permanent: false });
    expect(k.loaded.xt_state).toBeUndefined();
    expect(k.builtin).toContain("ext4");
    expect(k.netfilter).toContain("xt_CT");
    expect(k.aliases).toMatchObject({ ipt_NOTRACK: "xt_CT", ip_conntrack: "nf_conntrack", ipt_state: "xt_state" });
    expect(k.modprobeRules).toContainEqual({ file: "/etc/modprobe.d/lab-vm-no-hw.conf", line: 2, kind: "blacklist", name: "kvm_amd", rest: "" });
  });

  it("parses /proc/modules' permanent modules, dashes and kmod's file precedence", () => {
    const k = kernelModulesReader.parse([
      "loadable",
      "loaded ip_tables 0 [permanent],",
      "loaded nf_nat 1 nft_chain_nat,",
      "builtin mq-deadline ext4",
      "/etc/modprobe.d/x.conf:3:install nf_conntrack /bin/true",
      "/usr/lib/modprobe.d/x.conf:1:install nf_conntrack /bin/false",
      "/lib/modprobe.d/y.conf:2:alias my-ct nf_conntrack",
    ]);
    expect(k.loaded.ip_tables).toEqual({ refcount: 0, holders: [], permanent: true });
    expect(k.loaded.nf_nat.holders).toEqual(["nft_chain_nat"]);
    expect(k.builtin).toEqual(["mq_deadline", "ext4"]);
    expect(k.modprobeRules).toEqual([
      { file: "/etc/modprobe.d/x.conf", line: 3, kind: "install", name: "nf_conntrack", rest: "/bin/true" },
      { file: "/lib/modprobe.d/y.conf", line: 2, kind: "alias", name: "my_ct", rest: "nf_conntrack" },
    ]);
  });

  it("finds nothing to load on a kernel without loadable modules (a namespaced host on this machine)", () => {
    expect(facts("netns-host").kernelModules).toEqual({ loadable: false, loaded: {}, builtin: [], netfilter: [], aliases: {}, modprobeRules: [] });
  });
});

describe("module names resolved like modprobe -R", () => {
  const k = () => rulesGone().kernelModules;
  it("the seed's names on Debian 12's 6.1 kernel", () => {
    const r = Object.fromEntries(seedList.map((n) => [n, resolveModule(n, k())]));
    expect(r.xt_NOTRACK).toEqual({ name: "xt_NOTRACK", found: true, module: "xt_CT", builtin: false, how: "no module or alias xt_NOTRACK here; x_tables loads xt_CT for NOTRACK (alias ipt_NOTRACK)" });
    expect(r.nf_conntrack_netbios_ns).toMatchObject({ found: true, module: "nf_conntrack_netbios_ns", how: "a module" });
    expect(r.nf_conntrack_ipv4).toEqual({ name: "nf_conntrack_ipv4", found: false, how: "not in this kernel (merged into nf_conntrack in Linux 4.19)" });
    expect(r.xt_state).toMatchObject({ found: true, module: "xt_state" });
    expect(r.nf_conntrack).toMatchObject({ found: true, module: "nf_conntrack" });
  });
  it("aliases, dashes, modprobe.d aliases and built-ins", () => {
    expect(resolveModule("ip_conntrack", k())).toMatchObject({ module: "nf_conntrack", how: "alias in modules.alias" });
    expect(resolveModule("ipt_state", k())).toMatchObject({ module: "xt_state" });
    expect(resolveModule("nf-conntrack", k())).toMatchObject({ module: "nf_conntrack", how: "a module (- and _ are alike)" });
    expect(resolveModule("ext4", k())).toMatchObject({ module: "ext4", builtin: true });
    const withAlias = { ...k(), modprobeRules: [{ file: "/etc/modprobe.d/a.conf", line: 1, kind: "alias" as const, name: "ct", rest: "nf_conntrack" }] };
    expect(resolveModule("ct", withAlias)).toMatchObject({ module: "nf_conntrack", how: "alias in /etc/modprobe.d/a.conf line 1" });
    expect(resolveModule("no_such_thing", k())).toEqual({ name: "no_such_thing", found: false, how: "not in this kernel" });
  });
});

describe("KernelModuleSet absent", () => {
  it("is refused while a -m state rule uses conntrack, naming the rule, even with force", () => {
    const rule = "iptables -t filter -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT";
    expect(want({ modules: seedList }, withRule()).blockers).toEqual([
      "modules in use by other modules: nf_conntrack by nf_conntrack_broadcast, xt_conntrack; add them to modules, or set force: true to unload them first",
      `${rule} uses nf_conntrack: remove or change it first (this resource never removes rules)`,
    ]);
    // force unloads holders, never rules: the rule's own module (iptables-nft's xt_conntrack) is named too.
    expect(want({ modules: seedList, force: true }, withRule()).blockers).toEqual([`${rule} uses nf_conntrack, xt_conntrack: remove or change it first (this resource never removes rules)`]);
  });

  it("without force, names the modules that hold the listed ones", () => {
    const w = want({ modules: seedList }, rulesGone());
    expect(w.blockers).toEqual(["modules in use by other modules: nf_conntrack by nf_conntrack_broadcast, xt_conntrack; add them to modules, or set force: true to unload them first"]);
  });

  it("the seed's list after the state rules are gone: resolved names, holders first, a modprobe.d file that keeps them out", () => {
    const f = rulesGone();
    const w = want({ modules: seedList, force: true }, f);
    expect(w.blockers).toEqual([]);
    expect(w.resolved).toEqual({
      xt_NOTRACK: "xt_CT (no module or alias xt_NOTRACK here; x_tables loads xt_CT for NOTRACK (alias ipt_NOTRACK))",
      nf_conntrack_netbios_ns: "a module",
      nf_conntrack_ipv4: "not in this kernel (merged into nf_conntrack in Linux 4.19)",
      xt_state: "a module",
      nf_conntrack: "a module",
    });
    expect(w.warnings).toEqual([
      "nf_conntrack_ipv4: not in this kernel (merged into nf_conntrack in Linux 4.19); nothing to unload",
      "force: also unloading nf_conntrack_broadcast, xt_conntrack, which hold the listed modules",
    ]);
    expect(w.claims).toEqual({
      "module:nf_conntrack": { value: "absent", persist: true },
      "module:nf_conntrack_netbios_ns": { value: "absent", persist: true },
      "module:xt_CT": { value: "absent", persist: true },
      "module:xt_state": { value: "absent", persist: true },
      "module:nf_conntrack_broadcast": { value: "absent", persist: false },
      "module:xt_conntrack": { value: "absent", persist: false },
    });
    const p = plan({ modules: seedList, force: true }, f);
    expect(p.changes.map((c) => `${c.item} ${c.from} → ${c.to}`)).toEqual([
      "module:nf_conntrack loaded → absent",
      "module:nf_conntrack_broadcast loaded → absent",
      "module:nf_conntrack_netbios_ns loaded → absent",
      "module:xt_conntrack loaded → absent",
    ]);
    expect(stepNames(p, f)).toEqual(["unload nf_conntrack_netbios_ns", "unload nf_conntrack_broadcast", "unload xt_conntrack", "unload nf_conntrack"]);
    expect(p.writeFiles[blockPath]).toBe(
      "# Managed by pulumi-conntrack for: p/s/KernelModuleSet/seed.\n# Edits here are undone by the next `pulumi up`; `pulumi destroy` of the last owner removes this file.\n" +
        ["nf_conntrack", "nf_conntrack_netbios_ns", "xt_CT", "xt_state"].map((m) => `blacklist ${m}\ninstall ${m} /bin/false\n`).join(""),
    );
    const ledger = parseLedger(p.writeFiles[ledgerPath]);
    expect(ledger.items["module:nf_conntrack"].original).toBe("loaded");
    expect(ledger.items["module:xt_CT"].original).toBe("absent");
  });

  it("plans nothing once applied, also for the holders it unloaded (no longer holders then)", () => {
    const s = { modules: seedList, force: true };
    const after = applied(rulesGone(), plan(s, rulesGone()));
    expect(Object.keys(after.kernelModules.loaded).filter((m) => /conntrack|xt_/.test(m))).toEqual([]);
    expect(want(s, after).holders).toEqual(["nf_conntrack_broadcast", "xt_conntrack"]);
    expect(hasWork(plan(s, after))).toBe(false);
  });

  it("destroy loads again what was loaded, leaves out what wasn't, and removes its file", () => {
    const s = { modules: seedList, force: true };
    const after = applied(rulesGone(), plan(s, rulesGone()));
    const gone = planHost({ owner: "seed#1", claims: {}, facts: after, backends });
    expect(gone.changes.map((c) => `${c.item} → ${c.to}`)).toEqual([
      "module:nf_conntrack → loaded",
      "module:nf_conntrack_broadcast → loaded",
      "module:nf_conntrack_netbios_ns → loaded",
      "module:xt_conntrack → loaded",
    ]);
    expect(gone.removeFiles.sort()).toEqual([blockPath, ledgerPath]);
    expect(stepNames(gone, after)).toEqual(["load nf_conntrack", "load nf_conntrack_broadcast", "load nf_conntrack_netbios_ns", "load xt_conntrack", "wait for udev"]);
  });

  it("a second owner keeps the modules out until both are gone", () => {
    const s = { modules: ["nf_conntrack_netbios_ns"] };
    const one = applied(rulesGone(), plan(s, rulesGone(), "a#1"));
    const two = applied(one, plan(s, one, "b#2"));
    const aLeaves = planHost({ owner: "a#1", claims: {}, facts: two, backends });
    expect(aLeaves.changes).toEqual([]);
    expect(aLeaves.removeFiles).toEqual([]);
    const bLeaves = planHost({ owner: "b#2", claims: {}, facts: applied(two, aLeaves), backends });
    expect(bLeaves.changes.map((c) => `${c.item} → ${c.to}`)).toEqual(["module:nf_conntrack_netbios_ns → loaded"]);
  });

  it("refuses built-in modules, modules of a kernel without loadable modules, NAT tables and unknown users", () => {
    expect(want({ modules: ["ext4"] }, rulesGone()).blockers).toEqual(["ext4 is built into this kernel (modules.builtin): it can't be unloaded; drop it from modules, or boot a kernel that builds it as a module"]);
    expect(want({ modules: ["nf_conntrack"] }, facts("netns-host")).blockers).toEqual(["this kernel loads no modules (no /proc/modules): its modules are built in and can't be unloaded"]);
    const loaded = facts("debian12-vm-loaded");
    const nat = want({ modules: ["nf_conntrack"], force: true }, loaded).blockers;
    expect(nat).toContain("the iptables nat table (it exists, so NAT hooks stay registered) uses nf_conntrack, nf_nat: remove or change it first (this resource never removes rules)");
    expect(nat).toContain("iptables -t filter -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT uses nf_conntrack, xt_conntrack: remove or change it first (this resource never removes rules)");
    // A user the ruleset doesn't show (an nftables table of another tool): only the refcount tells.
    const f = rulesGone();
    const busy = { ...f, kernelModules: { ...f.kernelModules, loaded: { ...f.kernelModules.loaded, nf_conntrack_netbios_ns: { refcount: 1, holders: [], permanent: false } } } };
    expect(want({ modules: ["nf_conntrack_netbios_ns"] }, busy).blockers).toEqual([
      "nf_conntrack_netbios_ns is in use by 1 user(s) other than modules (refcount 1, modules 0): rules of nftables or another tool, or open sockets; find and remove them first",
    ]);
  });

  it("refuses nf_conntrack while another stack's resource manages conntrack items on the host, naming it", () => {
    const f = rulesGone();
    const ledger = { format: 1, items: { "sysctl:net.netfilter.nf_conntrack_max": { original: "4096", owners: { "x#1": { value: "65536", persist: true, label: "other/prod/ConntrackLimits/limits" } } } } };
    const withLedger = { ...f, files: { ...f.files, [ledgerPath]: JSON.stringify(ledger) } };
    expect(want({ modules: ["nf_conntrack"], force: true }, withLedger).blockers).toEqual([
      "other/prod/ConntrackLimits/limits manages sysctl:net.netfilter.nf_conntrack_max, which need nf_conntrack: destroy it first, or keep nf_conntrack",
    ]);
    expect(want({ modules: ["nf_conntrack_netbios_ns"] }, withLedger).blockers).toEqual([]);
  });

  it("refuses nf_conntrack while another stack's NotrackRule keeps native nftables notrack rules on the host", () => {
    // The ledger a NotrackRule's first apply writes on a native nftables host (its planner's own items).
    const f = rulesGone();
    const nftables = nftablesReader.parse([`ruleset ${Buffer.from(fixture("nftables/seed.json")).toString("base64")}`]);
    const nftHost: HostFacts = { ...f, iptables: { ...f.iptables, nftablesService: true }, nftables };
    const notrackLabel = "other/prod/NotrackRule/web";
    const notrack = wantNotrackRule(notrackRuleSettingsSchema.parse({ ports: [80], side: "server" }), nftHost);
    expect(Object.keys(notrack.claims).every((k) => k.startsWith("nft:"))).toBe(true);
    const written = planHost({ owner: "web#1", labels: [notrackLabel], claims: claimsOf(notrack, notrackLabel), facts: nftHost, backends: notrackRuleKind.backends }).writeFiles[ledgerPath];
    const withLedger = { ...nftHost, files: { ...nftHost.files, [ledgerPath]: written } };
    expect(want({ modules: ["nf_conntrack"], force: true }, withLedger).blockers).toContainEqual(expect.stringMatching(/^other\/prod\/NotrackRule\/web manages nft:inet:.*notrack.*, which need nf_conntrack: destroy it first, or keep nf_conntrack$/));
  });

  it("declares what it removes, so a ConntrackLimits in the same program is refused naming both", () => {
    const f = rulesGone();
    const intents = kernelModuleSetIntents(settings({ modules: seedList, force: true }), f);
    expect(intents).toEqual({ needs: [], removes: ["module nf_conntrack", "module nf_conntrack_netbios_ns", "module xt_CT", "module xt_state", "module nf_conntrack_broadcast", "module xt_conntrack"] });
    const limits = conntrackLimitsKind.intents!({ max: 1000, persist: true }, f);
    expect(declareIntents("kms-unit:22", "p/s/ConntrackLimits/limits", limits)).toEqual([]);
    expect(declareIntents("kms-unit:22", label, intents)).toEqual([`${label} removes module nf_conntrack, which p/s/ConntrackLimits/limits needs`]);
  });
});

describe("KernelModuleSet present", () => {
  it("loads and lists the modules in modules-load.d; destroy unloads what wasn't loaded", () => {
    const f = facts("debian12-vm-not-loaded");
    const p = plan({ modules: ["nf_conntrack", "ipt_state"], state: "present" }, f);
    expect(p.changes.map((c) => `${c.item} ${c.from} → ${c.to}`)).toEqual(["module:nf_conntrack absent → loaded", "module:xt_state absent → loaded"]);
    expect(p.writeFiles[loadPath]).toMatch(/\nnf_conntrack\nxt_state\n$/);
    const after = applied(f, p);
    expect(hasWork(plan({ modules: ["nf_conntrack", "ipt_state"], state: "present" }, after))).toBe(false);
    const gone = planHost({ owner: "seed#1", claims: {}, facts: after, backends });
    expect(gone.changes.map((c) => `${c.item} → ${c.to}`)).toEqual(["module:nf_conntrack → absent", "module:xt_state → absent"]);
    expect(gone.removeFiles.sort()).toEqual([loadPath, ledgerPath]);
  });

  it("refuses names the kernel lacks and hand-made install lines; warns of blacklists that modules-load.d obeys", () => {
    const f = facts("debian12-vm-not-loaded");
    expect(want({ modules: ["nf_conntrack_ipv4"], state: "present" }, f).blockers).toEqual([
      "nf_conntrack_ipv4 is not a module of this kernel (6.1.0-50-cloud-amd64): looked up among its netfilter modules, their aliases, and its loaded and built-in modules",
    ]);
    const rules = [
      { file: "/etc/modprobe.d/hardening.conf", line: 4, kind: "install" as const, name: "nf_conntrack", rest: "/bin/true" },
      { file: "/etc/modprobe.d/hardening.conf", line: 5, kind: "blacklist" as const, name: "nf_conntrack", rest: "" },
    ];
    const w = want({ modules: ["nf_conntrack"], state: "present" }, { ...f, kernelModules: { ...f.kernelModules, modprobeRules: rules } });
    expect(w.blockers).toEqual(['/etc/modprobe.d/hardening.conf line 4 runs "/bin/true" instead of loading nf_conntrack: remove that line']);
    expect(w.warnings).toEqual(["/etc/modprobe.d/hardening.conf line 5 blacklists nf_conntrack: systemd-modules-load skips blacklisted modules at boot, so modules-load.d won't load it; remove that line"]);
    expect(kernelModuleSetIntents(settings({ modules: ["nf_conntrack"], state: "present" }), f)).toEqual({ needs: ["module nf_conntrack"], removes: [] });
  });
});

describe("KernelModuleSet settings", () => {
  it("refuses anything but module name characters, naming the field, before any SSH", () => {
    for (const bad of ["nf_conntrack; reboot", "../x", "a b", "", "-r", "x".repeat(56), "nf*"]) {
      const r = kernelModuleSetSettingsSchema.safeParse({ modules: ["xt_state", bad] });
      expect(r.success, bad).toBe(false);
      expect(r.error!.issues[0].path).toEqual(["modules", 1]);
    }
    expect(kernelModuleSetSettingsSchema.safeParse({ modules: ["nf-conntrack", "nf_conntrack"] }).error!.issues[0].message).toBe("modules names a module twice");
    expect(kernelModuleSetSettingsSchema.safeParse({ modules: ["x"], state: "gone" }).error!.issues[0].path).toEqual(["state"]);
    expect(settings({ modules: ["nf_conntrack"] })).toEqual({ modules: ["nf_conntrack"], state: "absent", persist: true, force: false });
  });
});
