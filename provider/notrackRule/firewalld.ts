import type { NotrackRuleSettings } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../facts/host";
import type { Wanted } from "../engine/transaction";
import { directions } from "./directions";

/** Ledger item keys of firewalld state: a port open in a zone, a direct rule. */
export const firewalldPortItem = (zone: string, port: string, proto: string) => `firewalld:port:${zone}:${port.replace(":", "-")}/${proto}`;
export const firewalldDirectItem = (rule: string) => `firewalld:direct:${rule}`;

/**
 * NotrackRule on a host whose firewall is firewalld. Its nftables backend drops in its own
 * chains, where no iptables accept reaches, but accepts `ct state new,untracked` for a port open
 * in the zone: so the port is opened in the default zone, and the notrack rules are firewalld
 * direct rules (raw table), both runtime and permanent (permanent: what firewalld restores at
 * restart and boot, so it is the persistence). Only `side: "server"`: untracked replies to this
 * host's own connections would meet firewalld's reject, and nothing of ours can accept them there.
 */
export function wantFirewalld(settings: NotrackRuleSettings, facts: HostFacts): Wanted {
  const fw = facts.firewalld;
  const blockers: string[] = [];
  const warnings: string[] = [];
  const claims: Wanted["claims"] = {};
  const value = settings.persist ? "present" : "runtime";
  if (!fw.running) blockers.push("firewalld is active but firewall-cmd didn't answer: check `firewall-cmd --state`");
  if (settings.side !== "server") blockers.push(`firewalld: side "${settings.side}" would take this host's own connections to port(s) ${settings.ports.join(", ")} out of tracking, and firewalld rejects their untracked replies (no accept of ours can come before its rules): use side: "server"`);
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(fw.zone) && fw.running) blockers.push(`firewalld: the default zone name "${fw.zone}" can't be used safely in a command`);
  if (!settings.acceptUntracked) warnings.push("firewalld: acceptUntracked is false, but the port is opened in the zone anyway: firewalld accepts untracked packets only for open ports");
  for (const port of settings.ports.map(String)) {
    claims[firewalldPortItem(fw.zone, port, settings.protocol)] = { value, persist: settings.persist };
    for (const family of [...new Set(settings.ipVersions)].sort().map((v) => (v === 4 ? "ipv4" : "ipv6"))) {
      for (const d of directions("server")) {
        const chain = d.chain === "INPUT" ? "PREROUTING" : "OUTPUT";
        claims[firewalldDirectItem(`${family} raw ${chain} 0 -p ${settings.protocol} --${d.field} ${port} -j CT --notrack`)] = { value, persist: settings.persist };
      }
    }
  }
  if (!settings.persist) warnings.push("persist is false: only firewalld's runtime state changes; `systemctl restart firewalld` or a reboot drops the rules");
  return { claims, warnings, blockers, prepare: [] };
}
