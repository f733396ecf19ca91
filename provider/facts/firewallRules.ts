import { firewallUnits, type FirewallUnit, type NftTable } from "./firewalls";
import type { HostFacts } from "./host";
import { ownComment, parseRuleset, type Rule } from "./iptablesRules";

/**
 * What each firewall service's rules are, in the facts, and what stopping it would take away.
 * Pure. "Its rules" is what stopping the service removes, or must remove so that the traffic it
 * dropped passes:
 * - netfilter-persistent: the whole iptables and ip6tables rulesets (it loaded them; its `stop`
 *   leaves them in place with FLUSH_ON_STOP=0, so we flush them);
 * - iptables / ip6tables (RHEL's iptables-services): the iptables or the ip6tables ruleset;
 * - nftables: the native nftables tables; its `stop` runs `nft flush ruleset`, which also takes
 *   every iptables-nft rule with it;
 * - firewalld: its own nftables tables (named firewalld);
 * - ufw: its chains (ufw-*, ufw6-*).
 */
export type Family = "v4" | "v6";
export const families: Family[] = ["v4", "v6"];
/**
 * How long an iptables command waits for the xtables lock another tool (fail2ban, kube-proxy,
 * Docker) holds, explicitly: without `-w` it depends on the version whether it waits or fails at
 * once. When the wait runs out, iptables says so in its own words, which our error carries.
 */
export const xtablesWaitSeconds = 30;
/** iptables-restore (or ip6tables-restore) that waits for the xtables lock, with further arguments. */
export const restoreTool = (f: Family, ...more: string[]) => [f === "v4" ? "iptables-restore" : "ip6tables-restore", "-w", String(xtablesWaitSeconds), ...more];
/** iptables (or ip6tables) on one table, waiting for the xtables lock, with further arguments. */
export const iptablesTool = (f: Family, table: string, ...more: string[]) => [f === "v4" ? "iptables" : "ip6tables", "-w", String(xtablesWaitSeconds), "-t", table, ...more];
const saveTool = (f: Family) => (f === "v4" ? "iptables" : "ip6tables");

/** The iptables families whose whole ruleset a service owns. */
export function iptablesFamiliesOf(unit: FirewallUnit): Family[] {
  if (unit === "netfilter-persistent" || unit === "nftables") return ["v4", "v6"];
  if (unit === "iptables") return ["v4"];
  if (unit === "ip6tables") return ["v6"];
  return [];
}

/** Where a stop keeps the ruleset it took away, so a destroy restores even rules that were never saved. */
export const savedPath = (unit: FirewallUnit, what: Family | "nft") => `/var/lib/pulumi-conntrack/firewall-${unit}.${what}`;

/** Tables iptables-nft creates: they belong to whoever wrote the iptables rules, not to nftables.service. */
const iptablesNftTables = new Set(["filter", "nat", "raw", "mangle", "security", "broute"]);
export const nativeTables = (tables: NftTable[]) => tables.filter((t) => t.name !== "firewalld" && !(["ip", "ip6", "arp", "bridge"].includes(t.family) && iptablesNftTables.has(t.name)));
export const firewalldTables = (tables: NftTable[]) => tables.filter((t) => t.name === "firewalld");

/** The nft tables a stop of `unit` removes. */
export function nftTablesOf(unit: FirewallUnit, facts: HostFacts): NftTable[] {
  const tables = facts.firewalls.nft ?? [];
  return unit === "nftables" ? nativeTables(tables) : unit === "firewalld" ? firewalldTables(tables) : [];
}

const rulesOf = (facts: HostFacts, f: Family) => parseRuleset(f === "v4" ? facts.iptables.v4 : facts.iptables.v6);
const isUfwChain = (chain: string) => /^ufw6?-/.test(chain);

/** A ruleset that holds something: a rule, or a built-in chain whose policy isn't ACCEPT. */
function holdsRules(save: string): boolean {
  const rs = parseRuleset(save);
  return rs.rules.length > 0 || Object.values(rs.policies).some((chains) => Object.values(chains).some((p) => p !== "ACCEPT" && p !== "-"));
}

/** Whether any of the service's rules are live now. */
export function rulesLive(unit: FirewallUnit, facts: HostFacts): boolean {
  if (unit === "ufw") return families.some((f) => rulesOf(facts, f).rules.some((r) => isUfwChain(r.chain)));
  if (unit === "firewalld" || unit === "nftables") {
    if (nftTablesOf(unit, facts).length > 0) return true;
  }
  if (unit === "nftables") return false; // iptables rules left after its stop belong to someone else
  return iptablesFamiliesOf(unit).some((f) => holdsRules(f === "v4" ? facts.iptables.v4 : facts.iptables.v6));
}

const activeStates = new Set(["active", "activating", "reloading", "deactivating"]);

/** "running" when the unit is active or any of its rules are live; "stopped" otherwise. */
export function runningState(unit: FirewallUnit, facts: HostFacts): "running" | "stopped" | undefined {
  const u = facts.firewalls.units[unit];
  if (!u?.exists) return undefined;
  // ufw's unit stays active while ufw is disabled (its start does nothing then): only its chains tell.
  const unitUp = unit !== "ufw" && activeStates.has(u.active);
  return unitUp || rulesLive(unit, facts) ? "running" : "stopped";
}

/** Chains of other tools: their rules vanish with a flush, and the tools don't put them back by themselves. */
const otherTools: Array<[RegExp, string]> = [
  [/^DOCKER/, "Docker"],
  [/^KUBE-/, "kube-proxy"],
  [/^(cali-|CILIUM)/, "Kubernetes networking (Calico/Cilium)"],
  [/^f2b-/, "fail2ban"],
  [/^LIBVIRT_/, "libvirt"],
  [/^ts-/, "Tailscale"],
  [/^ufw6?-/, "ufw"],
];

function ownerTool(r: Rule, unit: FirewallUnit): string | undefined {
  if (r.comment?.startsWith(ownComment)) return "pulumi-conntrack (a NotrackRule)";
  for (const [re, tool] of otherTools) {
    if (tool === "ufw" && unit === "ufw") continue;
    if (re.test(r.chain) || re.test(r.target.split(" ")[0])) return tool;
  }
  return undefined;
}

const natStatement = /\b(masquerade|snat to|dnat to|redirect to)\b/;

/**
 * What stopping `unit` would take away that the host may depend on, one line each: NAT, forwarding
 * and the rules of other tools (Docker, kube-proxy...). Empty when a stop only opens the filter.
 */
export function wouldLose(unit: FirewallUnit, facts: HostFacts): string[] {
  const lost: string[] = [];
  for (const f of families) {
    const flushes = iptablesFamiliesOf(unit).includes(f);
    for (const r of rulesOf(facts, f).rules) {
      if (!flushes && !(unit === "ufw" && isUfwChain(r.chain))) continue;
      const line = `${saveTool(f)} -t ${r.table} -A ${r.chain} ${r.text}`;
      const tool = ownerTool(r, unit);
      if (tool) lost.push(`${line} (${tool})`);
      else if (r.table === "nat") lost.push(`${line} (NAT)`);
      else if (r.chain === "FORWARD" && unit !== "ufw") lost.push(`${line} (forwarding)`);
    }
  }
  for (const t of nftTablesOf(unit, facts)) {
    for (const line of t.text.split("\n")) if (natStatement.test(line)) lost.push(`nft table ${t.family} ${t.name}: ${line.trim()} (NAT)`);
  }
  return lost;
}

/** The unit a name stands for here: Debian's iptables.service is an alias of netfilter-persistent.service. */
export function canonicalUnit(name: FirewallUnit, facts: HostFacts): FirewallUnit {
  const id = facts.firewalls.units[name]?.id.replace(/\.service$/, "");
  return firewallUnits.find((u) => u === id) ?? name;
}

/** The installed firewall units, each once (aliases folded into what they stand for). */
export function installedUnits(facts: HostFacts): FirewallUnit[] {
  return [...new Set(firewallUnits.filter((u) => facts.firewalls.units[u]?.exists).map((u) => canonicalUnit(u, facts)))];
}
