import type { FactReader } from "./reader";

export type ModuleState = "loaded" | "builtin" | "available" | "absent";
export type ConntrackModuleName = "nf_conntrack" | "ip_conntrack";

/** The conntrack module: which name this kernel uses, and whether it is loaded. */
export interface ConntrackModuleFacts {
  name: ConntrackModuleName;
  state: ModuleState;
  /** Modules that hold it (/sys/module/NAME/holders). */
  holders: string[];
}

// The readers below start as few processes as they can: each is the bulk of a fact read's cost on
// the host (see system.ts). Files in /sys are read with the shell's own `read`, but not the
// sysctls: dash reads a byte at a time, and a /proc/sys integer read from an offset past 0 is
// empty, so those take one grep (its tabs become spaces in the parser, not in a `tr`).
// Whether a file can be written is the kernel's answer to opening it for appending, with nothing
// written (`true >> f`: not `:`, a special builtin whose failed redirection ends the script), not
// `[ -w f ]`: busybox's test (and older dash's) says yes to root for every file, read-only sysctls
// of a network namespace and read-only mounts included.
export const conntrackModuleReader: FactReader<ConntrackModuleFacts> = {
  name: "conntrack-module",
  script: `
# ip_conntrack (kernels before 2.6.20) only when there is no nf_conntrack: on newer kernels
# "ip_conntrack" is an alias of nf_conntrack.
for m in nf_conntrack ip_conntrack; do
  if [ -d /sys/module/$m ]; then
    if [ -e /sys/module/$m/initstate ]; then echo "$m loaded"; else echo "$m builtin"; fi
    printf holders; for h in /sys/module/$m/holders/*; do [ -e "$h" ] && printf ' %s' "\${h##*/}"; done; echo
  elif read -r release < /proc/sys/kernel/osrelease && grep -qs "/$m\\.ko" /lib/modules/$release/modules.builtin; then echo "$m builtin"
  elif modinfo -F filename $m >/dev/null 2>&1; then echo "$m available"
  else continue
  fi
  break
done
`,
  parse(lines) {
    const states = lines.filter((l) => !l.startsWith("holders")).map((l) => l.split(" ") as [ConntrackModuleName, ModuleState]);
    const found = states.find(([m]) => m === "nf_conntrack") ?? states.find(([m]) => m === "ip_conntrack");
    const holders = (lines.find((l) => l.startsWith("holders")) ?? "holders").split(" ").slice(1).filter(Boolean);
    return found ? { name: found[0], state: found[1], holders } : { name: "nf_conntrack", state: "absent", holders: [] };
  },
};

/** Live conntrack sysctls ("net.netfilter.nf_conntrack_max" → "65536") and which can be written here. */
export interface ConntrackSysctlFacts {
  values: Record<string, string>;
  /** Keys whose /proc/sys file this host refuses to write (a container, a non-initial netns). */
  readOnly: string[];
}

/** "/proc/sys/net/netfilter/nf_conntrack_max" → "net.netfilter.nf_conntrack_max". */
export function procPathToKey(path: string): string {
  return path.replace(/^\/proc\/sys\//, "").replace(/\//g, ".");
}

export const conntrackSysctlReader: FactReader<ConntrackSysctlFacts> = {
  name: "conntrack-sysctl",
  script: `
grep -H '' /proc/sys/net/netfilter/nf_conntrack_* /proc/sys/net/ipv4/netfilter/ip_conntrack_* 2>/dev/null
for f in /proc/sys/net/netfilter/nf_conntrack_max /proc/sys/net/ipv4/netfilter/ip_conntrack_max; do [ -e $f ] && ! { true >> $f; } 2>/dev/null && echo "read-only $f"; done
`,
  parse(lines) {
    const values: Record<string, string> = {};
    const readOnly: string[] = [];
    for (const line of lines) {
      if (line.startsWith("read-only ")) { readOnly.push(procPathToKey(line.slice(10))); continue; }
      const colon = line.indexOf(":");
      if (colon > 0) values[procPathToKey(line.slice(0, colon))] = line.slice(colon + 1).replace(/\t/g, " ").trim();
    }
    return { values, readOnly };
  },
};

/** The hash table's size (nf_conntrack's hashsize parameter) and the slab object size of one entry. */
export interface ConntrackTableFacts {
  hashsize?: number;
  hashsizeWritable: boolean;
  entryBytes?: number;
}

export const conntrackTableReader: FactReader<ConntrackTableFacts> = {
  name: "conntrack-table",
  script: `
for f in /sys/module/nf_conntrack/parameters/hashsize /sys/module/ip_conntrack/parameters/hashsize; do
  [ -e $f ] && { v=; read -r v < $f; echo "hashsize $v"; } 2>/dev/null && { true >> $f; } 2>/dev/null && echo "hashsize-writable"
done
grep -E '^nf_conntrack(_[0-9a-f]+)? ' /proc/slabinfo 2>/dev/null
`,
  parse(lines) {
    const hash = lines.find((l) => l.startsWith("hashsize "));
    // EL7 kernels name the slab per namespace: "nf_conntrack_ffffffffaf313a40".
    const slab = lines.find((l) => /^nf_conntrack(_[0-9a-f]+)?\s/.test(l))?.trim().split(/\s+/);
    return {
      hashsize: hash ? Number(hash.slice(9)) : undefined,
      hashsizeWritable: lines.includes("hashsize-writable"),
      entryBytes: slab && slab.length > 3 && Number(slab[3]) > 0 ? Number(slab[3]) : undefined,
    };
  },
};

/** Other programs known to set conntrack sysctls when they start. */
export const otherOwnersReader: FactReader<string[]> = {
  name: "other-owners",
  script: `
# kube-proxy runs on Kubernetes nodes, which have one of these directories; only there is every
# process's name read (pgrep -x, with the shell's own reads): that costs 6 ms with 300 processes,
# a third of this whole script, and a preview reads every host
if [ -d /var/lib/kubelet ] || [ -d /etc/kubernetes ] || [ -d /var/lib/kube-proxy ] || [ -d /var/lib/rancher ]; then
  for c in /proc/[0-9]*/comm; do { read -r n < "$c"; } 2>/dev/null && [ "$n" = kube-proxy ] && { echo "kube-proxy"; break; }; done
fi
[ -s /etc/tuned/active_profile ] && { read -r t || [ -n "$t" ]; } < /etc/tuned/active_profile && echo "tuned $t"
true
`,
  parse: (lines) => lines,
};
