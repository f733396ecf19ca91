import { describe, expect, it } from "vitest";
import { conntrackTableReader } from "../../provider/facts/conntrack";
import { batchScript, FactsParseError, parseBatch } from "../../provider/facts/reader";
import { facts, fixture } from "./helpers";

// Parsers on output captured from the lab VM (Debian 12, kernel 6.1) and a namespaced host.
describe("host facts", () => {
  it("reads a Debian 12 VM with nf_conntrack loaded", () => {
    const f = facts("debian12-vm-loaded");
    expect(f.conntrackModule).toEqual({ name: "nf_conntrack", state: "loaded", holders: ["nf_nat", "xt_conntrack"] });
    expect(f.system).toMatchObject({ kernel: "6.1.0-50-cloud-amd64", pageSize: 4096, initialNetns: true, systemd: true, udevadm: true, sysctlPath: "/usr/sbin/sysctl" });
    expect(f.system.container).toBeUndefined();
    expect(f.conntrackSysctl.values["net.netfilter.nf_conntrack_max"]).toBe("4096");
    expect(f.conntrackSysctl.values["net.netfilter.nf_conntrack_tcp_timeout_established"]).toBe("432000");
    expect(f.conntrackSysctl.readOnly).toEqual([]);
    expect(f.conntrackTable).toEqual({ hashsize: 4096, hashsizeWritable: true, entryBytes: 256 });
    expect(f.files).toEqual({});
  });
  it("reads the VM with the module available but not loaded (and no ip_conntrack alias)", () => {
    const f = facts("debian12-vm-not-loaded");
    expect(f.conntrackModule).toEqual({ name: "nf_conntrack", state: "available", holders: [] });
    expect(f.conntrackSysctl.values).toEqual({});
    expect(f.conntrackTable.hashsize).toBeUndefined();
  });
  it("reads a namespaced host: another netns, max read-only, the module built in", () => {
    const f = facts("netns-host");
    expect(f.system.initialNetns).toBe(false);
    expect(f.conntrackSysctl.readOnly).toEqual(["net.netfilter.nf_conntrack_max"]);
    expect(f.conntrackModule.state).toBe("builtin");
    expect(f.conntrackSysctl.values["net.netfilter.nf_conntrack_udp_timeout"]).toBe("30");
  });
  it("reads EL7's per-namespace slab name", () => {
    const line = fixture("rhel/slabinfo.el7").split("\n").find((l) => l.startsWith("nf_conntrack"))!;
    expect(conntrackTableReader.parse([line]).entryBytes).toBe(320);
  });
  it("refuses output that was cut short, or lacks a section", () => {
    const reader = { name: "x", script: "echo 1", parse: (l: string[]) => l };
    expect(() => parseBatch("@@section x\n1\n", [reader])).toThrow(FactsParseError);
    expect(() => parseBatch("@@end\n", [reader])).toThrow("no section x");
    expect(parseBatch(batchScript([reader]).includes("echo 1") ? "@@section x\n1\n@@end\n" : "", [reader])).toEqual({ x: ["1"] });
  });
});
