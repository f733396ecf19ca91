import { firewallUnits, type FirewallUnit, type NftTable } from "./firewalls";
import type { HostFacts } from "./host";
import { ownComment, parseRuleset, type Rule } from "./iptablesRules";
import { flushTables, putBack, replaceTables, RulesetEdit, type Party } from "./rulesetEdit";

/**
 * What each firewall service's rules are, in the facts, and what stopping it would take away.
 * Pure. "Its rules" is what stopping the service removes, or must remove so that the traffic it
 * dropped passes:
 * - netfilter-persistent: every iptables and ip6tables rule that isn't another tool's (below:
 *   Docker, kube-proxy, fail2ban... and our own NotrackRules'), its user chains, and the policies
 *   of the built-in chains; its `stop` leaves them in place with FLUSH_ON_STOP=0, so we take them
 *   out, line by line;
 * - iptables / ip6tables (RHEL's iptables-services): the same, of one family;
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
/**
 * iptables-restore (or ip6tables-restore) that changes rules line by line (--noflush: no table is
 * replaced, so other tools' rules stay) and waits for the xtables lock. The only way we restore.
 */
export const restoreLines = (f: Family) => [f === "v4" ? "iptables-restore" : "ip6tables-restore", "-w", String(xtablesWaitSeconds), "--noflush"];
/** iptables (or ip6tables) on one table, waiting for the xtables lock, with further arguments. */
export const iptablesTool = (f: Family, table: string, ...more: string[]) => [f === "v4" ? "iptables" : "ip6tables", "-w", String(xtablesWaitSeconds), "-t", table, ...more];
const saveTool = (f: Family) => (f === "v4" ? "iptables" : "ip6tables");

/** The iptables families a service's rules are in (nftables: the iptables-nft rules its `nft flush ruleset` takes). */
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

/** A ruleset that holds something of the unit's: one of its rules, or a built-in chain whose policy isn't ACCEPT. */
function holdsRules(unit: FirewallUnit, save: string): boolean {
  const own = serviceParty(unit);
  const rs = parseRuleset(save);
  return rs.rules.some(own.rule) || Object.values(rs.policies).some((chains) => Object.values(chains).some((p) => p !== "ACCEPT" && p !== "-"));
}

/** Whether any of the service's rules are live now. */
export function rulesLive(unit: FirewallUnit, facts: HostFacts): boolean {
  if (unit === "ufw") return families.some((f) => rulesOf(facts, f).rules.some((r) => isUfwChain(r.chain)));
  if (unit === "firewalld" || unit === "nftables") {
    if (nftTablesOf(unit, facts).length > 0) return true;
  }
  if (unit === "nftables") return false; // iptables rules left after its stop belong to someone else
  return iptablesFamiliesOf(unit).some((f) => holdsRules(unit, f === "v4" ? facts.iptables.v4 : facts.iptables.v6));
}

const activeStates = new Set(["active", "activating", "reloading", "deactivating"]);
/** The unit is up (a `systemctl stop` runs its stop, a `systemctl start` does nothing). */
export const unitActive = (unit: FirewallUnit, facts: HostFacts) => activeStates.has(facts.firewalls.units[unit]?.active ?? "");

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
  [/^FLANNEL-/, "Kubernetes networking (flannel)"],
  [/^f2b-/, "fail2ban"],
  [/^LIBVIRT_/, "libvirt"],
  [/^ts-/, "Tailscale"],
  [/^ufw6?-/, "ufw"],
];
/**
 * Interfaces other tools create: their rules in the built-in chains name them rather than a chain
 * of their own (Docker's `-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE` and its
 * FORWARD accepts; libvirt's and older Calico's alike).
 */
const otherInterfaces: Array<[RegExp, string]> = [
  [/^(docker\d+|br-[0-9a-f]{12})$/, "Docker"],
  [/^virbr\d+/, "libvirt"],
  [/^tailscale\d+$/, "Tailscale"],
  [/^(cali|cilium_)/, "Kubernetes networking (Calico/Cilium)"],
  [/^(flannel\.|cni\d+$)/, "Kubernetes networking (flannel)"],
];

/** The tool a user chain is named for, if another tool's. */
export function chainTool(chain: string, unit: FirewallUnit): string | undefined {
  return otherTools.find(([re, tool]) => !(tool === "ufw" && unit === "ufw") && re.test(chain))?.[1];
}

/** Whose a rule is when it isn't the unit's own: another tool's (by its chain, target or interfaces) or a NotrackRule's (our comment). */
export function ownerTool(r: Rule, unit: FirewallUnit): string | undefined {
  if (r.comment?.startsWith(ownComment)) return "pulumi-conntrack (a NotrackRule)";
  const byChain = chainTool(r.chain, unit) ?? chainTool(r.target.split(" ")[0], unit);
  if (byChain) return byChain;
  for (const iface of [r.inIface, r.outIface]) {
    const tool = iface === undefined ? undefined : otherInterfaces.find(([re]) => re.test(iface))?.[1];
    if (tool) return tool;
  }
  // Docker's hairpin NAT for a published port: a container masquerading its own traffic to itself.
  if (r.table === "nat" && r.target === "MASQUERADE" && r.source !== undefined && r.source === r.dest) return "Docker";
  return undefined;
}

/**
 * The unit's own iptables rules and user chains: what its stop takes out and its start puts back.
 * nftables.service owns none (its rules are native tables); its stop's flush takes everyone's.
 */
export function serviceParty(unit: FirewallUnit): Party {
  if (unit === "nftables") return { rule: () => false, chain: () => false };
  return { rule: (r) => ownerTool(r, unit) === undefined, chain: (_table, chain) => chainTool(chain, unit) === undefined };
}

/** Everything of other tools (and of NotrackRules): rules and chains the unit's own actions may wipe, which we put back. */
export function neighbourParty(unit: FirewallUnit): Party {
  const own = serviceParty(unit);
  return { rule: (r) => !own.rule(r), chain: (table, chain) => !own.chain(table, chain) };
}

/** The file the unit's start loads with a plain `iptables-restore` (replacing every table it names). */
export function reloadedFile(unit: FirewallUnit, f: Family): string | undefined {
  if (unit === "netfilter-persistent") return `/etc/iptables/rules.${f}`;
  if (unit === "iptables" && f === "v4") return "/etc/sysconfig/iptables";
  if (unit === "ip6tables" && f === "v6") return "/etc/sysconfig/ip6tables";
  return undefined;
}

/** nftables.service's start runs /etc/nftables.conf; with `flush ruleset` there it takes every iptables-nft rule. */
const nftablesConfFlushes = (facts: HostFacts) => facts.iptables.backend === "nft" && /^\s*flush\s+ruleset\b/m.test(facts.files["/etc/nftables.conf"] ?? "");

/**
 * The ruleset `save` becomes when the (inactive) unit starts, by the host's own doing:
 * netfilter-persistent and RHEL's iptables.init run a plain `iptables-restore` of their file, so
 * each table the file names is replaced by the file's, other tools' chains gone from it;
 * nftables.service's `flush ruleset` empties every iptables-nft table.
 */
export function afterStart(unit: FirewallUnit, f: Family, save: string, facts: HostFacts): string {
  if (unit === "nftables") return nftablesConfFlushes(facts) ? "" : save;
  const path = reloadedFile(unit, f);
  const file = path === undefined ? undefined : facts.files[path];
  return file === undefined ? save : replaceTables(save, file);
}

/**
 * The ruleset `save` becomes when `systemctl stop` runs the unit's stop (`active`: the unit is
 * up; stopping an inactive unit runs nothing): netfilter-persistent leaves it (FLUSH_ON_STOP=0);
 * RHEL's iptables.init sets the policies to ACCEPT and flushes and deletes every chain of each
 * table /proc/net/ip_tables_names lists; nftables.service's `nft flush ruleset` takes every
 * iptables-nft rule.
 */
export function afterStop(unit: FirewallUnit, f: Family, save: string, facts: HostFacts, active: boolean): string {
  if (!active) return save;
  if (unit === "iptables" || unit === "ip6tables") return flushTables(save, facts.iptables.legacyTables?.[f] ?? []);
  if (unit === "nftables") return facts.iptables.backend === "nft" ? "" : save;
  return save;
}

/**
 * Other tools' chains that the unit's own start (its reload) or stop (RHEL's flush) would take
 * away now, each tool with the chains its rules are in: what the preview warns of, and what
 * FirewallState puts back right after.
 */
export function wipedByUnit(unit: FirewallUnit, facts: HostFacts, action: "start" | "stop"): Array<{ tool: string; chains: string[] }> {
  const byTool = new Map<string, Set<string>>();
  for (const f of iptablesFamiliesOf(unit)) {
    const save = f === "v4" ? facts.iptables.v4 : facts.iptables.v6;
    const edit = new RulesetEdit(action === "start" ? afterStart(unit, f, save, facts) : afterStop(unit, f, save, facts, unitActive(unit, facts)));
    putBack(edit, save, neighbourParty(unit));
    for (const { chain, rule } of edit.added) {
      const tool = (rule ? ownerTool(rule, unit) : chainTool(chain, unit)) ?? "other iptables rules";
      byTool.set(tool, (byTool.get(tool) ?? new Set()).add(chain));
    }
  }
  return [...byTool].map(([tool, chains]) => ({ tool, chains: [...chains].sort() })).sort((a, b) => a.tool.localeCompare(b.tool));
}

/** Units whose stop and start FirewallState carries out by lines (the others' own stops flush). */
export const byLines = (unit: FirewallUnit) => unit === "netfilter-persistent" || unit === "iptables" || unit === "ip6tables";

const natStatement = /\b(masquerade|snat to|dnat to|redirect to)\b/;

/**
 * What stopping `unit` would take away that the host may depend on, one line each: its own NAT and
 * forwarding, and, for the units whose own stop flushes everything (nftables, ufw's chains), the
 * rules of other tools (Docker, kube-proxy...). Empty when a stop only opens the filter.
 */
export function wouldLose(unit: FirewallUnit, facts: HostFacts): string[] {
  const lost: string[] = [];
  for (const f of families) {
    const flushes = iptablesFamiliesOf(unit).includes(f);
    for (const r of rulesOf(facts, f).rules) {
      if (!flushes && !(unit === "ufw" && isUfwChain(r.chain))) continue;
      const line = `${saveTool(f)} -t ${r.table} -A ${r.chain} ${r.text}`;
      const tool = ownerTool(r, unit);
      // The iptables services' stops take out their own rules only, by lines: other tools' stay.
      if (tool && byLines(unit)) continue;
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
  const unit = facts.firewalls.units[name];
  const id = unit?.id.replace(/\.service$/, "");
  // Debian 11 loads the alias under its own name: its unit file is netfilter-persistent's.
  const fileOf = unit?.file?.split("/").pop()?.replace(/\.service$/, "");
  return firewallUnits.find((u) => u === id && u !== name) ?? firewallUnits.find((u) => u === fileOf) ?? name;
}

/** The installed firewall units, each once (aliases folded into what they stand for). */
export function installedUnits(facts: HostFacts): FirewallUnit[] {
  return [...new Set(firewallUnits.filter((u) => facts.firewalls.units[u]?.exists).map((u) => canonicalUnit(u, facts)))];
}
