import type { NotrackRuleSettings } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../facts/host";
import { keptUnloadedBy } from "../engine/moduleItems";
import { currentLedger } from "../engine/plan";
import type { Wanted } from "../engine/transaction";
import { wantIptables } from "./iptables";
import { wantNftables } from "./nftables";
import { wantFirewalld } from "./firewalld";

/** The facts NotrackRule reads (besides the engine's own: system and files). */
export const notrackRuleFacts = ["iptables", "nftables", "firewalld"] as const;

/** Which firewall owns this host's ruleset, and so which backend NotrackRule goes through. */
export type NotrackBackend = "iptables" | "nftables" | "firewalld" | "iptables-services";

export function backendOf(facts: HostFacts): NotrackBackend {
  const ipt = facts.iptables;
  if (ipt.firewalld) return "firewalld";
  // nftables.service's `flush ruleset` at every start wipes iptables rules: it owns the ruleset.
  if (ipt.nftablesService) return "nftables";
  if (ipt.iptablesServices) return "iptables-services";
  return "iptables";
}

/**
 * The pure heart of NotrackRule: the rules that take the ports out of tracking and keep them
 * answering, through the backend the host's firewall uses (one file per backend).
 */
export function wantNotrackRule(settings: NotrackRuleSettings, facts: HostFacts, self?: { label: string }): Wanted {
  const wanted = wantBackend(settings, facts, self);
  // The notrack target needs conntrack: another stack's KernelModuleSet may keep it out.
  const keepers = keptUnloadedBy(currentLedger(facts), "nf_conntrack");
  if (keepers.length > 0) wanted.blockers.push(`${keepers.join(", ")} keep${keepers.length > 1 ? "" : "s"} nf_conntrack unloaded on this host, which ${self?.label ?? "this NotrackRule"} needs (notrack rules work in it): destroy that KernelModuleSet (or set its state to "present") first`);
  return wanted;
}

function wantBackend(settings: NotrackRuleSettings, facts: HostFacts, self?: { label: string }): Wanted {
  switch (backendOf(facts)) {
    case "nftables":
      return wantNftables(settings, facts);
    case "firewalld":
      return wantFirewalld(settings, facts, self);
    default: // iptables, and iptables-services: the same rules, saved in /etc/sysconfig/iptables
      return wantIptables(settings, facts);
  }
}

