import type { FactReader } from "./reader";

/**
 * The host's iptables rules, read without loading anything: the ruleset is dumped only when the
 * kernel side of the backend `iptables` uses is already there (an iptables-save of an absent
 * legacy table, or a first nf_tables request, would load modules).
 */
export interface IptablesFacts {
  /** What `iptables` on this host drives; "none" when it isn't installed. */
  backend: "nft" | "legacy" | "none";
  /** The other backend also holds rules (a mixed host: refused). */
  otherBackendRules: boolean;
  /** iptables-save / ip6tables-save output of the active backend ("" when it holds nothing). */
  v4: string;
  v6: string;
  /** netfilter-persistent (Debian/Ubuntu's iptables-persistent) is installed. */
  netfilterPersistent: boolean;
  /** Firewall services that own the ruleset in their own way. */
  firewalld: boolean;
  nftablesService: boolean;
  iptablesServices: boolean;
  /**
   * The tables /proc/net/ip_tables_names and ip6_tables_names list (none where the files don't
   * exist): those RHEL's iptables.init flushes when its unit stops, whatever backend `iptables`
   * drives. Absent in facts built by hand (tests): none.
   */
  legacyTables?: { v4: string[]; v6: string[] };
}

export const iptablesReader: FactReader<IptablesFacts> = {
  name: "iptables",
  script: `
if command -v iptables >/dev/null 2>&1; then
  case "$(iptables -V 2>/dev/null)" in *nf_tables*) b=nft;; *) b=legacy;; esac
  echo "backend $b"
  # nf_tables is there: loaded, built in, or the kernel loads no modules at all (no /proc/modules).
  nft_up() { [ -d /sys/module/nf_tables ] || [ ! -e /proc/modules ] || grep -qs '/nf_tables\\.ko' /lib/modules/$(uname -r)/modules.builtin; }
  if [ $b = nft ]; then
    nft_up && echo "v4 $(iptables-save 2>/dev/null | base64 -w0)" && echo "v6 $(ip6tables-save 2>/dev/null | base64 -w0)"
    [ -e /proc/net/ip_tables_names ] && [ -n "$(iptables-legacy-save 2>/dev/null | grep '^-A')" ] && echo "other-rules"
  else
    { [ -e /proc/net/ip_tables_names ] || [ ! -e /proc/modules ]; } && echo "v4 $(iptables-save 2>/dev/null | base64 -w0)"
    { [ -e /proc/net/ip6_tables_names ] || [ ! -e /proc/modules ]; } && echo "v6 $(ip6tables-save 2>/dev/null | base64 -w0)"
    nft_up && command -v iptables-nft-save >/dev/null 2>&1 && [ -n "$(iptables-nft-save 2>/dev/null | grep '^-A')" ] && echo "other-rules"
  fi
else
  echo "backend none"
fi
[ -x /usr/sbin/netfilter-persistent ] && echo "netfilter-persistent"
systemctl is-active --quiet firewalld 2>/dev/null && echo "firewalld"
systemctl is-enabled --quiet nftables 2>/dev/null && echo "nftables-service"
[ -f /etc/sysconfig/iptables ] && echo "iptables-services"
for v in ip ip6; do [ -r /proc/net/\${v}_tables_names ] && echo "tables-names-$v $(tr '\\n' ' ' < /proc/net/\${v}_tables_names)"; done
true
`,
  parse(lines) {
    const field = (name: string) => lines.find((l) => l === name || l.startsWith(`${name} `))?.slice(name.length + 1);
    const decode = (b64?: string) => (b64 ? Buffer.from(b64, "base64").toString("utf8") : "");
    const backend = field("backend");
    const names = (list?: string) => (list ?? "").split(" ").filter((n) => n !== "");
    return {
      backend: backend === "nft" || backend === "legacy" ? backend : "none",
      otherBackendRules: lines.includes("other-rules"),
      v4: decode(field("v4")),
      v6: decode(field("v6")),
      netfilterPersistent: lines.includes("netfilter-persistent"),
      firewalld: lines.includes("firewalld"),
      nftablesService: lines.includes("nftables-service"),
      iptablesServices: lines.includes("iptables-services"),
      legacyTables: { v4: names(field("tables-names-ip")), v6: names(field("tables-names-ip6")) },
    };
  },
};
