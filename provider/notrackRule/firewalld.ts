import type { NotrackRuleSettings } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../facts/host";
import { currentLedger } from "../engine/plan";
import type { Wanted } from "../engine/transaction";
import { directions } from "./directions";
import { forwardsOf, zoneVerdict } from "./firewalldZones";

/** Ledger item key of a firewalld direct rule (earlier versions also claimed "firewalld:port:<zone>:<port>/<proto>"). */
export const firewalldDirectItem = (rule: string) => `firewalld:direct:${rule}`;

/**
 * NotrackRule on a host whose firewall is firewalld: the notrack rules are firewalld direct rules
 * (raw table), runtime and permanent (permanent: what firewalld restores at restart and boot, so
 * it is the persistence). No accept of ours is needed, nor could one come before firewalld's
 * rules: firewalld accepts the untracked packets of what a zone opens, with the zone's limits,
 * and rejects the rest, as it did their new connections (firewalldZones.ts). So a port open in
 * the zone keeps answering, a closed one stays closed, and nothing is opened. Only
 * `side: "server"`: untracked replies to this host's own connections would meet firewalld's reject.
 */
export function wantFirewalld(settings: NotrackRuleSettings, facts: HostFacts, self?: { label: string }): Wanted {
  const fw = facts.firewalld;
  const blockers: string[] = [];
  const warnings: string[] = [];
  const claims: Wanted["claims"] = {};
  const value = settings.persist ? "present" : "runtime";
  const proto = settings.protocol;
  if (!fw.running) blockers.push("firewalld is active but firewall-cmd didn't answer: check `firewall-cmd --state`");
  if (settings.side !== "server") blockers.push(`firewalld: side "${settings.side}" would take this host's own connections to port(s) ${settings.ports.join(", ")} out of tracking, and firewalld rejects their untracked replies (no accept of ours can come before its rules): use side: "server"`);
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(fw.zone) && fw.running) blockers.push(`firewalld: the default zone name "${fw.zone}" can't be used safely in a command`);
  if (fw.running && fw.zones[fw.zone] === undefined) blockers.push(`firewalld: \`firewall-cmd --info-zone=${fw.zone}\` printed nothing, so what the default zone opens is unknown: check firewalld`);
  const families = [...new Set(settings.ipVersions)].sort().map((v) => (v === 4 ? "ipv4" : "ipv6"));
  const zones = Object.entries(fw.zones).sort(([a], [b]) => a.localeCompare(b));
  for (const port of settings.ports.map(String)) {
    const shown = `${port.replace(":", "-")}/${proto}`;
    for (const family of families) {
      for (const d of directions("server")) {
        const chain = d.chain === "INPUT" ? "PREROUTING" : "OUTPUT";
        claims[firewalldDirectItem(`${family} raw ${chain} 0 -p ${proto} --${d.field} ${port} -j CT --notrack`)] = { value, persist: settings.persist };
      }
      for (const [name, zone] of zones) {
        const { verdict, by } = zoneVerdict(zone, fw.servicePorts, proto, port, family);
        if (verdict === "open") continue;
        if (!settings.acceptUntracked) {
          blockers.push(`firewalld: untracked ${family} packets of port ${shown} would be rejected in zone ${name} (${verdict === "limited" ? `accepted only as ${by} says` : by}): set acceptUntracked: true (the port then stays as open as it is now), or open the port in that zone`);
        } else if (verdict === "closed") {
          warnings.push(`firewalld: port ${shown} isn't open to ${family} in zone ${name} (${by}); its untracked packets are rejected there, as its new connections are now: open it in that zone (firewall-cmd --zone=${name} --add-port=${shown}) if it should answer`);
        }
      }
    }
    for (const [name, zone] of zones) {
      for (const f of forwardsOf(zone, proto, port)) {
        const message = `firewalld: forward port "${f}" of zone ${name} rewrites port ${shown}, and untracked packets skip NAT`;
        if (settings.force) warnings.push(`${message} (going ahead: force is set)`);
        else blockers.push(`${message}: drop that port from the forward, or set force: true`);
      }
    }
  }
  warnings.push(...portsOpenedByAnEarlierVersion(facts, self));
  if (!settings.persist) warnings.push("persist is false: only firewalld's runtime state changes; `systemctl restart firewalld` or a reboot drops the rules");
  return { claims, warnings, blockers, prepare: [] };
}

/**
 * Earlier versions opened every listed port in the default zone. This one claims no port, so the
 * next update releases them: a port that was closed before the first owner came closes again.
 * The preview says so.
 */
function portsOpenedByAnEarlierVersion(facts: HostFacts, self?: { label: string }): string[] {
  if (!self) return [];
  const out: string[] = [];
  for (const [key, item] of Object.entries(currentLedger(facts).items)) {
    if (!key.startsWith("firewalld:port:")) continue;
    const owners = Object.values(item.owners);
    if (!owners.some((c) => c.label === self.label) || owners.some((c) => c.label !== self.label)) continue;
    if (item.original !== null && item.original !== "absent") continue;
    const [zone, port] = key.slice("firewalld:port:".length).split(":");
    out.push(`firewalld: port ${port} was opened in zone ${zone} for this resource by an earlier version of pulumi-conntrack and closes again now, as it was before (a NotrackRule no longer opens ports: a closed port stays closed); open it yourself (firewall-cmd --zone=${zone} --add-port=${port}, with and without --permanent) if it should answer`);
  }
  return out;
}
