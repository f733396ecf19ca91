import type { HostFacts } from "../facts/host";
import { isOurNft, nftComment, ourTable, ruleKey, type NftRule } from "../facts/nftRules";
import { sh } from "../transport/shell";
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
 * JSON for `nft -j -f -` that puts our own table back as the facts found it (the lockout guard's
 * revert): replaced whole when it was there, gone when it wasn't. It is ours alone; the host's
 * chains are reverted rule by rule (hostChainRevert).
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
  return JSON.stringify({ nftables: cmds });
}

/**
 * Steps that undo, in one of the host's own chains, exactly the rule of ours the apply inserted
 * (found by its text and comment, under a handle the facts didn't have) or deleted (inserted
 * again unless it is back already). Rules anyone else added since stay.
 */
function hostChainRevert(name: string, facts: HostFacts): Step[] {
  const { family, table, chain, rule } = splitNftItem(name);
  const line = `${rule} ${comment}`;
  const list = sh`nft -a list chain ${family} ${table} ${chain}`;
  if (nftLive(name, facts) === "absent") {
    const known = facts.nftables.ruleset.rules.filter((r) => inChain(r, family, table, chain)).map((r) => ` ${r.handle} `).join("");
    const handles = sh`${list} | grep -F -- ${`${line} # handle `} | sed -n 's/.* # handle \\([0-9]*\\)$/\\1/p'`;
    return [{ name: `take out the nftables ${family} ${table} ${chain} rule the change added (${rule})`, shell: sh`for h in $(${handles}); do case ${known} in *" $h "*) ;; *) nft delete rule ${family} ${table} ${chain} handle "$h" || exit 1;; esac; done`.text }];
  }
  return [{ name: `put back the nftables ${family} ${table} ${chain} rule the change removed (${rule})`, shell: sh`{ ${list} | grep -qF -- ${`${line} # handle `} || nft insert rule ${family} ${table} ${chain} ${line}; }`.text }];
}

export const nftDriver = {
  live: nftLive,
  set(changes: Array<{ name: string; to: string | null }>, facts: HostFacts): Step[] {
    const script = nftScript(changes, facts);
    return script === "" ? [] : [pipeInto(`change nftables rules in one transaction (${changes.length})`, script, "nft", "-f", "-")];
  },
  revert(facts: HostFacts, changed: string[]): Step[] {
    if (!facts.nftables.readable) return [];
    const hostChains = changed.filter((name) => !isOurTable(splitNftItem(name).family, splitNftItem(name).table));
    const ourTableChanged = hostChains.length < changed.length;
    // Our table first: its notrack rules go before the accepts that let their packets through.
    return [...(ourTableChanged ? [pipeInto("put our nftables table back as it was", nftRevertJson(facts), "nft", "-j", "-f", "-")] : []), ...hostChains.flatMap((name) => hostChainRevert(name, facts))];
  },
};
