import type { FirewalldZone } from "../facts/firewalld";
import { portWithin } from "../facts/iptablesRules";

/**
 * How a firewalld zone treats the new packets of a port, and so its untracked ones: every
 * backend of firewalld accepts what a zone opens (its ports, its services' ports, its rich rules)
 * in state NEW or UNTRACKED (ipXtables and nftables 0.6-0.9: `--ctstate NEW,UNTRACKED`, `ct
 * state new,untracked`; 1.x: in any state), and rejects the rest as its target says. So a port
 * open in the zone keeps answering once untracked, with the same source limits, and a closed one
 * stays closed.
 * - "open": accepted from anywhere (a port, a service, a rich rule without source or
 *   destination, or the zone's target ACCEPT);
 * - "limited": accepted only where a rich rule says (a source, a destination);
 * - "closed": rejected (or dropped) as before.
 */
export type ZoneVerdict = { verdict: "open" | "limited" | "closed"; by: string };

/** "80/tcp", "8000-8100/udp" covers `port` ("80", or "1000:2000" as NotrackRule writes ranges). */
function covers(spec: string, proto: string, port: string): boolean {
  const [range, p] = spec.split("/");
  return p === proto && /^\d+(-\d+)?$/.test(range) && portWithin(range.replace("-", ":"), port);
}

/** A rich rule that accepts the port: its service or port, its family and its limits. */
function richRuleOpens(rule: string, servicePorts: Record<string, string[]>, proto: string, port: string, family: string): "open" | "limited" | undefined {
  if (/\bforward-port\b/.test(rule) || !/\saccept(\s+limit\s+value="[^"]*")?$/.test(rule)) return undefined;
  const ruleFamily = /\bfamily="?(ipv4|ipv6)"?/.exec(rule)?.[1];
  if (ruleFamily !== undefined && ruleFamily !== family) return undefined;
  const portMatch = /(?<![\w-])port port="?(\d+(?:-\d+)?)"? protocol="?(tcp|udp)"?/.exec(rule);
  const service = /\bservice name="?([\w.-]+)"?/.exec(rule)?.[1];
  const opens = portMatch ? covers(`${portMatch[1]}/${portMatch[2]}`, proto, port) : service !== undefined && (servicePorts[service] ?? []).some((s) => covers(s, proto, port));
  if (!opens) return undefined;
  return /\b(source|destination)\s/.test(rule) ? "limited" : "open";
}

export function zoneVerdict(zone: FirewalldZone, servicePorts: Record<string, string[]>, proto: string, port: string, family: string): ZoneVerdict {
  if (zone.target === "ACCEPT") return { verdict: "open", by: "its target ACCEPT" };
  const byPort = zone.ports.find((p) => covers(p, proto, port));
  if (byPort) return { verdict: "open", by: `its port ${byPort}` };
  const byService = zone.services.find((s) => (servicePorts[s] ?? []).some((p) => covers(p, proto, port)));
  if (byService) return { verdict: "open", by: `its service ${byService}` };
  const rich = zone.richRules.map((r) => ({ r, opens: richRuleOpens(r, servicePorts, proto, port, family) })).filter((x) => x.opens !== undefined);
  const unlimited = rich.find((x) => x.opens === "open");
  if (unlimited) return { verdict: "open", by: `its rich rule '${unlimited.r}'` };
  if (rich.length > 0) return { verdict: "limited", by: rich.map((x) => `its rich rule '${x.r}'`).join(", ") };
  return { verdict: "closed", by: "not in its ports, services or rich rules" };
}

/** firewalld's forward ports (its DNAT) that rewrite any of `port`: "port=80:proto=tcp:toport=8080:toaddr=". */
export function forwardsOf(zone: FirewalldZone, proto: string, port: string): string[] {
  const [from, to = from] = port.split(":").map(Number);
  return zone.forwardPorts.filter((f) => {
    const fields = Object.fromEntries(f.split(":").map((kv) => kv.split("=") as [string, string]));
    const [lo, hi = lo] = (fields.port ?? "").split("-").map(Number);
    return fields.proto === proto && lo <= to && from <= hi;
  });
}
