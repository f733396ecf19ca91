import type { HostFacts } from "../facts/host";
import { isOurNft, nftComment, ourTable, ruleKey, type NftRule } from "../facts/nftRules";
import { pipeInto, type Step } from "./commands";

/**
 * Native nftables rules, items "nft:<family>:<table>:<chain>:<rule as nft prints it>":
 * "nft:inet:pulumi_conntrack:prerouting:tcp dport 80 notrack" (a chain of our own table, created
 * with it at raw priority) or "nft:inet:filter:input:tcp dport 80 ct state untracked accept" (a
 * rule inserted at the top of the host's chain, ahead of its drops). Ours carry our comment;
 * removal deletes exactly those by handle; all changes go in one `nft -f` transaction.
 */
export function splitNftItem(name: string): { family: string; table: string; chain: string; rule: string } {
  const [family, table, chain] = name.split(":", 3);
  return { family, table, chain, rule: name.slice(family.length + table.length + chain.length + 3) };
}

const inChain = (r: NftRule, family: string, table: string, chain: string) => r.family === family && r.table === table && r.chain === chain;
const isOurTable = (family: string, table: string) => family === ourTable.family && table === ourTable.name;
const comment = `comment "${nftComment}"`;

export function nftLive(name: string, facts: HostFacts): string | null | undefined {
  if (!facts.nftables.readable) return undefined;
  const { family, table, chain, rule } = splitNftItem(name);
  return facts.nftables.ruleset.rules.some((r) => inChain(r, family, table, chain) && ruleKey(r) === rule) ? "present" : "absent";
}

/** The nft commands that make each item present (or take our rule out), as one script. */
export function nftScript(changes: Array<{ name: string; to: string | null }>, facts: HostFacts): string {
  const rules = facts.nftables.ruleset.rules;
  const lines: string[] = [];
  const ourChains = new Set<string>();
  let ourRulesLeft = rules.filter((r) => isOurTable(r.family, r.table)).length;
  for (const c of changes) {
    const { family, table, chain, rule } = splitNftItem(c.name);
    if (c.to === "present") {
      if (isOurTable(family, table)) {
        if (ourChains.size === 0) lines.push(`add table ${family} ${table}`);
        if (!ourChains.has(chain)) lines.push(`add chain ${family} ${table} ${chain} { type filter hook ${chain} priority raw; policy accept; }`);
        ourChains.add(chain);
        lines.push(`add rule ${family} ${table} ${chain} ${rule} ${comment}`);
        ourRulesLeft++;
      } else {
        lines.push(`insert rule ${family} ${table} ${chain} ${rule} ${comment}`);
      }
    } else {
      for (const r of rules.filter((x) => inChain(x, family, table, chain) && ruleKey(x) === rule && isOurNft(x))) {
        lines.push(`delete rule ${family} ${table} ${chain} handle ${r.handle}`);
        if (isOurTable(family, table)) ourRulesLeft--;
      }
    }
  }
  // Our table goes with its last rule: nothing of ours stays behind in the kernel.
  const tableThere = facts.nftables.ruleset.chains.some((c) => isOurTable(c.family, c.table));
  if (ourRulesLeft === 0 && (tableThere || ourChains.size > 0)) lines.push(`delete table ${ourTable.family} ${ourTable.name}`);
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

/**
 * JSON for `nft -j -f -` that puts our table and the host's input/output filter chains back as
 * the facts found them (the lockout guard's revert): our table is replaced whole, each such host
 * chain is flushed and refilled with the rules it held, in order, in one transaction.
 */
export function nftRevertJson(facts: HostFacts): string {
  const { chains, rules } = facts.nftables.ruleset;
  const cmds: unknown[] = [];
  const tableRef = { family: ourTable.family, name: ourTable.name };
  cmds.push({ add: { table: tableRef } }, { delete: { table: tableRef } });
  const addRule = (r: NftRule) => ({ add: { rule: { family: r.family, table: r.table, chain: r.chain, expr: r.expr, ...(r.comment !== undefined ? { comment: r.comment } : {}) } } });
  const ours = chains.filter((c) => isOurTable(c.family, c.table));
  if (ours.length > 0) {
    cmds.push({ add: { table: tableRef } });
    for (const c of ours) cmds.push({ add: { chain: { family: c.family, table: c.table, name: c.name, type: c.type, hook: c.hook, prio: c.prio, policy: c.policy } } });
    for (const r of rules.filter((x) => isOurTable(x.family, x.table))) cmds.push(addRule(r));
  }
  for (const c of chains.filter((x) => !isOurTable(x.family, x.table) && x.type === "filter" && (x.hook === "input" || x.hook === "output"))) {
    cmds.push({ flush: { chain: { family: c.family, table: c.table, name: c.name } } });
    for (const r of rules.filter((x) => inChain(x, c.family, c.table, c.name))) cmds.push(addRule(r));
  }
  return JSON.stringify({ nftables: cmds });
}

export const nftDriver = {
  live: nftLive,
  set(changes: Array<{ name: string; to: string | null }>, facts: HostFacts): Step[] {
    const script = nftScript(changes, facts);
    return script === "" ? [] : [pipeInto(`change nftables rules in one transaction (${changes.length})`, script, "nft", "-f", "-")];
  },
  revert(facts: HostFacts): Step[] {
    return facts.nftables.readable ? [pipeInto("put nftables rules back as they were", nftRevertJson(facts), "nft", "-j", "-f", "-")] : [];
  },
};
