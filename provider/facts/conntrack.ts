/**
 * The conntrack fact: one remote script that reads everything ConntrackLimits needs from a host
 * in a single round trip, and a pure parser for its output.
 */

export const ownedPathPattern = "pulumi-conntrack";

/** Directories systemd-sysctl reads, in its order of precedence for equal file names. */
export const sysctlDirs = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];
const modprobeDirs = ["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"];

// Few forks: on a busy host every process costs, and the engine reads hosts one at a time.
export const conntrackFactsScript = `
LC_ALL=C; export LC_ALL
echo "@@kernel"; uname -r
echo "@@netns"
if [ "$(readlink /proc/self/ns/net)" = "$(readlink /proc/1/ns/net 2>/dev/null)" ]; then echo init; else echo child; fi
echo "@@memtotal"; sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo
echo "@@module"
for m in nf_conntrack ip_conntrack; do
  if [ -d /sys/module/$m ]; then
    if [ -e /sys/module/$m/initstate ]; then echo "$m loaded"; else echo "$m builtin"; fi
  elif [ $m = nf_conntrack ] || [ ! -d /sys/module/nf_conntrack ]; then
    modinfo -F filename $m >/dev/null 2>&1 && echo "$m available"
  fi
done
echo "@@holders"
ls /sys/module/nf_conntrack/holders 2>/dev/null
echo "@@sysctl"
grep -H '' /proc/sys/net/netfilter/nf_conntrack_* /proc/sys/net/ipv4/netfilter/ip_conntrack_* 2>/dev/null | tr '\\t' ' '
echo "@@hashsize"
grep -H '' /sys/module/nf_conntrack/parameters/hashsize /sys/module/ip_conntrack/parameters/hashsize 2>/dev/null
echo "@@slab"; grep -E '^nf_conntrack ' /proc/slabinfo 2>/dev/null
echo "@@sysctl.d"
grep -HnE '^[[:space:]]*-?[[:space:]]*net[./](netfilter|ipv4[./]netfilter)[./]' ${sysctlDirs.map((d) => `${d}/*.conf`).join(" ")} /etc/sysctl.conf 2>/dev/null
echo "@@modprobe.d"
grep -HnE '^[[:space:]]*options[[:space:]]+(nf_conntrack|ip_conntrack)[[:space:]]' ${modprobeDirs.map((d) => `${d}/*.conf`).join(" ")} 2>/dev/null
echo "@@owners"
pgrep -x kube-proxy >/dev/null 2>&1 && echo "kube-proxy"
[ -s /etc/tuned/active_profile ] && echo "tuned $(cat /etc/tuned/active_profile)"
echo "@@init"
[ -d /run/systemd/system ] && echo systemd
command -v udevadm >/dev/null 2>&1 && echo udevadm
echo "@@iptables-config"
[ -f /etc/sysconfig/iptables-config ] && base64 -w0 /etc/sysconfig/iptables-config && echo
echo "@@owned"
for f in /etc/sysctl.d/*${ownedPathPattern}* /etc/modprobe.d/*${ownedPathPattern}* /etc/udev/rules.d/*${ownedPathPattern}*; do
  [ -f "$f" ] && printf '%s %s\\n' "$f" "$(base64 -w0 "$f")"
done
echo "@@end"
`;

export type ModuleState = "loaded" | "builtin" | "available" | "absent";

/** A sysctl assignment found in a sysctl.d file or /etc/sysctl.conf. */
export interface SysctlFileSetting {
  file: string;
  line: number;
  key: string;
  value: string;
}

export interface ConntrackFacts {
  kernel: string;
  /** False inside a network namespace other than the machine's own (nf_conntrack_max/hashsize are global). */
  initialNetns: boolean;
  memTotalBytes?: number;
  /** nf_conntrack, or the legacy ip_conntrack of old kernels. */
  module: { name: "nf_conntrack" | "ip_conntrack"; state: ModuleState };
  holders: string[];
  /** Live values by sysctl key ("net.netfilter.nf_conntrack_max" → "65536"). */
  sysctl: Record<string, string>;
  hashsize?: number;
  /** Size of one conntrack entry in the kernel's slab, when the host shows it. */
  entryBytes?: number;
  sysctlFiles: SysctlFileSetting[];
  modprobeOptions: { file: string; line: number; module: string; options: string }[];
  otherOwners: string[];
  systemd: boolean;
  udevadm: boolean;
  /** Content of /etc/sysconfig/iptables-config (RHEL iptables-services), if present. */
  iptablesConfig?: string;
  /** Files of ours found on the host, path → content. */
  owned: Record<string, string>;
}

export class FactsParseError extends Error {}

function sections(output: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of output.split("\n")) {
    const m = /^@@(\S+)$/.exec(line);
    if (m) {
      current = [];
      map.set(m[1], current);
    } else if (current && line.trim() !== "") {
      current.push(line);
    }
  }
  if (!map.has("end")) throw new FactsParseError("the facts script's output was cut short");
  return map;
}

/** "/proc/sys/net/netfilter/nf_conntrack_max" → "net.netfilter.nf_conntrack_max". */
export function procPathToKey(path: string): string {
  return path.replace(/^\/proc\/sys\//, "").replace(/\//g, ".");
}

export function parseConntrackFacts(output: string): ConntrackFacts {
  const s = sections(output);
  const get = (name: string) => s.get(name) ?? [];

  const modules = get("module").map((l) => l.split(" ") as [string, ModuleState]);
  const nf = modules.find(([m]) => m === "nf_conntrack");
  const legacy = modules.find(([m]) => m === "ip_conntrack");
  const module = nf
    ? { name: "nf_conntrack" as const, state: nf[1] }
    : legacy
      ? { name: "ip_conntrack" as const, state: legacy[1] }
      : { name: "nf_conntrack" as const, state: "absent" as const };

  const sysctl: Record<string, string> = {};
  for (const line of get("sysctl")) {
    const colon = line.indexOf(":");
    if (colon > 0) sysctl[procPathToKey(line.slice(0, colon))] = line.slice(colon + 1).trim();
  }

  const hashLine = get("hashsize").find((l) => l.startsWith(`/sys/module/${module.name}/`));
  const slab = get("slab")[0]?.trim().split(/\s+/);
  const mem = Number(get("memtotal")[0]);

  const sysctlFiles: SysctlFileSetting[] = [];
  for (const line of get("sysctl.d")) {
    const m = /^(.+?):(\d+):\s*-?\s*([^=\s]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m && m[3].startsWith("net")) sysctlFiles.push({ file: m[1], line: Number(m[2]), key: m[3].replace(/\//g, "."), value: m[4] });
  }
  const modprobeOptions = get("modprobe.d").flatMap((line) => {
    const m = /^(.+?):(\d+):\s*options\s+(\S+)\s+(.*?)\s*$/.exec(line);
    return m ? [{ file: m[1], line: Number(m[2]), module: m[3], options: m[4] }] : [];
  });
  const owned: Record<string, string> = {};
  for (const line of get("owned")) {
    const [path, b64 = ""] = line.split(" ");
    owned[path] = Buffer.from(b64, "base64").toString("utf8");
  }
  const init = get("init");
  const iptablesConfig = get("iptables-config")[0];

  return {
    kernel: get("kernel")[0] ?? "",
    initialNetns: get("netns")[0] !== "child",
    memTotalBytes: Number.isFinite(mem) && mem > 0 ? mem * 1024 : undefined,
    module,
    holders: get("holders"),
    sysctl,
    hashsize: hashLine ? Number(hashLine.slice(hashLine.indexOf(":") + 1)) : undefined,
    entryBytes: slab && slab.length > 3 && Number(slab[3]) > 0 ? Number(slab[3]) : undefined,
    sysctlFiles,
    modprobeOptions,
    otherOwners: get("owners"),
    systemd: init.includes("systemd"),
    udevadm: init.includes("udevadm"),
    iptablesConfig: iptablesConfig ? Buffer.from(iptablesConfig, "base64").toString("utf8") : undefined,
    owned,
  };
}
