import { describe, expect, it } from "vitest";
import { conntrackLimitsSettingsSchema } from "../../sdk/conntrackLimits.schema";
import type { HostFacts } from "../../provider/facts/host";
import { ledgerPath, renderLedger } from "../../provider/engine/ledger";
import { claimsOf } from "../../provider/engine/transaction";
import { planHost } from "../../provider/engine/plan";
import { conntrackLimitsKind } from "../../provider/conntrackLimits/provider";
import { effectiveHashsize, wantConntrackLimits } from "../../provider/conntrackLimits/plan";
import { adoptLegacy, legacyPaths } from "../../provider/conntrackLimits/legacy";
import { facts, fixture, rhel75Facts } from "./helpers";

const settings = (s: Record<string, unknown>) => conntrackLimitsSettingsSchema.parse(s);
const plan = (s: Record<string, unknown>, f: HostFacts, owner = "o") => {
  const wanted = wantConntrackLimits(settings(s), f);
  return { wanted, plan: planHost({ owner, claims: claimsOf(wanted, "p/s/ConntrackLimits/web"), facts: f, backends: conntrackLimitsKind.backends, unreadable: "(module not loaded)" }) };
};
const sysctlFile = "/etc/sysctl.d/90-pulumi-conntrack.conf";
const udevFile = "/etc/udev/rules.d/90-pulumi-conntrack.rules";

describe("ConntrackLimits on the engine", () => {
  it("lists live → desired in the kernel's names, and the files, with hashsize before the sysctls", () => {
    const { plan: p, wanted } = plan({ max: 262144, hashsize: 32768, timeouts: { tcpEstablished: 86400 } }, facts("debian12-vm-loaded"));
    expect(wanted.blockers).toEqual([]);
    expect(p.changes).toEqual([
      { item: "param:nf_conntrack.hashsize", from: "4096", to: "32768" },
      { item: "sysctl:net.netfilter.nf_conntrack_max", from: "4096", to: "262144" },
      { item: "sysctl:net.netfilter.nf_conntrack_tcp_timeout_established", from: "432000", to: "86400" },
    ]);
    expect(Object.keys(p.writeFiles).sort()).toEqual(["/etc/modprobe.d/pulumi-conntrack.conf", sysctlFile, udevFile, ledgerPath].sort());
    expect(p.writeFiles[udevFile]).toContain('KERNEL=="nf_conntrack", RUN+="/lib/systemd/systemd-sysctl --prefix=/net/netfilter"');
    expect(p.writeFiles["/etc/modprobe.d/pulumi-conntrack.conf"]).toContain("options nf_conntrack hashsize=32768\n");
  });

  it("normalises hashsize to whole pages of buckets, from the host's page size", () => {
    expect(effectiveHashsize(16385, 4096)).toBe(16896);
    expect(effectiveHashsize(1000, 4096)).toBe(1024);
    expect(effectiveHashsize(16385, 65536)).toBe(24576);
    const { plan: p, wanted } = plan({ hashsize: 16385 }, facts("debian12-vm-loaded"));
    expect(p.changes).toEqual([{ item: "param:nf_conntrack.hashsize", from: "4096", to: "16896" }]);
    expect(wanted.warnings).toContainEqual(expect.stringContaining("hashsize 16385 becomes 16896"));
  });

  it("loads the module for a first apply, and after a reboot leaves it unloaded: a no-op", () => {
    const unloaded = facts("debian12-vm-not-loaded");
    const first = plan({ max: 131072 }, unloaded);
    expect(first.wanted.prepare.map((s) => s.name)).toContain("load nf_conntrack");
    // After the apply, a reboot: the module is not loaded, our files and ledger are in place.
    const loaded = plan({ max: 131072 }, facts("debian12-vm-loaded"));
    const files = { ...loaded.plan.writeFiles };
    const rebooted = { ...unloaded, files };
    const again = plan({ max: 131072 }, rebooted);
    expect(again.wanted.prepare).toEqual([]);
    expect(again.plan.changes).toEqual([]);
    expect(again.plan.writeFiles).toEqual({});
    expect(again.plan.removeFiles).toEqual([]);
  });

  it("persist: false writes no files, even on a RHEL host with iptables-config, and loads the module to apply", () => {
    const { plan: p, wanted } = plan({ max: 65536, persist: false }, rhel75Facts());
    expect(Object.keys(p.writeFiles)).toEqual([ledgerPath]);
    expect(wanted.claims).not.toHaveProperty(["token:/etc/sysconfig/iptables-config:.nf_conntrack"]);
    expect(plan({ max: 65536, persist: false }, facts("debian12-vm-not-loaded")).wanted.prepare).not.toEqual([]);
  });

  it("adds the conntrack token to RHEL 7.5's IPTABLES_SYSCTL_LOAD_LIST, line by line, and takes it out again", () => {
    const rhel = rhel75Facts();
    const original = rhel.files["/etc/sysconfig/iptables-config"];
    const { plan: p } = plan({ max: 131072 }, rhel);
    const token = p.changes.find((c) => c.item.startsWith("token:"))!;
    expect(token).toEqual({ item: "token:/etc/sysconfig/iptables-config:.nf_conntrack", from: "absent", to: "present" });
    // The second owner's restore works on the token alone: the file comes back byte for byte.
    const edited = original + '# Added by pulumi-conntrack: re-apply conntrack sysctls after a restart reloads the module.\nIPTABLES_SYSCTL_LOAD_LIST=".nf_conntrack"\n';
    const after = { ...rhel, files: { ...rhel.files, "/etc/sysconfig/iptables-config": edited, [ledgerPath]: p.writeFiles[ledgerPath] } };
    const released = planHost({ owner: "o", claims: {}, facts: after, backends: conntrackLimitsKind.backends });
    expect(released.changes).toEqual([{ item: "token:/etc/sysconfig/iptables-config:.nf_conntrack", from: "present", to: "absent" }]);
  });

  it("needs no token where iptables-services no longer unloads modules (7.7 on)", () => {
    const rhel = rhel75Facts();
    rhel.files["/etc/sysconfig/iptables-config"] = fixture("rhel/iptables-config.el7-1.4.21-33");
    expect(Object.keys(plan({ max: 131072 }, rhel).wanted.claims)).toEqual(["sysctl:net.netfilter.nf_conntrack_max"]);
  });

  it("refuses max in a namespace or a container, naming why; plans timeouts there", () => {
    const ns = facts("netns-host");
    expect(plan({ max: 131072 }, ns).wanted.blockers).toEqual([expect.stringContaining("max are global to the kernel")]);
    const vm = facts("debian12-vm-loaded");
    const container = { ...vm, system: { ...vm.system, container: "lxc" } };
    expect(plan({ max: 131072 }, container).wanted.blockers).toEqual([expect.stringContaining("this host is a lxc container")]);
    const readOnly = { ...vm, conntrackSysctl: { ...vm.conntrackSysctl, readOnly: ["net.netfilter.nf_conntrack_max"] } };
    expect(plan({ max: 131072 }, readOnly).wanted.blockers).toEqual([expect.stringContaining("is read-only")]);
    expect(plan({ timeouts: { tcpEstablished: 3600 } }, ns).plan.changes).toEqual([{ item: "sysctl:net.netfilter.nf_conntrack_tcp_timeout_established", from: "432000", to: "3600" }]);
  });

  it("on a host without systemd the udev rule runs sysctl -p on our file", () => {
    const ns = facts("netns-host");
    expect(plan({ timeouts: { udp: 20 } }, ns).plan.writeFiles[udevFile]).toContain(`RUN+="/usr/sbin/sysctl -q -p ${sysctlFile}"`);
  });

  it("warns about a built-in module's hashsize, a max below the live count, and later sysctl.d files", () => {
    const vm = facts("debian12-vm-loaded");
    const builtin = { ...vm, conntrackModule: { ...vm.conntrackModule, state: "builtin" as const } };
    expect(plan({ hashsize: 8192 }, builtin).wanted.warnings).toContainEqual(expect.stringContaining("add nf_conntrack.hashsize=8192 to the kernel command line"));
    const busy = { ...vm, conntrackSysctl: { ...vm.conntrackSysctl, values: { ...vm.conntrackSysctl.values, "net.netfilter.nf_conntrack_count": "5000" } } };
    expect(plan({ max: 4000 }, busy).wanted.warnings).toContainEqual(expect.stringContaining("below the 5000 connections tracked now"));
    const later = { ...vm, sysctlFiles: [{ file: "/etc/sysctl.d/95-tuning.conf", line: 1, key: "net.netfilter.nf_conntrack_max", value: "65536" }, { file: "/etc/sysctl.d/10-early.conf", line: 1, key: "net.netfilter.nf_conntrack_max", value: "1000" }] };
    const warnings = plan({ max: 131072 }, later).wanted.warnings;
    expect(warnings).toContainEqual(expect.stringContaining("/etc/sysctl.d/95-tuning.conf line 1 sets net.netfilter.nf_conntrack_max = 65536 and is applied after ours"));
    expect(warnings.filter((w) => w.includes("10-early"))).toEqual([]);
  });

  it("estimates memory from the host's slab and warns about a large share of RAM", () => {
    const { wanted } = plan({ max: 1_048_576, hashsize: 4096 }, facts("debian12-vm-loaded"));
    expect(wanted.memory.bytes).toBe(1_048_576 * 256 + 4096 * 8);
    expect(wanted.warnings).toContainEqual(expect.stringContaining("max/hashsize = 256.0 entries per bucket"));
  });
});

describe("stacks written by 0.1", () => {
  it("adopts a 0.1 resource's originals so its destroy restores them and removes its files", () => {
    const vm = facts("debian12-vm-loaded");
    const id = "limits-vm-0a1b2c3d";
    const [sysctl0] = legacyPaths(id);
    const host = { ...vm, conntrackSysctl: { ...vm.conntrackSysctl, values: { ...vm.conntrackSysctl.values, "net.netfilter.nf_conntrack_max": "131072" } }, files: { [sysctl0]: "net.netfilter.nf_conntrack_max = 131072\n" } };
    const view = adoptLegacy({ hostId: id, previous: { "net.netfilter.nf_conntrack_max": "4096" } }, "ConntrackLimits/limits-vm")(host);
    expect(view.removeFiles).toContain(sysctl0);
    const p = planHost({ owner: `legacy/${id}`, claims: {}, facts: view.facts, backends: conntrackLimitsKind.backends });
    expect(p.changes).toEqual([{ item: "sysctl:net.netfilter.nf_conntrack_max", from: "131072", to: "4096" }]);
    expect(p.removeFiles).toEqual([ledgerPath]);
    expect(renderLedger(p.ledger)).toBe('{\n "format": 1,\n "items": {}\n}\n');
  });
});

describe("across stacks", () => {
  it("is refused while a KernelModuleSet keeps nf_conntrack unloaded, naming it", () => {
    const base = facts("debian12-vm-not-loaded");
    const ledger = { format: 1, items: { "module:nf_conntrack": { original: "loaded", owners: { "p/other#1": { value: "absent", persist: true, label: "p/other/KernelModuleSet/bare" } } } } };
    const f = { ...base, files: { ...base.files, [ledgerPath]: JSON.stringify(ledger) } };
    const w = wantConntrackLimits(conntrackLimitsSettingsSchema.parse({ max: 262144 }), f);
    expect(w.blockers).toContainEqual('p/other/KernelModuleSet/bare keeps nf_conntrack unloaded on this host, which this ConntrackLimits needs (its values live in it): destroy that KernelModuleSet (or set its state to "present") first');
  });
});
