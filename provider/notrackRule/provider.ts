import { notrackRuleSettingsSchema, type NotrackRuleSettings } from "../../sdk/notrackRule.schema";
import { engineProvider } from "../engine/dynamicProvider";
import type { ResourceSpec } from "../engine/resource";
import type { ResourceKind } from "../engine/transaction";
import { splitNftItem } from "../engine/nftItems";
import { ourTable } from "../facts/nftRules";
import { rulesV4Backend, rulesV6Backend } from "../persistence/netfilterPersistent";
import { nftablesConfBackend, nftIncludeBackend } from "../persistence/nftablesInclude";
import { sysconfigIp6tablesBackend, sysconfigIptablesBackend } from "../persistence/iptablesServices";
import { backendOf, notrackRuleFacts, wantNotrackRule } from "./plan";

export const notrackRuleKind: ResourceKind<NotrackRuleSettings> = {
  type: "NotrackRule",
  facts: [...notrackRuleFacts],
  backends: [rulesV4Backend, rulesV6Backend, nftIncludeBackend, nftablesConfBackend, sysconfigIptablesBackend, sysconfigIp6tablesBackend],
  want: wantNotrackRule,
  // The CT target needs conntrack loaded; persisted rules need the service that restores them.
  intents: (settings, facts) => ({
    needs: ["module nf_conntrack", ...(settings.persist ? persistedBy(facts) : [])],
    removes: [],
  }),
};

function persistedBy(facts: Parameters<typeof backendOf>[0]): string[] {
  const backend = backendOf(facts);
  if (backend === "nftables") return ["service nftables"];
  if (backend === "firewalld") return ["service firewalld"];
  if (backend === "iptables-services") return ["service iptables"];
  return backend === "iptables" && facts.iptables.netfilterPersistent ? ["service netfilter-persistent"] : [];
}

/** "rule:v4:raw:PREROUTING:-p tcp --dport 80 -j CT --notrack" → "iptables -t raw -A PREROUTING -p tcp --dport 80 -j CT --notrack". */
export function ruleDisplay(item: string): string {
  if (item.startsWith("firewalld:port:")) {
    const [zone, port] = item.slice("firewalld:port:".length).split(":");
    return `firewall-cmd --zone=${zone} --add-port=${port}`;
  }
  if (item.startsWith("firewalld:direct:")) return `firewall-cmd --direct --add-rule ${item.slice("firewalld:direct:".length)}`;
  if (item.startsWith("nft:")) {
    const { family, table, chain, rule } = splitNftItem(item.slice(4));
    return `nft ${family === ourTable.family && table === ourTable.name ? "add" : "insert"} rule ${family} ${table} ${chain} ${rule}`;
  }
  const [, family, table, chain] = item.split(":", 4);
  const rule = item.slice(`rule:${family}:${table}:${chain}:`.length);
  return `${family === "v4" ? "iptables" : "ip6tables"} -t ${table} -A ${chain} ${rule}`;
}

/** What the engine needs to know of a NotrackRule, for both front doors. */
export const notrackRuleSpec: ResourceSpec<NotrackRuleSettings> = {
  kind: notrackRuleKind,
  schema: notrackRuleSettingsSchema,
  settingFields: ["ports", "protocol", "side", "ipVersions", "acceptUntracked", "persist", "force"],
  defaults: { protocol: "tcp", side: "both", ipVersions: [4], acceptUntracked: true, persist: true, force: false },
  display: ruleDisplay,
};

export const notrackRuleProvider = engineProvider(notrackRuleSpec);

