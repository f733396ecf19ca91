import type { IptablesFacts } from "../facts/iptables";
import { parseRuleset, words } from "../facts/iptablesRules";
import type { KernelModuleFacts } from "../facts/modules";
import { resolveModule } from "./resolve";

/** Matches and targets that work on conntrack entries: a rule using one needs nf_conntrack. */
const conntrackMatches = new Set(["state", "conntrack", "connmark", "connlimit", "connbytes", "connlabel", "helper", "cluster", "ipvs"]);
const conntrackTargets = new Set(["CT", "NOTRACK", "CONNMARK", "CONNSECMARK", "SYNPROXY", "CLUSTERIP"]);
const natTargets = new Set(["MASQUERADE", "SNAT", "DNAT", "REDIRECT", "NETMAP"]);
const builtinTargets = new Set(["ACCEPT", "DROP", "RETURN", "QUEUE"]);

/** Something in the ruleset that keeps modules in use, as a user reads it in an error. */
export interface RuleUser {
  /** "iptables -t filter -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT". */
  what: string;
  modules: Set<string>;
}

/**
 * The modules each iptables rule of the host keeps in use: the module of each match and target
 * (resolved as the kernel resolves them when it loads one for a rule), nf_conntrack for those
 * that use connection tracking, nf_nat for NAT; and a nat table, which holds NAT hooks while it
 * exists even when empty. iptables-nft serves `-m state` through xt_conntrack.
 */
export function ruleUsers(ipt: IptablesFacts, k: KernelModuleFacts): RuleUser[] {
  const users: RuleUser[] = [];
  for (const [family, save] of [["iptables", ipt.v4], ["ip6tables", ipt.v6]] as const) {
    const rs = parseRuleset(save);
    for (const table of Object.keys(rs.policies)) {
      if (table !== "nat") continue;
      users.push({ what: `the ${family} nat table (it exists, so NAT hooks stay registered)`, modules: new Set(["nf_conntrack", "nf_nat"]) });
    }
    for (const r of rs.rules) {
      const modules = new Set<string>();
      const w = words(r.text);
      let tracks = r.table === "nat";
      let nat = r.table === "nat";
      for (let i = 0; i < w.length - 1; i++) {
        const ext = w[i + 1];
        if (w[i] === "-m" || w[i] === "--match") {
          if (conntrackMatches.has(ext)) tracks = true;
          if (ext === "state" && ipt.backend === "nft") modules.add("xt_conntrack");
        } else if (w[i] === "-j" || w[i] === "--jump") {
          if (builtinTargets.has(ext) || rs.policies[r.table]?.[ext] !== undefined) continue;
          if (conntrackTargets.has(ext)) tracks = true;
          if (natTargets.has(ext)) tracks = nat = true;
        } else continue;
        const resolved = resolveModule(`xt_${ext}`, k);
        if (resolved.found) modules.add(resolved.module);
      }
      if (tracks) modules.add("nf_conntrack");
      if (nat) modules.add("nf_nat");
      if (modules.size > 0) users.push({ what: `${family} -t ${r.table} -A ${r.chain} ${r.text}`, modules });
    }
  }
  return users;
}
