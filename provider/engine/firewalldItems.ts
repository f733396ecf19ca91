import type { HostFacts } from "../facts/host";
import { words } from "../facts/iptablesRules";
import { run, type Step } from "./commands";

/**
 * firewalld state, items "firewalld:port:<zone>:<port>/<proto>" (a port open in a zone) and
 * "firewalld:direct:<ipv4|ipv6> <table> <chain> <priority> <args>" (a direct rule). Each is kept
 * twice by firewalld, runtime and permanent, so the value says which: "present" (both),
 * "runtime", "permanent" or "absent". The ledger's original value is how destroy leaves the zone
 * as it was found (a port that was open stays open).
 */
type Where = { runtime: boolean; permanent: boolean };
const valueOf = (w: Where) => (w.runtime && w.permanent ? "present" : w.runtime ? "runtime" : w.permanent ? "permanent" : "absent");
const whereOf = (value: string | null): Where => ({ runtime: value === "present" || value === "runtime", permanent: value === "present" || value === "permanent" });

function split(name: string): { kind: "port" | "direct"; zone: string; rest: string } {
  if (name.startsWith("port:")) {
    const [zone, ...rest] = name.slice(5).split(":");
    return { kind: "port", zone, rest: rest.join(":") };
  }
  return { kind: "direct", zone: "", rest: name.slice(7) };
}

export function firewalldLive(name: string, facts: HostFacts): string | null | undefined {
  const fw = facts.firewalld;
  if (!fw.running) return undefined;
  const { kind, zone, rest } = split(name);
  if (kind === "port") {
    if (zone !== fw.zone) return undefined;
    return valueOf({ runtime: fw.runtimePorts.includes(rest), permanent: fw.permanentPorts.includes(rest) });
  }
  return valueOf({ runtime: fw.runtimeDirect.includes(rest), permanent: fw.permanentDirect.includes(rest) });
}

function commands(name: string, from: Where, to: Where): Step[] {
  const { kind, zone, rest } = split(name);
  const steps: Step[] = [];
  for (const permanent of [false, true]) {
    const have = permanent ? from.permanent : from.runtime;
    const want = permanent ? to.permanent : to.runtime;
    if (have === want) continue;
    const scope = permanent ? ["--permanent"] : [];
    const what = `${want ? "add" : "remove"} ${permanent ? "permanent" : "runtime"} firewalld`;
    if (kind === "port") steps.push(run(`${what} port ${rest} in zone ${zone}`, "firewall-cmd", "--quiet", ...scope, `--zone=${zone}`, `--${want ? "add" : "remove"}-port=${rest}`));
    else steps.push(run(`${what} direct rule ${rest}`, "firewall-cmd", "--quiet", ...scope, "--direct", `--${want ? "add" : "remove"}-rule`, ...words(rest)));
  }
  return steps;
}

export const firewalldDriver = {
  live: firewalldLive,
  /** Ports open before the notrack rules go in, and close after they are gone: the port never goes dark. */
  set(changes: Array<{ name: string; to: string | null }>, facts: HostFacts): Step[] {
    const step = (c: { name: string; to: string | null }) => commands(c.name, whereOf(firewalldLive(c.name, facts) ?? "absent"), whereOf(c.to));
    const ports = changes.filter((c) => c.name.startsWith("port:"));
    const direct = changes.filter((c) => c.name.startsWith("direct:"));
    return [...ports.filter((c) => c.to !== "absent").flatMap(step), ...direct.flatMap(step), ...ports.filter((c) => c.to === "absent").flatMap(step)];
  },
  /**
   * The lockout guard's revert: each changed item's runtime state put back as the facts found it,
   * one rule or port at a time (the permanent set is what a firewalld restart brings back). Other
   * direct rules, added by anyone since, stay.
   */
  revert(facts: HostFacts, changed: string[]): Step[] {
    if (!facts.firewalld.running) return [];
    return changed.flatMap((name) => {
      const before = whereOf(firewalldLive(name, facts) ?? "absent");
      // From the other runtime state back to the one found (firewall-cmd only warns when it's already so).
      return commands(name, { ...before, runtime: !before.runtime }, before);
    });
  },
};
