import { ownComment, withComment } from "../facts/iptablesRules";
import type { HostFacts } from "../facts/host";
import type { FileBackend, PersistInput } from "./items";

/**
 * Debian/Ubuntu's netfilter-persistent restores /etc/iptables/rules.v4 and rules.v6 at boot. We
 * add our rules to the saved file and take exactly them out again (they carry our comment); every
 * other line stays byte for byte. A table section the file lacked is added with a marker line, so
 * it goes away whole when our last rule leaves; so does a file we created.
 */
const ourComment = `--comment "${ownComment}`;
const sectionMarker = "# pulumi-conntrack: table added";
const fileMarker = "# pulumi-conntrack: created this file";
const builtinChains: Record<string, string[]> = { raw: ["PREROUTING", "OUTPUT"], filter: ["INPUT", "FORWARD", "OUTPUT"] };

export interface PersistedRule {
  table: string;
  chain: string;
  /** Arguments after the chain, our comment included. */
  args: string;
  /** Goes ahead of the chain's other rules (an accept), rather than after them. */
  first: boolean;
}

function withoutOurs(content: string): string[] {
  const lines = content.split("\n");
  const kept = lines.filter((l) => !l.includes(ourComment));
  // A section we added that holds nothing but its chains goes whole.
  const out: string[] = [];
  for (let i = 0; i < kept.length; i++) {
    if (kept[i].startsWith("*") && kept[i + 1] === sectionMarker) {
      let j = i + 2;
      while (j < kept.length && kept[j].startsWith(":")) j++;
      if (kept[j] === "COMMIT") { i = j; continue; }
    }
    out.push(kept[i]);
  }
  return out;
}

export function renderRulesFile(current: string | undefined, rules: PersistedRule[]): string | undefined {
  const base = current === undefined ? [] : withoutOurs(current);
  if (rules.length === 0) {
    if (current === undefined) return undefined;
    const rest = base.join("\n");
    return rest.trim() === fileMarker ? undefined : rest;
  }
  const lines = base.length > 0 ? base : [fileMarker, ""];
  for (const table of [...new Set(rules.map((r) => r.table))].sort()) {
    let start = lines.indexOf(`*${table}`);
    if (start < 0) {
      const end = lines.length > 0 && lines[lines.length - 1] === "" ? lines.length - 1 : lines.length;
      lines.splice(end, 0, `*${table}`, sectionMarker, ...builtinChains[table].map((c) => `:${c} ACCEPT [0:0]`), "COMMIT");
      start = lines.indexOf(`*${table}`);
    }
    for (const r of rules.filter((x) => x.table === table)) {
      const line = `-A ${r.chain} ${r.args}`;
      if (r.first) {
        const at = lines.findIndex((l, i) => i > start && i < lines.indexOf("COMMIT", start) && l.startsWith(`-A ${r.chain} `));
        lines.splice(at < 0 ? lines.indexOf("COMMIT", start) : at, 0, line);
      } else {
        lines.splice(lines.indexOf("COMMIT", start), 0, line);
      }
    }
  }
  const text = lines.join("\n");
  return text.endsWith("\n") ? text : `${text}\n`;
}

/** The rules of one family that the ledger says to persist, as lines for the saved file. */
export function persistedRules(input: PersistInput, family: "v4" | "v6"): PersistedRule[] {
  const rules: PersistedRule[] = [];
  for (const item of input.items) {
    if (!item.key.startsWith(`rule:${family}:`) || item.value !== "present") continue;
    const [, , table, chain] = item.key.split(":", 4);
    const ruleKey = item.key.slice(`rule:${family}:${table}:${chain}:`.length);
    rules.push({ table, chain, args: withComment(ruleKey, ownComment), first: table === "filter" && ruleKey.endsWith("-j ACCEPT") });
  }
  return rules.sort((a, b) => (a.table + a.chain + a.args).localeCompare(b.table + b.chain + b.args));
}

/** Where iptables-services (and not netfilter-persistent) restores the rules, its files hold them instead. */
const notHere = (facts?: HostFacts) => Boolean(facts?.iptables.iptablesServices && !facts.iptables.netfilterPersistent);

export const rulesV4Backend: FileBackend = {
  path: "/etc/iptables/rules.v4",
  render: (input, current, facts) => (notHere(facts) ? current : renderRulesFile(current, persistedRules(input, "v4"))),
};

export const rulesV6Backend: FileBackend = {
  path: "/etc/iptables/rules.v6",
  render: (input, current, facts) => (notHere(facts) ? current : renderRulesFile(current, persistedRules(input, "v6"))),
};
