import { describe, expect, it } from "vitest";
import { conntrackLimitsSettingsSchema } from "../../sdk/conntrackLimits.schema";
import { ownedPaths } from "../../provider/conntrackLimits/files";
import { planConntrackLimits, planRestore, type DesiredState } from "../../provider/conntrackLimits/plan";
import { applyScript } from "../../provider/conntrackLimits/apply";
import { facts } from "./helpers";

const want = (settings: Record<string, unknown>, extra: Partial<DesiredState> = {}): DesiredState => ({
  owner: "web",
  id: "web-0a1b2c3d",
  settings: conntrackLimitsSettingsSchema.parse(settings),
  previous: {},
  previousFiles: {},
  ...extra,
});

describe("planConntrackLimits", () => {
  it("lists live → desired per key, in the kernel's names, and the files to write", () => {
    const plan = planConntrackLimits(want({ max: 262144, hashsize: 32768, timeouts: { tcpEstablished: 86400 } }), facts("debian12-vm-loaded"));
    expect(plan.changes).toEqual([
      { key: "net.netfilter.nf_conntrack_max", from: "4096", to: "262144" },
      { key: "net.netfilter.nf_conntrack_tcp_timeout_established", from: "432000", to: "86400" },
      { key: "nf_conntrack.hashsize", from: "4096", to: "32768" },
    ]);
    const paths = ownedPaths("web-0a1b2c3d");
    expect(Object.keys(plan.writeFiles).sort()).toEqual([paths.modprobe, paths.sysctl, paths.udev].sort());
    expect(plan.writeFiles[paths.sysctl]).toContain("net.netfilter.nf_conntrack_max = 262144\n");
    expect(plan.writeFiles[paths.modprobe]).toContain("options nf_conntrack hashsize=32768\n");
    expect(plan.writeFiles[paths.udev]).toContain('KERNEL=="nf_conntrack", RUN+="/lib/systemd/systemd-sysctl --prefix=/net/netfilter"');
    expect(plan.blockers).toEqual([]);
  });

  it("plans nothing when the host already holds the values and our files", () => {
    const first = planConntrackLimits(want({ max: 8192, timeouts: { udp: 60 } }), facts("debian12-vm-loaded"));
    const converged = facts("debian12-vm-loaded");
    converged.sysctl = { ...converged.sysctl, "net.netfilter.nf_conntrack_max": "8192", "net.netfilter.nf_conntrack_udp_timeout": "60" };
    converged.owned = first.writeFiles;
    const again = planConntrackLimits(want({ max: 8192, timeouts: { udp: 60 } }), converged);
    expect(again.changes).toEqual([]);
    expect(again.writeFiles).toEqual({});
    expect(again.removeFiles).toEqual([]);
  });

  it("compares values, not truthiness", () => {
    const f = facts("debian12-vm-loaded");
    f.sysctl["net.netfilter.nf_conntrack_udp_timeout"] = "";
    expect(planConntrackLimits(want({ timeouts: { udp: 30 }, persist: false }), f).changes).toEqual([
      { key: "net.netfilter.nf_conntrack_udp_timeout", from: "", to: "30" },
    ]);
  });

  it("loads the module first when it isn't loaded, and says so", () => {
    const plan = planConntrackLimits(want({ max: 8192 }), facts("debian12-vm-not-loaded"));
    expect(plan.loadModule).toBe(true);
    expect(plan.changes).toEqual([{ key: "net.netfilter.nf_conntrack_max", from: "(module not loaded)", to: "8192" }]);
  });

  it("uses the legacy ip_conntrack names where the kernel has them", () => {
    const plan = planConntrackLimits(want({ max: 131072, timeouts: { udp: 20 } }), facts("rhel7-legacy-iptables-services"));
    expect(plan.changes.map((c) => c.key)).toEqual(["net.ipv4.netfilter.ip_conntrack_max", "net.ipv4.netfilter.ip_conntrack_udp_timeout"]);
    expect(plan.writeFiles[ownedPaths("web-0a1b2c3d").udev]).toContain("--prefix=/net/ipv4/netfilter");
  });

  it("adds the conntrack keys to RHEL's IPTABLES_SYSCTL_LOAD_LIST so a restart re-applies them", () => {
    const plan = planConntrackLimits(want({ max: 131072 }), facts("rhel7-legacy-iptables-services"));
    const edited = plan.writeFiles["/etc/sysconfig/iptables-config"];
    expect(edited).toContain('IPTABLES_SYSCTL_LOAD_LIST=".ip_conntrack"');
    expect(edited).toContain('IPTABLES_MODULES_UNLOAD="yes"');
  });

  it("warns, naming the file, when a file applied later at boot sets another value", () => {
    const plan = planConntrackLimits(want({ max: 131072 }), facts("rhel7-legacy-iptables-services"));
    expect(plan.warnings).toContainEqual(expect.stringContaining("/etc/sysctl.conf line 12 sets net.ipv4.netfilter.ip_conntrack_max = 32768 and is applied after ours"));
  });

  it("does not warn about a file that is applied before ours", () => {
    const f = facts("debian12-vm-loaded", { sysctlFiles: [{ file: "/etc/sysctl.d/10-early.conf", line: 1, key: "net.netfilter.nf_conntrack_max", value: "1000" }] });
    expect(planConntrackLimits(want({ max: 131072 }), f).warnings.filter((w) => w.includes("10-early"))).toEqual([]);
  });

  it("warns about another modprobe.d hashsize and about tuned", () => {
    const plan = planConntrackLimits(want({ hashsize: 32768, max: 131072 }), facts("rhel7-legacy-iptables-services"));
    expect(plan.warnings).toContainEqual(expect.stringContaining("/etc/modprobe.d/local.conf line 3 also sets ip_conntrack hashsize"));
    expect(plan.warnings).toContainEqual(expect.stringContaining('tuned runs profile "throughput-performance"'));
  });

  it("warns that kube-proxy resets max and the established timeout", () => {
    const plan = planConntrackLimits(want({ max: 131072 }), facts("debian12-vm-loaded", { otherOwners: ["kube-proxy"] }));
    expect(plan.warnings).toContainEqual(expect.stringContaining("kube-proxy runs here"));
  });

  it("refuses max and hashsize on a network-namespace host, but plans its timeouts", () => {
    expect(planConntrackLimits(want({ max: 131072 }), facts("netns-host")).blockers).toEqual([expect.stringContaining("max are global to the kernel")]);
    const plan = planConntrackLimits(want({ timeouts: { tcpEstablished: 3600 } }), facts("netns-host"));
    expect(plan.blockers).toEqual([]);
    expect(plan.changes).toEqual([{ key: "net.netfilter.nf_conntrack_tcp_timeout_established", from: "432000", to: "3600" }]);
  });

  it("estimates memory and warns about a large share of RAM and a poor max/hashsize ratio", () => {
    const plan = planConntrackLimits(want({ max: 1_048_576, hashsize: 4096 }), facts("debian12-vm-loaded"));
    expect(plan.memory.bytes).toBe(1_048_576 * 256 + 4096 * 8);
    expect(plan.warnings).toContainEqual(expect.stringContaining("of this host's 481 MiB RAM"));
    expect(plan.warnings).toContainEqual(expect.stringContaining("max/hashsize = 256.0 entries per bucket"));
  });

  it("warns when persist is false and writes no files", () => {
    const plan = planConntrackLimits(want({ max: 8192, persist: false }), facts("debian12-vm-loaded"));
    expect(plan.writeFiles).toEqual({});
    expect(plan.warnings).toContainEqual(expect.stringContaining("persist is false"));
  });
});

describe("planRestore", () => {
  const previous = { "net.netfilter.nf_conntrack_max": "4096", "nf_conntrack.hashsize": "4096" };
  it("puts back the values found before and removes exactly our files", () => {
    const f = facts("debian12-vm-loaded");
    f.sysctl["net.netfilter.nf_conntrack_max"] = "262144";
    f.hashsize = 65536;
    const mine = ownedPaths("web-0a1b2c3d");
    const theirs = ownedPaths("db-99999999");
    f.owned = { [mine.sysctl]: "x", [mine.udev]: "y", [theirs.sysctl]: "z" };
    const plan = planRestore({ id: "web-0a1b2c3d", previous, previousFiles: {} }, f);
    expect(plan.changes).toEqual([
      { key: "net.netfilter.nf_conntrack_max", from: "262144", to: "4096" },
      { key: "nf_conntrack.hashsize", from: "65536", to: "4096" },
    ]);
    expect(plan.removeFiles.sort()).toEqual([mine.sysctl, mine.udev].sort());
  });
  it("leaves keys alone that another pulumi-conntrack resource now manages (a replacement)", () => {
    const f = facts("debian12-vm-loaded");
    f.sysctl["net.netfilter.nf_conntrack_max"] = "262144";
    f.sysctlFiles = [{ file: ownedPaths("web-12345678").sysctl, line: 4, key: "net.netfilter.nf_conntrack_max", value: "262144" }];
    const plan = planRestore({ id: "web-0a1b2c3d", previous, previousFiles: {} }, f);
    expect(plan.changes.map((c) => c.key)).toEqual([]);
  });
  it("restores a key dropped from the resource even while its own file still sets it", () => {
    const f = facts("debian12-vm-loaded");
    f.hashsize = 65536;
    const mine = ownedPaths("web-0a1b2c3d");
    f.modprobeOptions = [{ file: mine.modprobe, line: 4, module: "nf_conntrack", options: "hashsize=65536" }];
    const plan = planRestore({ id: "web-0a1b2c3d", previous: { "nf_conntrack.hashsize": "4096" }, previousFiles: {} }, f);
    expect(plan.changes).toEqual([{ key: "nf_conntrack.hashsize", from: "65536", to: "4096" }]);
  });
  it("restores a file it edited byte for byte", () => {
    const original = "A=1\r\nIPTABLES_SYSCTL_LOAD_LIST=\"\"\n# trailing";
    const f = facts("rhel7-legacy-iptables-services", { iptablesConfig: "edited" });
    const plan = planRestore({ id: "x-1", previous: {}, previousFiles: { "/etc/sysconfig/iptables-config": original } }, f);
    expect(plan.writeFiles["/etc/sysconfig/iptables-config"]).toBe(original);
  });
});

describe("applyScript", () => {
  it("writes files atomically before values, takes the host lock, and quotes every value", () => {
    const plan = planConntrackLimits(want({ max: 262144, hashsize: 32768 }), facts("debian12-vm-loaded"));
    const script = applyScript(plan);
    expect(script).toContain("flock -w 120 9");
    const fileAt = script.indexOf("base64 -d >");
    const hashAt = script.indexOf("> /sys/module/nf_conntrack/parameters/hashsize");
    const maxAt = script.indexOf("> /proc/sys/net/netfilter/nf_conntrack_max");
    expect(fileAt).toBeGreaterThan(0);
    expect(fileAt).toBeLessThan(hashAt);
    expect(hashAt).toBeLessThan(maxAt);
    expect(script).toContain("udevadm control --reload");
  });
});
