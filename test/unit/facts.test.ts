import { describe, expect, it } from "vitest";
import { FactsParseError, parseConntrackFacts } from "../../provider/facts/conntrack";
import { facts, fixture } from "./helpers";

describe("conntrack facts parser", () => {
  it("reads a Debian 12 VM with nf_conntrack loaded", () => {
    const f = facts("debian12-vm-loaded");
    expect(f.module).toEqual({ name: "nf_conntrack", state: "loaded" });
    expect(f.initialNetns).toBe(true);
    expect(f.sysctl["net.netfilter.nf_conntrack_max"]).toBe("4096");
    expect(f.sysctl["net.netfilter.nf_conntrack_tcp_timeout_established"]).toBe("432000");
    expect(f.hashsize).toBe(4096);
    expect(f.entryBytes).toBe(256);
    expect(f.memTotalBytes).toBe(492748 * 1024);
    expect(f.holders).toEqual(["nf_nat", "xt_conntrack"]);
    expect(f.systemd && f.udevadm).toBe(true);
    expect(f.owned).toEqual({});
  });
  it("keeps commented-out sysctl lines as such (a leading # is not a setting)", () => {
    expect(facts("debian12-vm-loaded").sysctlFiles).toEqual([]);
  });
  it("reads a host where the module is available but not loaded", () => {
    const f = facts("debian12-vm-not-loaded");
    expect(f.module.state).toBe("available");
    expect(f.sysctl).toEqual({});
    expect(f.hashsize).toBeUndefined();
  });
  it("reads a network-namespace host", () => {
    const f = facts("netns-host");
    expect(f.initialNetns).toBe(false);
    expect(f.module.state).toBe("builtin");
    expect(f.systemd).toBe(false);
  });
  it("reads the legacy ip_conntrack layout with RHEL's iptables-config", () => {
    const f = facts("rhel7-legacy-iptables-services");
    expect(f.module).toEqual({ name: "ip_conntrack", state: "loaded" });
    expect(f.sysctl["net.ipv4.netfilter.ip_conntrack_max"]).toBe("65536");
    expect(f.hashsize).toBe(16384);
    expect(f.sysctlFiles).toEqual([{ file: "/etc/sysctl.conf", line: 12, key: "net.ipv4.netfilter.ip_conntrack_max", value: "32768" }]);
    expect(f.modprobeOptions).toEqual([{ file: "/etc/modprobe.d/local.conf", line: 3, module: "ip_conntrack", options: "hashsize=8192" }]);
    expect(f.iptablesConfig).toContain('IPTABLES_MODULES_UNLOAD="yes"');
    expect(f.otherOwners).toEqual(["tuned throughput-performance"]);
  });
  it("reads our own files back byte for byte", () => {
    const content = "# Managed by pulumi-conntrack\nnet.netfilter.nf_conntrack_max = 1\n";
    const text = fixture("conntrack-facts/debian12-vm-loaded.txt").replace("@@owned\n", `@@owned\n/etc/sysctl.d/90-pulumi-conntrack-x-1.conf ${Buffer.from(content).toString("base64")}\n`);
    expect(parseConntrackFacts(text).owned).toEqual({ "/etc/sysctl.d/90-pulumi-conntrack-x-1.conf": content });
  });
  it("refuses output that was cut short rather than guessing", () => {
    expect(() => parseConntrackFacts(fixture("conntrack-facts/debian12-vm-loaded.txt").replace("@@end\n", ""))).toThrow(FactsParseError);
  });
});
