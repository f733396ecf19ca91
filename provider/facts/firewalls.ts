import type { FactReader } from "./reader";

/** The firewall services pulumi-conntrack knows, by the systemd unit that runs each. */
export const firewallUnits = ["firewalld", "netfilter-persistent", "iptables", "ip6tables", "nftables", "ufw"] as const;
export type FirewallUnit = (typeof firewallUnits)[number];

/** One unit as systemd sees it. */
export interface UnitState {
  /** The unit systemd resolves the name to ("netfilter-persistent.service" for Debian's iptables.service alias). */
  id: string;
  /** The unit file exists (LoadState loaded or masked). */
  exists: boolean;
  /** ActiveState: "active", "inactive", "failed", "activating"... */
  active: string;
  /** UnitFileState: "enabled", "disabled", "masked", "static", "alias", "" (no unit file)... */
  enabled: string;
  /**
   * The unit file, symlinks resolved ("" when none). Debian 11's iptables.service is a symlink,
   * through update-alternatives, to netfilter-persistent.service's file, which systemd 247 loads
   * under its own name (Id iptables.service, UnitFileState "alias"): only the file tells.
   */
  file?: string;
}

/** A table of the live nftables ruleset (`nft list ruleset`), with its text as nft prints it. */
export interface NftTable {
  family: string;
  name: string;
  /** The whole `table FAMILY NAME { ... }` block. */
  text: string;
}

export interface FirewallFacts {
  /** The host runs systemd (the units below are read only then). */
  systemd: boolean;
  units: Partial<Record<FirewallUnit, UnitState>>;
  /** The live nftables ruleset; undefined when it can't be read without loading nf_tables (or nft isn't installed). */
  nft?: NftTable[];
}

/**
 * Every known firewall unit in ONE `systemctl show` (blocks separated by an empty line, marked so
 * the batch's blank-line filter keeps the boundary), and the nftables ruleset only when nf_tables
 * is already loaded: `nft` itself would load it.
 */
export const firewallsReader: FactReader<FirewallFacts> = {
  name: "firewalls",
  script: `
if [ -d /run/systemd/system ]; then
  echo "systemd yes"
  systemctl show -p Id,LoadState,ActiveState,UnitFileState,FragmentPath ${firewallUnits.map((u) => `${u}.service`).join(" ")} 2>/dev/null | sed 's/^$/@unit-end/' |
    while IFS= read -r l; do case "$l" in FragmentPath=?*) echo "FragmentPath=$(readlink -f "\${l#FragmentPath=}")" ;; *) echo "$l" ;; esac; done
  echo "@unit-end"
fi
if command -v nft >/dev/null 2>&1 && { [ -d /sys/module/nf_tables ] || grep -qs '/nf_tables\\.ko' /lib/modules/$(uname -r)/modules.builtin; }; then
  echo "nft $(nft list ruleset 2>/dev/null | base64 -w0)"
fi
true
`,
  parse(lines) {
    const systemd = lines.includes("systemd yes");
    const units: FirewallFacts["units"] = {};
    let block: Record<string, string> = {};
    let index = 0;
    for (const line of lines) {
      if (line === "@unit-end") {
        // systemctl prints the blocks in the order the units were named.
        if (Object.keys(block).length > 0 && index < firewallUnits.length) {
          units[firewallUnits[index++]] = {
            id: block.Id ?? "",
            exists: block.LoadState === "loaded" || block.LoadState === "masked",
            active: block.ActiveState ?? "inactive",
            enabled: block.UnitFileState ?? "",
            file: block.FragmentPath ?? "",
          };
        }
        block = {};
        continue;
      }
      const eq = line.indexOf("=");
      if (eq > 0 && /^[A-Za-z]+$/.test(line.slice(0, eq))) block[line.slice(0, eq)] = line.slice(eq + 1).trim();
    }
    const nftLine = lines.find((l) => l === "nft" || l.startsWith("nft "));
    const nft = nftLine === undefined ? undefined : parseNftTables(Buffer.from(nftLine.slice(4), "base64").toString("utf8"));
    return { systemd, units, nft };
  },
};

/** `nft list ruleset` → its tables, each with its block of text. Pure. */
export function parseNftTables(ruleset: string): NftTable[] {
  const tables: NftTable[] = [];
  let current: { family: string; name: string; lines: string[] } | undefined;
  for (const line of ruleset.split("\n")) {
    const head = /^table (\S+) (\S+) \{/.exec(line);
    if (head) current = { family: head[1], name: head[2], lines: [] };
    if (current) current.lines.push(line);
    if (current && line === "}") {
      tables.push({ family: current.family, name: current.name, text: current.lines.join("\n") + "\n" });
      current = undefined;
    }
  }
  return tables;
}
