/**
 * iptables rules as data: parsed from iptables-save output, compared by what they match and do
 * (whatever spelling the host prints), rendered for iptables-restore. Pure.
 *
 * The same rule can be printed several ways: `-j NOTRACK` and `-j CT --notrack`; `-m state
 * --state NEW` and `-m conntrack --ctstate NEW`; with or without the implicit `-m tcp`; with or
 * without our comment. `iptables -C` treats these as different rules (which is how hand-written
 * playbooks end up duplicating them); `key` treats them as one.
 */
export interface Rule {
  table: string;
  chain: string;
  proto?: string;
  source?: string;
  dest?: string;
  inIface?: string;
  outIface?: string;
  sport?: string;
  dport?: string;
  /** Connection states matched, sorted ("NEW", "RELATED,ESTABLISHED" → "ESTABLISHED,RELATED"). */
  ctstate?: string;
  /** Matches we don't model (negations, multiport, limits...), in the order printed. */
  other: string[];
  /** "CT --notrack" (also for -j NOTRACK), "ACCEPT", "DROP", "REJECT --reject-with …", a chain... */
  target: string;
  comment?: string;
  /** The arguments after `-A CHAIN` exactly as printed: what deleting this rule must replay. */
  text: string;
}

export interface Ruleset {
  /** table → chain → policy ("-" for user chains). */
  policies: Record<string, Record<string, string>>;
  rules: Rule[];
}

/**
 * Splits a rule as a tool prints it into words, the way a POSIX shell would: double quotes with
 * backslash escapes (iptables-save: `--comment "ssh in"`), single quotes taken literally
 * (firewall-cmd joins with Python's shlex.quote: `--comment 'ssh in'`, a quote inside as '"'"').
 */
export function words(line: string): string[] {
  const out: string[] = [];
  let current = "";
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      current += line.slice(i + 1, end === -1 ? line.length : end);
      i = end === -1 ? line.length : end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) current += line[j] === "\\" && j + 1 < line.length ? line[++j] : line[j];
      i = j;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      current += line[++i];
      inWord = true;
    } else if (c === " " || c === "\t") {
      if (inWord) out.push(current);
      current = "";
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (inWord) out.push(current);
  return out;
}

const implicitMatches = new Set(["tcp", "udp", "state", "conntrack", "comment"]);

/** One `-A CHAIN ...` line of a table into a Rule. */
export function parseRule(table: string, line: string): Rule | undefined {
  const w = words(line);
  if (w[0] !== "-A" || w.length < 2) return undefined;
  const rule: Rule = { table, chain: w[1], other: [], target: "", text: line.slice(line.indexOf(w[1]) + w[1].length).trim() };
  for (let i = 2; i < w.length; i++) {
    const a = w[i];
    const next = () => w[++i] ?? "";
    if (a === "-p" || a === "--protocol") rule.proto = next();
    else if (a === "-s" || a === "--source") rule.source = next();
    else if (a === "-d" || a === "--destination") rule.dest = next();
    else if (a === "-i" || a === "--in-interface") rule.inIface = next();
    else if (a === "-o" || a === "--out-interface") rule.outIface = next();
    else if (a === "--sport" || a === "--source-port") rule.sport = next();
    else if (a === "--dport" || a === "--destination-port") rule.dport = next();
    else if (a === "--state" || a === "--ctstate") rule.ctstate = next().split(",").sort().join(",");
    else if (a === "--comment") rule.comment = next();
    else if (a === "-m" && implicitMatches.has(w[i + 1])) i++;
    else if (a === "-j" || a === "--jump") {
      const rest = w.slice(i + 1);
      rule.target = rest[0] === "NOTRACK" ? "CT --notrack" : rest.join(" ");
      break;
    } else rule.other.push(a);
  }
  return rule;
}

/** iptables-save output → policies and rules, in order. */
export function parseRuleset(save: string): Ruleset {
  const policies: Ruleset["policies"] = {};
  const rules: Rule[] = [];
  let table = "";
  for (const raw of save.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("*")) table = line.slice(1);
    else if (line.startsWith(":")) {
      const [chain, policy] = line.slice(1).split(" ");
      (policies[table] ??= {})[chain] = policy;
    } else if (line.startsWith("-A ")) {
      const rule = parseRule(table, line);
      if (rule) rules.push(rule);
    }
  }
  return { policies, rules };
}

/** What a rule matches and does, in one canonical spelling (no comment): its identity. */
export function key(r: Omit<Rule, "text" | "table" | "chain" | "comment"> & { comment?: string }): string {
  const parts: string[] = [];
  if (r.source) parts.push("-s", r.source);
  if (r.dest) parts.push("-d", r.dest);
  if (r.inIface) parts.push("-i", r.inIface);
  if (r.outIface) parts.push("-o", r.outIface);
  if (r.proto) parts.push("-p", r.proto);
  if (r.sport) parts.push("--sport", r.sport);
  if (r.dport) parts.push("--dport", r.dport);
  if (r.ctstate) parts.push("-m", "conntrack", "--ctstate", r.ctstate);
  parts.push(...r.other);
  parts.push("-j", r.target);
  return parts.join(" ");
}

/** The arguments that add a rule with this key and comment (for iptables-restore). */
export function withComment(ruleKey: string, comment: string): string {
  const j = ruleKey.lastIndexOf(" -j ");
  const at = ruleKey.startsWith("-j ") ? 0 : j;
  const quoted = `"${comment.replace(/["\\]/g, "")}"`;
  return at === 0 ? `-m comment --comment ${quoted} ${ruleKey}` : `${ruleKey.slice(0, at)} -m comment --comment ${quoted}${ruleKey.slice(at)}`;
}

/** The comment every rule we add carries: how we find exactly our rules again. */
export const ownComment = "pulumi-conntrack";
export const isOurs = (r: Rule) => r.comment?.startsWith(ownComment) ?? false;

/** Whether port `p` ("80" or "1000:2000") lies within a rule's port spec (absent: any port). */
export function portWithin(spec: string | undefined, p: string): boolean {
  if (spec === undefined) return true;
  const [lo, hi = lo] = spec.split(":").map(Number);
  const [a, b = a] = p.split(":").map(Number);
  return a >= lo && b <= hi;
}
