import type { FactReader } from "./reader";

/** How full the conntrack table is, and what it dropped: the readings a rollout gates on. */
export type ConntrackStatusFacts =
  | { tracking: false }
  | {
      tracking: true;
      count: number;
      max: number;
      buckets: number;
      /** Summed over CPUs from /proc/net/stat/nf_conntrack (undefined where the kernel lacks the column). */
      drop?: number;
      earlyDrop?: number;
      insertFailed?: number;
      /** The kernel's most recent "table full, dropping packet" lines, oldest first. */
      tableFull: string[];
    };

/**
 * Reads /proc only: nothing here loads a module (`conntrack -C` would load nf_conntrack_netlink,
 * which then holds nf_conntrack). Without the conntrack sysctls nothing is tracked.
 */
export const conntrackStatusReader: FactReader<ConntrackStatusFacts> = {
  name: "conntrack-status",
  script: `
d=/proc/sys/net/netfilter
if [ -r $d/nf_conntrack_count ]; then
  echo "count $(cat $d/nf_conntrack_count)"
  echo "max $(cat $d/nf_conntrack_max)"
  echo "buckets $(cat $d/nf_conntrack_buckets)"
  [ -r /proc/net/stat/nf_conntrack ] && echo "stat $(base64 -w0 < /proc/net/stat/nf_conntrack)"
  echo "full $({ dmesg 2>/dev/null || journalctl -k -q --no-pager 2>/dev/null; } | grep 'table full, dropping packet' | tail -n 20 | base64 -w0)"
else
  echo "not-tracking"
fi
`,
  parse(lines) {
    if (lines.includes("not-tracking")) return { tracking: false };
    const field = (name: string) => lines.find((l) => l.startsWith(`${name} `))?.slice(name.length + 1) ?? "";
    const number = (name: string) => {
      const n = Number(field(name));
      if (!Number.isInteger(n)) throw new Error(`conntrack status: ${name} is ${JSON.stringify(field(name))}`);
      return n;
    };
    const decode = (b64: string) => Buffer.from(b64, "base64").toString("utf8");
    const stats = sumPerCpu(decode(field("stat")));
    return {
      tracking: true,
      count: number("count"),
      max: number("max"),
      buckets: number("buckets"),
      drop: stats.drop,
      earlyDrop: stats.early_drop,
      insertFailed: stats.insert_failed,
      tableFull: decode(field("full")).split("\n").filter((l) => l.trim() !== ""),
    };
  },
};

/** /proc/net/stat/nf_conntrack: a header of column names, then one line of hex numbers per CPU. */
export function sumPerCpu(text: string): Record<string, number> {
  const [header, ...rows] = text.split("\n").filter((l) => l.trim() !== "");
  const sums: Record<string, number> = {};
  if (!header) return sums;
  const names = header.trim().split(/\s+/);
  for (const row of rows) {
    row.trim().split(/\s+/).forEach((hex, i) => {
      if (names[i]) sums[names[i]] = (sums[names[i]] ?? 0) + parseInt(hex, 16);
    });
  }
  return sums;
}
