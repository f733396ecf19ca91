import type { HostFacts } from "../facts/host";
import { hasToken, iptablesConfigPath, withToken } from "../persistence/iptablesConfig";
import { isOurs, key, ownComment, parseRuleset, withComment, words, type Ruleset } from "../facts/iptablesRules";
import { iptablesTool, restoreLines } from "../facts/firewallRules";
import { pipeInto, runIf, writeFile, writeValue, type Step } from "./commands";
import { serviceEnabled, serviceRunning } from "./serviceItems";
import { moduleDriver } from "./moduleItems";
import { nftDriver } from "./nftItems";
import { firewalldDriver } from "./firewalldItems";

/**
 * The kinds of item the ledger records, and for each how to read its live value from the facts
 * and how to set it. An item key is "<kind>:<name>":
 * - "sysctl:net.netfilter.nf_conntrack_max": a sysctl;
 * - "param:nf_conntrack.hashsize": a module parameter under /sys/module;
 * - "token:/etc/sysconfig/iptables-config:.nf_conntrack": a token of IPTABLES_SYSCTL_LOAD_LIST;
 * - "rule:v4:raw:PREROUTING:-p tcp --dport 80 -j CT --notrack": an iptables rule, by what it does;
 * - "module:nf_conntrack": a kernel module, "loaded" or "absent" (moduleItems.ts);
 * - "nft:inet:filter:input:tcp dport 80 ct state untracked accept": a native nftables rule (nftItems.ts);
 * - "firewalld:port:public:80/tcp", "firewalld:direct:ipv4 raw PREROUTING 0 ...": firewalld state (firewalldItems.ts).
 * A live value of undefined means "can't be read now" (the module isn't loaded): nothing to
 * compare, and persistence applies the value when the module loads.
 */
export interface ItemDriver {
  live(name: string, facts: HostFacts): string | null | undefined;
  /**
   * Steps that make each item's live value `to` (null: the item should not exist). All changes
   * of one kind come at once, so a kind can apply them in one transaction (iptables-restore).
   */
  set(changes: Array<{ name: string; to: string | null }>, facts: HostFacts): Step[];
  /**
   * For a kind whose changes can cut traffic (SSH among it): steps that put every item of this
   * kind back as `facts` (read before the apply) found it, `changed` being the names the apply
   * changes. The lockout guard runs them on the host if the change locks us out.
   */
  revert?(facts: HostFacts, changed: string[]): Step[];
}

/** A driver whose items are set one by one. */
function oneByOne(live: ItemDriver["live"], setOne: (name: string, to: string | null, facts: HostFacts) => Step[]): ItemDriver {
  return { live, set: (changes, facts) => changes.flatMap((c) => setOne(c.name, c.to, facts)) };
}

export const present = "present";
export const absent = "absent";

const sysctl = oneByOne(
  // A key the kernel doesn't list exists nowhere while its module is loaded (null); before the
  // module loads it can't be told (undefined).
  (name, facts) => facts.conntrackSysctl.values[name] ?? (["loaded", "builtin"].includes(facts.conntrackModule.state) ? null : undefined),
  (name, value) => (value === null ? [] : [writeValue(`set ${name} to ${value}`, `/proc/sys/${name.replace(/\./g, "/")}`, value)]),
);

const param = oneByOne(
  (name, facts) => {
    const [module, p] = name.split(".");
    if (p !== "hashsize" || facts.conntrackModule.name !== module || !["loaded", "builtin"].includes(facts.conntrackModule.state)) return undefined;
    return facts.conntrackTable.hashsize === undefined ? undefined : String(facts.conntrackTable.hashsize);
  },
  (name, value) => {
    const [module, p] = name.split(".");
    return value === null ? [] : [writeValue(`set ${module} ${p} to ${value}`, `/sys/module/${module}/parameters/${p}`, value)];
  },
);

const token = oneByOne(
  (name, facts) => {
    const { path, token: t } = splitToken(name);
    const content = facts.files[path];
    if (content === undefined) return undefined;
    return hasToken(content, t) ? present : absent;
  },
  (name, value, facts) => {
    const { path, token: t } = splitToken(name);
    const content = facts.files[path];
    if (content === undefined) return [];
    return writeFile(path, withToken(content, t, value === present));
  },
);

function splitToken(name: string): { path: string; token: string } {
  const colon = name.lastIndexOf(":");
  const path = name.slice(0, colon);
  if (path !== iptablesConfigPath) throw new Error(`unknown token file ${path}`);
  return { path, token: name.slice(colon + 1) };
}

const parsed = new Map<string, Ruleset>();
function rulesetOf(save: string): Ruleset {
  let rs = parsed.get(save);
  if (!rs) {
    rs = parseRuleset(save);
    parsed.clear(); // one host's rulesets at a time are enough
    parsed.set(save, rs);
  }
  return rs;
}

function splitRule(name: string): { family: "v4" | "v6"; table: string; chain: string; ruleKey: string } {
  const [family, table, chain] = name.split(":", 3);
  return { family: family as "v4" | "v6", table, chain, ruleKey: name.slice(family.length + table.length + chain.length + 3) };
}

/**
 * iptables rules: present when the host has a rule that matches and does the same, whatever its
 * spelling or comment; ours are added with our comment and removed by replaying exactly the line
 * iptables-save printed. All changes of a family go in one `iptables-restore --noflush`.
 */
const rule: ItemDriver = {
  live(name, facts) {
    if (facts.iptables.backend === "none") return undefined;
    const { family, table, chain, ruleKey } = splitRule(name);
    const rs = rulesetOf(family === "v4" ? facts.iptables.v4 : facts.iptables.v6);
    return rs.rules.some((r) => r.table === table && r.chain === chain && key(r) === ruleKey) ? present : absent;
  },
  set(changes, facts) {
    const steps: Step[] = [];
    for (const family of ["v4", "v6"] as const) {
      const rs = rulesetOf(family === "v4" ? facts.iptables.v4 : facts.iptables.v6);
      const byTable = new Map<string, string[]>();
      for (const c of changes) {
        const { family: f, table, chain, ruleKey } = splitRule(c.name);
        if (f !== family) continue;
        const lines = byTable.get(table) ?? [];
        if (c.to === present) {
          // An accept goes ahead of the chain's rules (and any DROP or REJECT among them).
          lines.push(`${ruleKey.endsWith("-j ACCEPT") ? `-I ${chain} 1` : `-A ${chain}`} ${withComment(ruleKey, ownComment)}`);
        } else {
          for (const r of rs.rules) if (r.table === table && r.chain === chain && key(r) === ruleKey && isOurs(r)) lines.push(`-D ${chain} ${r.text}`);
        }
        byTable.set(table, lines);
      }
      if (byTable.size === 0) continue;
      const input = [...byTable].map(([table, lines]) => `*${table}\n${lines.join("\n")}\nCOMMIT\n`).join("");
      const summary = [...byTable].map(([t, l]) => `${t} ${l.length}`).join(", ");
      steps.push(pipeInto(`change ${family === "v4" ? "iptables" : "ip6tables"} rules in one transaction (${summary})`, input, ...restoreLines(family)));
    }
    return steps;
  },
  /**
   * Undoes exactly the lines the apply adds or removes, one by one, and nothing else: rules that
   * Docker, fail2ban or kube-proxy add meanwhile stay. A line already gone (or already back) is
   * left as it is, so the revert can run after an apply that stopped half way.
   */
  revert(facts, changed) {
    const steps: Step[] = [];
    for (const name of changed) {
      const { family, table, chain, ruleKey } = splitRule(name);
      const inChain = rulesetOf(family === "v4" ? facts.iptables.v4 : facts.iptables.v6).rules.filter((r) => r.table === table && r.chain === chain);
      const tool = (...more: string[]) => iptablesTool(family, table, ...more);
      if (rule.live(name, facts) === absent) {
        const spec = words(withComment(ruleKey, ownComment));
        steps.push(runIf(`take out the ${table} ${chain} rule the change added (${ruleKey})`, "succeeds", tool("-C", chain, ...spec), tool("-D", chain, ...spec)));
        continue;
      }
      for (const r of inChain.filter((x) => key(x) === ruleKey && isOurs(x))) {
        const spec = words(r.text);
        // Where it was; at the end when the chain has grown shorter since.
        const at = String(inChain.indexOf(r) + 1);
        steps.push(runIf(`put back the ${table} ${chain} rule the change removed (${ruleKey})`, "fails", tool("-C", chain, ...spec), tool("-I", chain, at, ...spec), tool("-A", chain, ...spec)));
      }
    }
    return steps;
  },
};

const drivers: Record<string, ItemDriver> = { sysctl, param, token, rule, "service-running": serviceRunning, "service-enabled": serviceEnabled, module: moduleDriver, nft: nftDriver, firewalld: firewalldDriver };

export function driverOf(itemKey: string): { driver: ItemDriver; name: string } {
  const colon = itemKey.indexOf(":");
  const driver = drivers[itemKey.slice(0, colon)];
  if (!driver) throw new Error(`unknown item kind in ${itemKey}`);
  return { driver, name: itemKey.slice(colon + 1) };
}

export function liveValue(itemKey: string, facts: HostFacts): string | null | undefined {
  const { driver, name } = driverOf(itemKey);
  return driver.live(name, facts);
}
