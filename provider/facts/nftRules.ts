/**
 * nftables rules as data: parsed from `nft -j list ruleset`, compared by what they match and do,
 * rendered as nft rule text. Pure.
 *
 * A rule's identity is its text as nft itself prints it without comment and handle; `render` writes
 * the matches we model in nft's own order, so a rule read back from the host renders to the same
 * text as the one we asked for. Rules with anything we don't model (negations, sets, maps, jumps
 * with matches we can't judge) keep `other`, and the planner never reasons about what they do.
 */
export type NftFamily = "ip" | "ip6" | "inet" | "arp" | "bridge" | "netdev";

export interface NftChain {
  family: NftFamily;
  table: string;
  name: string;
  /** Base chains only: their type ("filter", "nat"...), where they hook in, their priority and policy. */
  type?: string;
  hook?: string;
  prio?: number;
  policy?: string;
}

export interface NftRule {
  family: NftFamily;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  /** "ipv4" | "ipv6" from `meta nfproto`. */
  nfproto?: string;
  /** Interface limits, with the key nft used ("iif" or "iifname"...). */
  inIface?: { key: string; name: string };
  outIface?: { key: string; name: string };
  /** Address limits: the family's payload protocol ("ip" / "ip6") and the address or prefix. */
  saddr?: { proto: string; value: string };
  daddr?: { proto: string; value: string };
  proto?: string;
  /** "80" or "1000:2000", as iptables writes ports (so the shared port helpers apply). */
  sport?: string;
  dport?: string;
  /** Connection states, sorted ("established,related"). */
  ctstate?: string;
  /** Expressions we don't model, as JSON: the rule's matches are then not ours to judge. */
  other: string[];
  /** "accept" | "drop" | "reject" | "notrack" | "jump NAME" | "goto NAME" | "return" | "" (none). */
  verdict: string;
  /** The rule's expressions exactly as nft printed them in JSON: what a revert replays. */
  expr: unknown[];
}

export interface NftRuleset {
  chains: NftChain[];
  rules: NftRule[];
}

type Json = Record<string, unknown>;

function portSpec(right: unknown): string | undefined {
  if (typeof right === "number") return String(right);
  const range = (right as Json | null)?.range;
  if (Array.isArray(range) && range.length === 2 && range.every((n) => typeof n === "number")) return `${range[0]}:${range[1]}`;
  return undefined;
}

function addrSpec(right: unknown): string | undefined {
  if (typeof right === "string") return right;
  const prefix = (right as Json | null)?.prefix as Json | undefined;
  if (prefix && typeof prefix.addr === "string" && typeof prefix.len === "number") return `${prefix.addr}/${prefix.len}`;
  return undefined;
}

/** One match expression into the rule's fields; false when it is something we don't model. */
function readMatch(rule: NftRule, m: Json): boolean {
  const left = m.left as Json;
  const right = m.right;
  if (m.op === "in" && (left?.ct as Json)?.key === "state") {
    const states = (Array.isArray(right) ? right : [right]).map(String);
    rule.ctstate = states.sort().join(",");
    return true;
  }
  if (m.op !== "==") return false;
  const meta = left?.meta as Json | undefined;
  if (meta && typeof right === "string") {
    if (meta.key === "nfproto") rule.nfproto = right;
    else if (meta.key === "l4proto") rule.proto = right;
    else if (meta.key === "iif" || meta.key === "iifname") rule.inIface = { key: meta.key, name: right };
    else if (meta.key === "oif" || meta.key === "oifname") rule.outIface = { key: meta.key, name: right };
    else return false;
    return true;
  }
  const payload = left?.payload as Json | undefined;
  if (payload && (payload.protocol === "ip" || payload.protocol === "ip6") && (payload.field === "saddr" || payload.field === "daddr")) {
    const value = addrSpec(right);
    if (value === undefined) return false;
    rule[payload.field] = { proto: payload.protocol, value };
    return true;
  }
  if (payload && (payload.protocol === "tcp" || payload.protocol === "udp") && (payload.field === "sport" || payload.field === "dport")) {
    const value = portSpec(right);
    if (value === undefined || (rule.proto !== undefined && rule.proto !== payload.protocol)) return false;
    rule.proto = payload.protocol;
    rule[payload.field] = value;
    return true;
  }
  return false;
}

function readRule(r: Json): NftRule {
  const expr = (r.expr as Json[]) ?? [];
  const rule: NftRule = { family: r.family as NftFamily, table: String(r.table), chain: String(r.chain), handle: Number(r.handle), other: [], verdict: "", expr };
  if (typeof r.comment === "string") rule.comment = r.comment;
  for (const e of expr) {
    const [kind] = Object.keys(e);
    const body = e[kind] as Json;
    if (kind === "match" && readMatch(rule, body)) continue;
    if (kind === "counter") continue; // counts, changes nothing
    if (["accept", "drop", "notrack", "return"].includes(kind)) rule.verdict = kind;
    else if (kind === "reject") rule.verdict = "reject";
    else if (kind === "jump" || kind === "goto") rule.verdict = `${kind} ${String(body?.target)}`;
    else rule.other.push(JSON.stringify(e));
  }
  return rule;
}

/** `nft -j list ruleset` output → chains and rules, in the order nft lists them. */
export function parseNftRuleset(json: string): NftRuleset {
  const out: NftRuleset = { chains: [], rules: [] };
  if (json.trim() === "") return out;
  const items = (JSON.parse(json) as { nftables?: Json[] }).nftables ?? [];
  for (const item of items) {
    if (item.chain) {
      const c = item.chain as Json;
      out.chains.push({ family: c.family as NftFamily, table: String(c.table), name: String(c.name), type: c.type as string | undefined, hook: c.hook as string | undefined, prio: c.prio as number | undefined, policy: c.policy as string | undefined });
    } else if (item.rule) {
      out.rules.push(readRule(item.rule as Json));
    }
  }
  return out;
}

export type RuleShape = Pick<NftRule, "nfproto" | "inIface" | "outIface" | "saddr" | "daddr" | "proto" | "sport" | "dport" | "ctstate" | "verdict">;

/** A rule's matches and verdict as nft prints them (without comment or handle): its identity. */
export function render(r: RuleShape): string {
  const parts: string[] = [];
  // nft drops a `meta nfproto` that an address match implies, so it is written only without one.
  if (r.nfproto && !r.saddr && !r.daddr) parts.push(`meta nfproto ${r.nfproto}`);
  if (r.inIface) parts.push(`${r.inIface.key} "${r.inIface.name}"`);
  if (r.outIface) parts.push(`${r.outIface.key} "${r.outIface.name}"`);
  if (r.saddr) parts.push(`${r.saddr.proto} saddr ${r.saddr.value}`);
  if (r.daddr) parts.push(`${r.daddr.proto} daddr ${r.daddr.value}`);
  const nftPort = (p: string) => p.replace(":", "-");
  if (r.proto && r.sport) parts.push(`${r.proto} sport ${nftPort(r.sport)}`);
  if (r.proto && r.dport) parts.push(`${r.proto} dport ${nftPort(r.dport)}`);
  if (r.proto && !r.sport && !r.dport) parts.push(`meta l4proto ${r.proto}`);
  if (r.ctstate) parts.push(`ct state ${r.ctstate}`);
  parts.push(r.verdict);
  return parts.join(" ");
}

/** The identity of a rule read from the host; undefined when it holds matches we don't model. */
export const ruleKey = (r: NftRule): string | undefined => (r.other.length > 0 ? undefined : render(r));

/** Our table: the raw-priority chains holding the notrack rules. */
export const ourTable = { family: "inet" as const, name: "pulumi_conntrack" };
export const nftComment = "pulumi-conntrack";
export const isOurNft = (r: NftRule) => r.comment?.startsWith(nftComment) ?? false;

/** A value nft takes as a quoted string or a name (interface names, table and chain names). */
export const safeNftName = (s: string) => /^[A-Za-z0-9_./@-]{1,64}$/.test(s) && !s.includes('"');
