import type { FirewallStateSettings } from "../../sdk/firewallState.schema";
import { currentLedger } from "../engine/plan";
import type { Intents } from "../engine/hostIntents";
import type { Wanted } from "../engine/transaction";
import type { FirewallUnit } from "../facts/firewalls";
import type { HostFacts } from "../facts/host";
import { canonicalUnit, iptablesFamiliesOf, installedUnits, reloadedFile, runningState, wipedByUnit, wouldLose } from "../facts/firewallRules";

/** The facts FirewallState reads (besides the engine's own: system and files). */
export const firewallStateFacts = ["firewalls", "iptables"] as const;

export const runningItem = (unit: FirewallUnit) => `service-running:${unit}`;
export const enabledItem = (unit: FirewallUnit) => `service-enabled:${unit}`;

/**
 * What "auto" stands for on this host: the one firewall that runs (its unit is active or its rules
 * are live); when none runs, the one a FirewallState stopped before (the ledger says so), else the
 * one enabled at boot. Several candidates, or none, is a blocker asking to name the service.
 */
export function resolveAuto(facts: HostFacts): { unit?: FirewallUnit; why: string } {
  const installed = installedUnits(facts);
  const running = installed.filter((u) => runningState(u, facts) === "running");
  if (running.length === 1) return { unit: running[0], why: "it is the firewall running here" };
  if (running.length > 1) return { why: `several firewalls run here (${running.join(", ")}): name one in service` };
  const ledger = currentLedger(facts);
  const managed = installed.filter((u) => ledger.items[runningItem(u)] !== undefined);
  if (managed.length === 1) return { unit: managed[0], why: "pulumi-conntrack stopped it here" };
  const enabled = installed.filter((u) => facts.firewalls.units[u]?.enabled === "enabled");
  if (enabled.length === 1) return { unit: enabled[0], why: "it is the firewall enabled at boot here" };
  return { why: `no single firewall runs or is enabled here (installed: ${installed.join(", ") || "none"}): name one in service` };
}

/** The unit the settings mean on this host, and a note on how "auto" chose it. */
function unitFor(settings: FirewallStateSettings, facts: HostFacts): { unit?: FirewallUnit; note?: string; why?: string } {
  if (settings.service !== "auto") return { unit: canonicalUnit(settings.service, facts) };
  const { unit, why } = resolveAuto(facts);
  return unit ? { unit, note: `service "auto" is ${unit} on this host: ${why}` } : { why: `service "auto": ${why}` };
}

/** Owners in the ledger of iptables rules persisted through a service that restores them at boot (NotrackRules). */
function ruleOwners(facts: HostFacts): string[] {
  const labels = new Set<string>();
  for (const [key, item] of Object.entries(currentLedger(facts).items)) {
    if (!key.startsWith("rule:")) continue;
    for (const c of Object.values(item.owners)) if (c.persist) labels.add(c.label);
  }
  return [...labels].sort();
}

/** What the unit's own start or stop does that takes other tools' rules (the host's doing, not ours). */
function ownDoing(unit: FirewallUnit, facts: HostFacts, action: "start" | "stop"): string {
  if (unit === "nftables") return `runs /etc/nftables.conf, whose "flush ruleset" removes every iptables-nft rule`;
  if (action === "stop") return `runs iptables.init's stop, which flushes every table`;
  const files = iptablesFamiliesOf(unit).map((f) => reloadedFile(unit, f)).filter((p): p is string => p !== undefined && facts.files[p] !== undefined);
  return `reloads ${files.join(" and ")} with a plain iptables-restore, which replaces every table ${files.length > 1 ? "they name" : "it names"}`;
}

/**
 * A warning when the unit's own start (netfilter-persistent's reload, ...) or stop (RHEL's flush)
 * would take other tools' rules live now, naming their chains. We put them back right after, at
 * their places, in the same apply (engine/serviceItems.ts says why); the warning says that the host
 * itself removes them for a moment, and what a start by hand, outside pulumi, does to them.
 */
function wipeWarning(unit: FirewallUnit, facts: HostFacts, action: "start" | "stop"): string[] {
  const wiped = wipedByUnit(unit, facts, action);
  if (wiped.length === 0) return [];
  const chains = wiped.map((w) => `${w.tool}: ${w.chains.join(", ")}`).join("; ");
  return [`${action === "start" ? "starting" : "stopping"} ${unit} ${ownDoing(unit, facts, action)}, and with it the rules of other tools in these chains (${chains}); pulumi-conntrack puts them back right after, line by line, as they were just before (a systemctl ${action} by hand would leave them gone)`];
}

/**
 * The pure heart of FirewallState: the running and enabled items of the unit, and what stops it.
 * Stopping a firewall whose own rules NAT or forward is refused unless `force`, listing each rule
 * that would go; other tools' rules stay (a stop takes out the service's own lines only), except
 * where the service's own stop flushes everything (nftables, ufw's chains).
 */
export function wantFirewallState(settings: FirewallStateSettings, facts: HostFacts): Wanted {
  const blockers: string[] = [];
  const warnings: string[] = [];
  const claims: Wanted["claims"] = {};
  const none = { claims, warnings, blockers, prepare: [] };
  if (!facts.firewalls.systemd) return { ...none, blockers: ["this host doesn't run systemd: FirewallState manages systemd units only"] };
  const { unit, note, why } = unitFor(settings, facts);
  if (!unit) return { ...none, blockers: [why!] };
  if (note) warnings.push(note);
  if (facts.firewalls.units[unit]?.exists !== true) {
    if (settings.running || settings.enabled) return { ...none, blockers: [`${unit}.service is not installed on this host: install it, or set running and enabled to false`] };
    return { ...none, warnings: [...warnings, `${unit}.service is not installed on this host: nothing to stop`] };
  }
  const enabledNow = facts.firewalls.units[unit]!.enabled;
  if (!["enabled", "disabled", "masked"].includes(enabledNow)) {
    blockers.push(`${unit}.service is "${enabledNow}" at boot, which systemctl enable/disable can't change: manage it by hand`);
  }
  claims[runningItem(unit)] = { value: settings.running ? "running" : "stopped", persist: false };
  claims[enabledItem(unit)] = { value: settings.enabled ? "enabled" : "disabled", persist: false };

  const stopping = !settings.running && runningState(unit, facts) === "running";
  if (stopping) {
    const lost = wouldLose(unit, facts);
    if (lost.length > 0) {
      const list = lost.map((l) => `  ${l}`).join("\n");
      if (settings.force) warnings.push(`stopping ${unit} removes (force is set):\n${list}`);
      else blockers.push(`stopping ${unit} would remove rules this host may rely on:\n${list}\nremove or move them first, or set force: true`);
    }
    warnings.push(...wipeWarning(unit, facts, "stop"));
  }
  // Across stacks: NotrackRules of other programs persist their rules through netfilter-persistent's
  // rules files, which it loads at boot only while enabled. A stop leaves their rules live (they
  // are another owner's, taken out line by line with the service's own), so only a disable counts.
  if (unit === "netfilter-persistent" && !settings.enabled && !settings.force) {
    const owners = ruleOwners(facts);
    if (owners.length > 0) blockers.push(`${owners.join(", ")} ${owners.length > 1 ? "keep their" : "keeps its"} rules in ${unit}, which this FirewallState disables: destroy ${owners.length > 1 ? "them" : "it"} first, or set force: true`);
  }
  if (settings.running && runningState(unit, facts) === "stopped") {
    warnings.push(`starting ${unit} applies its rules: if they don't accept SSH, the change is reverted by itself unless a new SSH connection succeeds`);
    warnings.push(...wipeWarning(unit, facts, "start"));
  }
  return { claims, warnings, blockers, prepare: [] };
}

/** What this resource takes away on its host, for clashes with resources that need it (engine/hostIntents.ts). */
export function firewallStateIntents(settings: FirewallStateSettings, facts: HostFacts): Intents {
  const unit = settings.service === "auto" ? resolveAuto(facts).unit : canonicalUnit(settings.service, facts);
  // netfilter-persistent's stop leaves other owners' rules live; only its disable drops them (at boot).
  const takesAway = unit === "netfilter-persistent" ? !settings.enabled : !settings.running || !settings.enabled;
  const removes = unit && takesAway ? [`service ${unit}`] : [];
  return { needs: [], removes };
}
