import { jumpTarget, lineKey, parseRule, type Rule } from "./iptablesRules";

/**
 * iptables rulesets changed by lines, planned purely: a RulesetEdit holds one family's ruleset as
 * the host will have it, and each change both updates it and writes the `iptables-restore
 * --noflush` line that makes it, so a planner can choose every line's place (`-I CHAIN N`) from
 * what the lines before it did, and knows what the host holds afterwards.
 *
 * Only lines measured to leave the rest of a table alone under --noflush, with iptables-nft and
 * iptables-legacy (1.8.9): `-D CHAIN spec` (fails if the rule is gone), `-I CHAIN N spec` (fails
 * past the chain's end + 1), `-N CHAIN` (fails if it exists), `-X CHAIN`, and `:CHAIN POLICY [0:0]`
 * for a built-in chain, which sets its policy without flushing it. Never `:CHAIN - [0:0]` for a
 * user chain: under --noflush that empties an existing one (measured: a fail2ban ban was lost).
 */
interface Chain {
  name: string;
  /** "ACCEPT", "DROP"... for a built-in chain; "-" for a user chain. */
  policy: string;
  rules: Rule[];
}
interface Table {
  name: string;
  chains: Chain[];
}

/** The built-in chains of each table, as iptables-save lists them. */
const builtins: Record<string, string[]> = {
  raw: ["PREROUTING", "OUTPUT"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  security: ["INPUT", "FORWARD", "OUTPUT"],
};

/** iptables-save output → its tables, chains (in the order declared) and rules. */
export function tablesOf(save: string): Table[] {
  const tables: Table[] = [];
  let table: Table | undefined;
  let chains = new Map<string, Chain>();
  for (const raw of save.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("*")) {
      tables.push((table = { name: line.slice(1), chains: [] }));
      chains = new Map();
    } else if (line.startsWith(":") && table) {
      const [name, policy] = line.slice(1).split(" ");
      if (!chains.has(name)) table.chains.push(chains.set(name, { name, policy, rules: [] }).get(name)!);
    } else if (line.startsWith("-A ") && table) {
      const rule = parseRule(table.name, line);
      if (rule) chains.get(rule.chain)?.rules.push(rule);
    }
  }
  return tables;
}

/** Tables → iptables-save's text (without counters or comments). */
export function saveText(tables: Table[]): string {
  return tables
    .map((t) => [`*${t.name}`, ...t.chains.map((c) => `:${c.name} ${c.policy} [0:0]`), ...t.chains.flatMap((c) => c.rules.map((r) => `-A ${c.name} ${r.text}`)), "COMMIT", ""].join("\n"))
    .join("");
}

/** `save` with each table that `loaded` names replaced by that table: what a plain `iptables-restore` of `loaded` leaves. */
export function replaceTables(save: string, loaded: string): string {
  const replacing = tablesOf(loaded);
  const kept = tablesOf(save).filter((t) => !replacing.some((r) => r.name === t.name));
  return saveText([...kept, ...replacing]);
}

/** `save` with the named tables emptied: built-in chains ACCEPT, no user chains (`iptables -t T -F; -X; -P … ACCEPT`). */
export function flushTables(save: string, names: string[]): string {
  return saveText(tablesOf(save).map((t) => (names.includes(t.name) ? { name: t.name, chains: t.chains.filter((c) => c.policy !== "-").map((c) => ({ ...c, policy: "ACCEPT", rules: [] })) } : t)));
}

const isBuiltin = (c: Chain) => c.policy !== "-";

/** The rule's identity for "is this line there?", computed once per line text (a big ruleset is parsed several times per plan). */
const keys = new Map<string, string>();
function keyOf(r: Rule): string {
  let k = keys.get(r.text);
  if (k === undefined) {
    if (keys.size > 200_000) keys.clear();
    keys.set(r.text, (k = lineKey(r.text)));
  }
  return k;
}

export class RulesetEdit {
  private readonly tables: Table[];
  /** "table chain" → the chain: lookups stay cheap on hosts with thousands of chains (kube-proxy). */
  private readonly index = new Map<string, Chain>();
  private readonly lines = new Map<string, string[]>();
  /** The chains created and the rules inserted so far, in order. */
  readonly added: Array<{ table: string; chain: string; rule?: Rule }> = [];

  constructor(save: string) {
    this.tables = tablesOf(save);
    for (const t of this.tables) for (const c of t.chains) this.index.set(`${t.name} ${c.name}`, c);
  }

  /** The tables, each chain's rules in order, as the host holds them after the lines so far. */
  get state(): ReadonlyArray<{ name: string; chains: ReadonlyArray<{ name: string; policy: string; rules: readonly Rule[] }> }> {
    return this.tables;
  }

  chain(table: string, name: string): Chain | undefined {
    return this.index.get(`${table} ${name}`);
  }

  /** A table the host doesn't have yet comes with its built-in chains (iptables-restore creates them so). */
  private table(name: string): Table {
    let t = this.tables.find((x) => x.name === name);
    if (!t) {
      this.tables.push((t = { name, chains: (builtins[name] ?? []).map((c) => ({ name: c, policy: "ACCEPT", rules: [] })) }));
      for (const c of t.chains) this.index.set(`${name} ${c.name}`, c);
    }
    return t;
  }

  private write(table: string, line: string): void {
    const lines = this.lines.get(table);
    if (lines) lines.push(line);
    else this.lines.set(table, [line]);
  }

  newChain(table: string, name: string): void {
    const chain = { name, policy: "-", rules: [] };
    this.table(table).chains.push(chain);
    this.index.set(`${table} ${name}`, chain);
    this.added.push({ table, chain: name });
    this.write(table, `-N ${name}`);
  }

  deleteChain(table: string, name: string): void {
    const t = this.table(table);
    t.chains = t.chains.filter((c) => c.name !== name);
    this.index.delete(`${table} ${name}`);
    this.write(table, `-X ${name}`);
  }

  setPolicy(table: string, name: string, policy: string): void {
    this.table(table);
    const chain = this.chain(table, name);
    if (!chain || !isBuiltin(chain) || chain.policy === policy) return;
    chain.policy = policy;
    this.write(table, `:${name} ${policy} [0:0]`);
  }

  /** Inserts `rule` so that it becomes the chain's rule number `at` + 1; returns the rule as the chain now holds it. */
  insert(table: string, name: string, at: number, rule: Rule): Rule {
    const chain = this.chain(table, name);
    if (!chain) throw new Error(`no chain ${name} in table ${table}`);
    const added = { ...rule, table, chain: name };
    chain.rules.splice(at, 0, added);
    this.added.push({ table, chain: name, rule: added });
    this.write(table, `-I ${name} ${at + 1} ${rule.text}`);
    return added;
  }

  /** Deletes exactly this rule (the line iptables-save printed). */
  remove(table: string, name: string, rule: Rule): void {
    const chain = this.chain(table, name);
    const at = chain?.rules.indexOf(rule) ?? -1;
    if (!chain || at < 0) throw new Error(`no such rule in ${table} ${name}: ${rule.text}`);
    chain.rules.splice(at, 1);
    this.write(table, `-D ${name} ${rule.text}`);
  }

  /** Whether any rule of `table` jumps or goes to `name`. */
  referenced(table: string, name: string): boolean {
    return (this.tables.find((t) => t.name === table)?.chains ?? []).some((c) => c.rules.some((r) => jumpTarget(r.text) === name));
  }

  /** The iptables-restore --noflush input of every line so far, one section per table; "" when none. */
  input(): string {
    return [...this.lines].map(([table, lines]) => `*${table}\n${lines.join("\n")}\nCOMMIT\n`).join("");
  }

  /** What the host holds after these lines, as iptables-save would print it (no counters). */
  save(): string {
    return saveText(this.tables);
  }
}

/** Whose rules and user chains a removal takes out or a put-back brings in. */
export interface Party {
  rule(r: Rule): boolean;
  /** For user chains only. */
  chain(table: string, name: string): boolean;
}

/**
 * Takes out every rule of `party`, each by its own line (`-D`), sets every built-in chain whose
 * policy isn't ACCEPT to ACCEPT, and deletes the user chains of `party` that are then empty and
 * that no rule left jumps to. Everything else stays as it is.
 */
export function takeOut(edit: RulesetEdit, party: Party): void {
  for (const table of edit.state) {
    for (const chain of table.chains) for (const r of [...chain.rules]) if (party.rule(r)) edit.remove(table.name, chain.name, r);
  }
  for (const table of edit.state) for (const chain of table.chains) if (chain.policy !== "-" && chain.policy !== "ACCEPT") edit.setPolicy(table.name, chain.name, "ACCEPT");
  for (const table of edit.state) {
    for (const chain of [...table.chains]) {
      if (chain.policy === "-" && party.chain(table.name, chain.name) && chain.rules.length === 0 && !edit.referenced(table.name, chain.name)) edit.deleteChain(table.name, chain.name);
    }
  }
}

/**
 * Puts back the rules of `party` that `reference` (an iptables-save) has and the edit lacks, each
 * at its place relative to the rules around it: right after the nearest rule before it in
 * `reference` that the chain holds, at the top when there is none. Chains go first (`-N`): those
 * of `party` that are missing, and any a rule put back jumps to. `policies`: built-in chains get
 * the policy `reference` gives them. A rule the chain already holds (the same line, however a file
 * spelt it) is never added twice; nothing is deleted.
 */
export function putBack(edit: RulesetEdit, reference: string, party: Party, options: { policies?: boolean } = {}): void {
  for (const table of tablesOf(reference)) {
    const targets = new Set(table.chains.flatMap((c) => c.rules.filter((r) => party.rule(r)).map((r) => jumpTarget(r.text))));
    for (const chain of table.chains) {
      if (chain.policy === "-" && !edit.chain(table.name, chain.name) && (party.chain(table.name, chain.name) || targets.has(chain.name))) edit.newChain(table.name, chain.name);
    }
    for (const chain of table.chains) {
      if (options.policies && isBuiltin(chain)) edit.setPolicy(table.name, chain.name, chain.policy);
      const current = edit.chain(table.name, chain.name);
      if (!current) continue;
      const matched = new Set<Rule>();
      // How many of the chain's rules with each key are still unmatched: a missing rule is known at once.
      const unmatched = new Map<string, number>();
      for (const c of current.rules) unmatched.set(keyOf(c), (unmatched.get(keyOf(c)) ?? 0) + 1);
      let at = 0;
      for (const r of chain.rules) {
        const k = keyOf(r);
        if ((unmatched.get(k) ?? 0) > 0) {
          const free = (i: number) => !matched.has(current.rules[i]) && keyOf(current.rules[i]) === k;
          let j = at;
          while (j < current.rules.length && !free(j)) j++;
          if (j === current.rules.length) for (j = 0; !free(j); j++);
          matched.add(current.rules[j]);
          unmatched.set(k, unmatched.get(k)! - 1);
          if (j >= at) at = j + 1;
        } else if (party.rule(r)) {
          matched.add(edit.insert(table.name, chain.name, at++, r));
        }
      }
    }
  }
}
