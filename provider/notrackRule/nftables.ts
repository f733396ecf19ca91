import type { NotrackRuleSettings } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../facts/host";
import type { Wanted } from "../engine/transaction";
import { portWithin } from "../facts/iptablesRules";
import { isOurNft, ourTable, render, safeNftName, type NftChain, type NftRule, type RuleShape } from "../facts/nftRules";
import { nftablesConfPath } from "../persistence/nftablesInclude";
import { directions, openingFor, type Direction } from "./directions";

/** Ledger item key of a native nftables rule: "nft:inet:filter:input:tcp dport 80 ct state untracked accept". */
export const nftItem = (family: string, table: string, chain: string, rule: string) => `nft:${family}:${table}:${chain}:${rule}`;

const hookOf = (d: Direction) => (d.chain === "INPUT" ? "input" : "output");
const covers = (family: string, versions: Set<number>) => family === "inet" || (family === "ip" && versions.has(4)) || (family === "ip6" && versions.has(6));
const matchesPort = (r: NftRule, proto: string, field: "dport" | "sport", port: string) =>
  (r.proto === undefined || r.proto === proto) && portWithin(r[field], port) && (field === "dport" ? r.sport === undefined : r.dport === undefined);
const states = (r: NftRule) => r.ctstate?.split(",") ?? [];
const limited = (r: NftRule) => Boolean(r.saddr || r.daddr || r.inIface || r.outIface || r.nfproto);
const describe = (c: NftChain, r: NftRule) => `${c.family} ${c.table} ${c.name}: "${render(r)}"`;

/** What one of the host's base chains does with the port's packets, seen as untracked packets. */
function chainView(rules: NftRule[], c: NftChain, d: Direction, proto: string, port: string) {
  const own = rules.filter((r) => r.family === c.family && r.table === c.table && r.chain === c.name && !isOurNft(r));
  const gates = own.filter((r) => r.verdict === "accept" && r.other.length === 0 && matchesPort(r, proto, d.field, port) && states(r).includes("new"));
  const newState = own.filter((r) => matchesPort(r, proto, d.field, port) && states(r).includes("new"));
  let verdict: { drops: boolean; by: string } | undefined;
  for (const r of own) {
    // Rules we can't judge, or that untracked packets of this port don't reach, are passed over.
    if (r.other.length > 0 || limited(r) || (r.ctstate && !states(r).includes("untracked")) || !matchesPort(r, proto, d.field, port)) continue;
    if (r.verdict === "accept") { verdict = { drops: false, by: describe(c, r) }; break; }
    if (r.verdict === "drop" || r.verdict === "reject") { verdict = { drops: true, by: describe(c, r) }; break; }
  }
  verdict ??= { drops: c.policy === "drop", by: `the policy ${c.policy ?? "accept"} of ${c.family} ${c.table} ${c.name}` };
  return { gates, newState, verdict };
}

/** The source/interface limits of an accept, for a companion in a chain of `hook` (mirrored for replies). */
function limitsFor(g: NftRule, sameDirection: boolean): RuleShape {
  if (sameDirection) return { verdict: "", saddr: g.saddr, daddr: g.daddr, inIface: g.inIface, outIface: g.outIface, nfproto: g.nfproto };
  const flip = (i?: { key: string; name: string }, to?: "i" | "o") => (i ? { key: `${to}${i.key.slice(1)}`, name: i.name } : undefined);
  return { verdict: "", saddr: g.daddr, daddr: g.saddr, inIface: flip(g.outIface, "i"), outIface: flip(g.inIface, "o"), nfproto: g.nfproto };
}

const safeLimits = (l: RuleShape) =>
  [l.inIface?.name, l.outIface?.name].every((n) => n === undefined || safeNftName(n)) && [l.saddr?.value, l.daddr?.value].every((a) => a === undefined || /^[0-9A-Fa-f:.]+(\/\d{1,3})?$/.test(a));

/**
 * NotrackRule on a host whose firewall is native nftables (nftables.service loading
 * /etc/nftables.conf): `notrack` in raw-priority chains of our own table, and in each of the
 * host's input/output filter chains that would drop the untracked packets, an accept at its top
 * with the limits of the accepts that opened the port (an accept in a chain of ours would not stop
 * a drop in the host's chain). Persisted by an include of ours (persistence/nftablesInclude.ts).
 */
export function wantNftables(settings: NotrackRuleSettings, facts: HostFacts): Wanted {
  const nft = facts.nftables;
  const blockers: string[] = [];
  const warnings: string[] = [];
  const claims: Wanted["claims"] = {};
  const persist = settings.persist;
  const versions = new Set<number>(settings.ipVersions);
  const nfproto = versions.size === 2 ? undefined : versions.has(4) ? "ipv4" : "ipv6";
  const proto = settings.protocol;

  if (!nft.readable) blockers.push("nftables.service is enabled but its ruleset can't be read (nft missing, or nf_tables not loaded): start it with `systemctl start nftables`, or disable it");
  if (persist && facts.files[nftablesConfPath] === undefined) blockers.push(`nftables.service is enabled but ${nftablesConfPath} is missing: there is nothing to include our rules from; create it, or set persist: false`);

  const hostChains = nft.ruleset.chains.filter((c) => !(c.family === ourTable.family && c.table === ourTable.name) && c.type === "filter" && covers(c.family, versions));
  for (const port of settings.ports.map(String)) {
    for (const d of directions(settings.side)) {
      const raw = d.chain === "INPUT" ? "prerouting" : "output";
      claims[nftItem(ourTable.family, ourTable.name, raw, render({ nfproto, proto, [d.field]: port, verdict: "notrack" }))] = { value: "present", persist };
      for (const c of hostChains.filter((x) => x.hook === hookOf(d))) {
        const view = chainView(nft.ruleset.rules, c, d, proto, port);
        for (const r of view.newState) warnings.push(`nftables: ${describe(c, r)} matches ct state new on port ${port}; untracked packets no longer match it${settings.acceptUntracked ? " (the untracked accept takes its place)" : ""}`);
        if (!view.verdict.drops) continue;
        if (!safeNftName(c.table) || !safeNftName(c.name)) {
          warnings.push(`nftables: can't name chain ${c.family} ${c.table} ${c.name} safely in a command; its drops (${view.verdict.by}) still catch untracked packets of port ${port}`);
          continue;
        }
        if (!settings.acceptUntracked) {
          blockers.push(`nftables: untracked packets of port ${port} would be dropped by ${view.verdict.by}: set acceptUntracked: true, or accept them yourself`);
          continue;
        }
        const opening = openingFor(settings.side, d);
        const openingChain = opening && hostChains.find((x) => x.family === c.family && x.table === c.table && x.hook === hookOf(opening));
        const scopes = d.opens ? view.gates : openingChain && opening ? chainView(nft.ruleset.rules, openingChain, opening, proto, port).gates : [];
        if (scopes.length === 0 && d.opens) {
          warnings.push(`nftables: port ${port} isn't accepted in ${c.family} ${c.table} ${c.name} (${view.verdict.by}); its untracked packets stay dropped, as they were before`);
          continue;
        }
        if (!d.opens && d.chain === "INPUT" && scopes.length === 0) {
          warnings.push(`nftables: ${c.family} ${c.table} ${c.name} now accepts untracked packets from source port ${port} (untracked replies to this host's own connections can't be told from unsolicited ones); use side: "server" if this host only serves port ${port}`);
        }
        for (const g of scopes.length > 0 ? scopes : [undefined]) {
          const limits = g ? limitsFor(g, d.opens) : { verdict: "" };
          if (!safeLimits(limits)) {
            warnings.push(`nftables: the limits of ${describe(c, g!)} can't be written safely; port ${port} gets no untracked accept there`);
            continue;
          }
          const rule = render({ ...limits, nfproto: c.family === "inet" ? (limits.nfproto ?? nfproto) : undefined, proto, [d.field]: port, ctstate: "untracked", verdict: "accept" });
          claims[nftItem(c.family, c.table, c.name, rule)] = { value: "present", persist };
        }
      }
    }
    for (const r of nft.ruleset.rules) {
      const natted = r.other.some((o) => o.startsWith('{"dnat"') || o.startsWith('{"redirect"')) && (r.proto === undefined || r.proto === proto) && portWithin(r.dport, port);
      if (!natted) continue;
      const message = `nftables: ${r.family} ${r.table} ${r.chain} rewrites port ${port} (dnat/redirect), and untracked packets skip NAT`;
      if (settings.force) warnings.push(`${message} (going ahead: force is set)`);
      else blockers.push(`${message}: drop that port from the rule, or set force: true`);
    }
  }
  if (!persist) warnings.push("persist is false: the rules are gone at the next reboot or `systemctl restart nftables`");
  return { claims, warnings, blockers, prepare: [] };
}
