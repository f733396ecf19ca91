import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readerList, readers, type FactName, type HostFacts } from "../../provider/facts/host";
import { parseBatch } from "../../provider/facts/reader";

export function fixture(name: string): string {
  return readFileSync(join(import.meta.dirname, "..", "fixtures", name), "utf8");
}

const allReaders = readerList(Object.keys(readers) as FactName[]);

/** Facts parsed from output captured on a lab host (test/fixtures/host-facts, see its README). */
export function facts(name: string): HostFacts {
  return parseBatch(fixture(`host-facts/${name}.txt`), allReaders) as HostFacts;
}

/**
 * A RHEL 7.5 host with iptables-services, built from real pieces (test/fixtures/rhel/SOURCES.md):
 * the kernel release and "7933 buckets, 31732 max" from one boot's dmesg, iptables-config as
 * 1.4.21-24.el7 ships it, 320-byte entries as EL7's slabinfo shows. The timeouts are the 3.10
 * kernel's compiled-in defaults (no captured sysctl listing from a named RHEL host was found).
 */
export function rhel75Facts(): HostFacts {
  const base = facts("debian12-vm-loaded");
  const boot = /nf_conntrack version [\d.]+ \((\d+) buckets, (\d+) max\)/.exec(fixture("rhel/dmesg.el7-3.10.0-862"))!;
  const kernel = /Linux version (\S+)/.exec(fixture("rhel/dmesg-log.el7-3.10.0-862"))![1];
  return {
    ...base,
    system: { ...base.system, kernel, memTotalBytes: 1014 * 1024 * 1024 },
    conntrackModule: { name: "nf_conntrack", state: "loaded", holders: ["nf_conntrack_ipv4", "xt_conntrack"] },
    conntrackSysctl: {
      values: {
        "net.netfilter.nf_conntrack_max": boot[2],
        "net.netfilter.nf_conntrack_buckets": boot[1],
        "net.netfilter.nf_conntrack_count": "12",
        "net.netfilter.nf_conntrack_tcp_timeout_established": "432000",
        "net.netfilter.nf_conntrack_udp_timeout": "30",
      },
      readOnly: [],
    },
    conntrackTable: { hashsize: Number(boot[1]), hashsizeWritable: true, entryBytes: 320 },
    files: { "/etc/sysconfig/iptables-config": fixture("rhel/iptables-config.el7-1.4.21-24") },
  };
}
