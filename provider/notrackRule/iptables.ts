import type { NotrackRuleSettings } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../facts/host";
import type { Wanted } from "../engine/transaction";
import { directions, openingFor, type Direction } from "./directions";
import { isOurs, key, parseRuleset, portWithin, type Rule, type Ruleset } from "../facts/iptablesRules";

type Family = "v4" | "v6";
const families = (s: NotrackRuleSettings): Family[] => [...new Set(s.ipVersions)].sort().map((v) => (v === 4 ? "v4" : "v6"));
const saveTool = (f: Family) => (f === "v4" ? "iptables" : "ip6tables");

/** Ledger item key of a rule: "rule:v4:raw:PREROUTING:-p tcp --dport 80 -j CT --notrack". */
export const ruleItem = (family: Family, table: string, chain: string, ruleKey: string) => `rule:${family}:${table}:${chain}:${ruleKey}`;

/** The raw-table rules that take the port out of tracking, in both directions of `side`. */
function rawRules(side: NotrackRuleSettings["side"], proto: string, port: string): Array<{ chain: string; key: string }> {
  const out: Array<{ chain: string; key: string }> = [];
  for (const d of directions(side)) {
    // Packets arriving pass PREROUTING; packets the host sends pass OUTPUT (PREROUTING never sees them).
    const chain = d.chain === "INPUT" ? "PREROUTING" : "OUTPUT";
    out.push({ chain, key: key({ proto, [d.field]: port, other: [], target: "CT --notrack" }) });
  }
  return out;
}

const terminal = (r: Rule) => r.target === "DROP" || r.target.startsWith("REJECT");
const matchesPort = (r: Rule, proto: string, field: "dport" | "sport", port: string) =>
  (r.proto === undefined || r.proto === proto) && portWithin(r[field], port) && (field === "dport" ? r.sport === undefined : r.dport === undefined);
const stateful = (r: Rule) => r.ctstate !== undefined && !r.ctstate.split(",").includes("UNTRACKED");

/** What the filter does today with the port's packets in one chain, seen as untracked packets. */
function filterView(rs: Ruleset, d: Direction, proto: string, port: string) {
  // The host's own rules: ours stand in for them, so they must not count as what the host does.
  const rules = rs.rules.filter((r) => r.table === "filter" && r.chain === d.chain && !isOurs(r));
  // Accepts that gate new connections: their source/interface limits are what the port was open to.
  const gates = rules.filter((r) => r.target === "ACCEPT" && matchesPort(r, proto, d.field, port) && r.other.length === 0 && r.ctstate?.split(",").includes("NEW"));
  const newState = rules.filter((r) => matchesPort(r, proto, d.field, port) && r.ctstate?.split(",").includes("NEW"));
  let verdict: { drops: boolean; by: string } | undefined;
  for (const r of rules) {
    if (stateful(r) || r.other.length > 0 || r.source || r.inIface || r.outIface || r.dest || !matchesPort(r, proto, d.field, port)) continue;
    if (r.target === "ACCEPT") { verdict = { drops: false, by: `-A ${d.chain} ${r.text}` }; break; }
    if (terminal(r)) { verdict = { drops: true, by: `-A ${d.chain} ${r.text}` }; break; }
  }
  const policy = rs.policies.filter?.[d.chain] ?? "ACCEPT";
  verdict ??= { drops: policy === "DROP", by: `the ${d.chain} policy ${policy}` };
  return { gates, newState, verdict };
}

/**
 * The source/interface limits of an accept, for a companion in `chain`: the same limits in the
 * same chain; mirrored for the replies in the other chain (an INPUT accept from 10.0.0.0/8 on
 * eth1 becomes an OUTPUT accept to 10.0.0.0/8 out of eth1).
 */
function limitsFor(g: Rule, chain: string): Partial<Rule> {
  if (g.chain === chain) return { source: g.source, dest: g.dest, inIface: g.inIface, outIface: g.outIface };
  return { source: g.dest, dest: g.source, inIface: g.outIface, outIface: g.inIface };
}

/**
 * NotrackRule through iptables (nft or legacy backend), persisted by netfilter-persistent or
 * iptables-services (the same saved format, persistence/iptablesServices.ts): the raw-table rules that take the ports out of tracking, the
 * filter rules that keep them answering (an UNTRACKED accept with the limits of the accepts it
 * stands in for), and what stops it or deserves a warning.
 */
export function wantIptables(settings: NotrackRuleSettings, facts: HostFacts): Wanted {
  const ipt = facts.iptables;
  const blockers: string[] = [];
  const warnings: string[] = [];
  const claims: Wanted["claims"] = {};
  const persist = settings.persist;

  if (ipt.backend === "none") blockers.push("iptables is not installed: install the iptables package");
  if (ipt.otherBackendRules) blockers.push(`both iptables-${ipt.backend === "nft" ? "legacy" : "nft"} and iptables-${ipt.backend} hold rules on this host: untangle them first (iptables-legacy-save and iptables-nft-save show each)`);
  if (persist && !ipt.netfilterPersistent && !ipt.iptablesServices && ipt.backend !== "none") {
    blockers.push("no way to keep the rules across reboots here: install iptables-persistent (netfilter-persistent), or set persist: false");
  }

  for (const family of families(settings)) {
    const rs = parseRuleset(family === "v4" ? ipt.v4 : ipt.v6);
    for (const port of settings.ports.map(String)) {
      for (const r of rawRules(settings.side, settings.protocol, port)) claims[ruleItem(family, "raw", r.chain, r.key)] = { value: "present", persist };
      for (const d of directions(settings.side)) {
        const view = filterView(rs, d, settings.protocol, port);
        for (const r of view.newState) {
          warnings.push(`${saveTool(family)}: "-A ${d.chain} ${r.text}" matches --state NEW on port ${port}; untracked packets no longer match it${settings.acceptUntracked ? " (the UNTRACKED accept takes its place)" : ""}`);
        }
        if (!view.verdict.drops) continue;
        // What the port was open to: the NEW-state accepts of the opening direction (for replies,
        // those of the other chain, mirrored by limitsFor).
        const opening = openingFor(settings.side, d);
        const scopes = d.opens || !opening ? view.gates : filterView(rs, opening, settings.protocol, port).gates;
        if (!settings.acceptUntracked) {
          blockers.push(`${saveTool(family)}: untracked packets of port ${port} would be dropped by ${view.verdict.by}: set acceptUntracked: true, or accept them yourself`);
          continue;
        }
        if (scopes.length === 0 && d.opens) {
          warnings.push(`${saveTool(family)}: port ${port} isn't accepted in ${d.chain} (${view.verdict.by}); its untracked packets stay dropped, as they were before`);
          continue;
        }
        if (!d.opens && d.chain === "INPUT" && scopes.length === 0) {
          warnings.push(`${saveTool(family)}: INPUT now accepts untracked packets from source port ${port} (untracked replies to this host's own connections can't be told from unsolicited ones); use side: "server" if this host only serves port ${port}`);
        }
        const seen = new Set<string>();
        for (const g of scopes.length > 0 ? scopes : [undefined]) {
          const k = key({ ...(g ? limitsFor(g, d.chain) : {}), proto: settings.protocol, [d.field]: port, ctstate: "UNTRACKED", other: [], target: "ACCEPT" });
          if (seen.has(k)) continue;
          seen.add(k);
          claims[ruleItem(family, "filter", d.chain, k)] = { value: "present", persist };
        }
      }
      for (const r of rs.rules) {
        const natted = r.table === "nat" && (r.target.startsWith("DNAT") || r.target.startsWith("REDIRECT")) && (r.proto === undefined || r.proto === settings.protocol) && portWithin(r.dport, port);
        if (!natted) continue;
        const message = `${saveTool(family)}: "-t nat -A ${r.chain} ${r.text}" rewrites port ${port}, and untracked packets skip NAT`;
        if (settings.force) warnings.push(`${message} (going ahead: force is set)`);
        else blockers.push(`${message}: drop that port from the rule, or set force: true`);
      }
    }
  }
  if (!persist) warnings.push("persist is false: the rules are gone at the next reboot or firewall reload");
  return { claims, warnings, blockers, prepare: [] };
}
