import { pipeInto, removeFile, run, writeFile, type Step } from "./commands";
import { firewallUnits, type FirewallUnit, type NftTable } from "../facts/firewalls";
import type { HostFacts } from "../facts/host";
import { parseRuleset } from "../facts/iptablesRules";
import { ledgerPath, parseLedger } from "./ledger";
import { iptablesFamiliesOf, nftTablesOf, restoreTool, runningState, savedPath, type Family } from "../facts/firewallRules";

/**
 * Ledger items of FirewallState:
 * - "service-running:netfilter-persistent": "running" (the unit is active or any of its rules
 *   are live) or "stopped" (inactive, and none of its rules are live);
 * - "service-enabled:netfilter-persistent": systemd's UnitFileState ("enabled", "disabled", "masked").
 * A stop keeps the rules it takes away in /var/lib/pulumi-conntrack/firewall-UNIT.{v4,v6,nft},
 * and a start puts them back, so a destroy restores even live rules that were never saved.
 * Both drivers have `revert` (engine/lockoutGuard.ts): steps that put each changed unit back as
 * the facts read before the change found it, its rules and the copies kept of them included.
 */
export interface RevertingDriver {
  live(name: string, facts: HostFacts): string | null | undefined;
  set(changes: Array<{ name: string; to: string | null }>, facts: HostFacts): Step[];
  revert(facts: HostFacts, changed: string[]): Step[];
}

function unitOf(name: string): FirewallUnit {
  const unit = firewallUnits.find((u) => u === name);
  if (!unit) throw new Error(`unknown firewall unit ${name}`);
  return unit;
}

const saveText = (facts: HostFacts, f: Family) => (f === "v4" ? facts.iptables.v4 : facts.iptables.v6);

/** iptables-restore input that empties every table `save` has and sets its built-in chains to ACCEPT. */
export function flushInput(save: string): string {
  const rs = parseRuleset(save);
  return Object.entries(rs.policies)
    .map(([table, chains]) => {
      const builtins = Object.entries(chains).filter(([, p]) => p !== "-").map(([c]) => `:${c} ACCEPT [0:0]`);
      return `*${table}\n${builtins.join("\n")}${builtins.length > 0 ? "\n" : ""}COMMIT\n`;
    })
    .join("");
}

/** `nft -f` input that replaces each table with its saved text (`table` first, so `delete` never fails). */
export function nftReplaceInput(tables: NftTable[]): string {
  return tables.map((t) => `table ${t.family} ${t.name}\ndelete table ${t.family} ${t.name}\n${t.text}`).join("");
}

/** `nft -f` input that removes each table, whether or not it still exists. */
function nftDeleteInput(tables: NftTable[]): string {
  return tables.map((t) => `table ${t.family} ${t.name}\ndelete table ${t.family} ${t.name}\n`).join("");
}

/** The tables a saved nft file holds. */
function savedNftTables(text: string): NftTable[] {
  const tables: NftTable[] = [];
  for (const block of text.split(/(?=^table )/m)) {
    const head = /^table (\S+) (\S+) \{/.exec(block);
    if (head) tables.push({ family: head[1], name: head[2], text: block.endsWith("\n") ? block : `${block}\n` });
  }
  return tables;
}

/**
 * Stops the unit and removes every rule of it that is still live: `netfilter-persistent stop`
 * leaves the rules loaded (FLUSH_ON_STOP=0), so "stopped" would be a lie without the flush.
 * `keep`: save what it takes away first (not when the lockout guard puts a stop back).
 */
function stopSteps(unit: FirewallUnit, facts: HostFacts, keep: boolean): Step[] {
  const steps: Step[] = [];
  const tables = nftTablesOf(unit, facts);
  // The first stop (no owner yet) keeps what it found, replacing any copy a failed run left; a
  // later one (someone started it by hand since) keeps the first copy: destroy restores what was
  // there before the first owner came.
  const first = parseLedger(facts.files[ledgerPath] ?? "").items[`service-running:${unit}`] === undefined;
  const keepCopy = (path: string, text: string): Step[] => {
    if (text.trim() !== "") return first || facts.files[path] === undefined ? writeFile(path, text, "0600") : [];
    return first && facts.files[path] !== undefined ? [removeFile(path)] : [];
  };
  if (keep) {
    for (const f of iptablesFamiliesOf(unit)) steps.push(...keepCopy(savedPath(unit, f), saveText(facts, f)));
    if (unit === "nftables") steps.push(...keepCopy(savedPath(unit, "nft"), tables.map((t) => t.text).join("")));
  }
  steps.push(run(`stop ${unit}.service`, "systemctl", "stop", `${unit}.service`));
  // nftables.service's own stop flushes the whole ruleset; a stopped one's iptables rules are someone else's.
  for (const f of unit === "nftables" ? [] : iptablesFamiliesOf(unit)) {
    const input = flushInput(saveText(facts, f));
    if (input !== "") steps.push(pipeInto(`flush the ${f === "v4" ? "iptables" : "ip6tables"} rules ${unit} loaded`, input, ...restoreTool(f)));
  }
  // firewalld removes its tables when it stops (CleanupOnExit); these are for a host where it didn't.
  if (tables.length > 0) steps.push(pipeInto(`remove the nftables tables of ${unit}`, nftDeleteInput(tables), "nft", "-f", "-"));
  return steps;
}

/** Starts the unit, then puts back the rules a stop of ours saved (`from`: "saved") or those the facts show (`from`: "facts"). */
function startSteps(unit: FirewallUnit, facts: HostFacts, from: "saved" | "facts"): Step[] {
  const steps: Step[] = [run(`start ${unit}.service`, "systemctl", "start", `${unit}.service`)];
  for (const f of iptablesFamiliesOf(unit)) {
    const text = from === "saved" ? facts.files[savedPath(unit, f)] : saveText(facts, f);
    if (text !== undefined && text.trim() !== "") steps.push(pipeInto(`restore the ${f === "v4" ? "iptables" : "ip6tables"} rules ${unit} had`, text, ...restoreTool(f)));
    if (from === "saved" && facts.files[savedPath(unit, f)] !== undefined) steps.push(removeFile(savedPath(unit, f)));
  }
  if (unit === "nftables") {
    const tables = from === "saved" ? savedNftTables(facts.files[savedPath(unit, "nft")] ?? "") : nftTablesOf(unit, facts);
    if (tables.length > 0) steps.push(pipeInto("restore the nftables tables nftables.service had", nftReplaceInput(tables), "nft", "-f", "-"));
    if (from === "saved" && facts.files[savedPath(unit, "nft")] !== undefined) steps.push(removeFile(savedPath(unit, "nft")));
  }
  return steps;
}

export const serviceRunning: RevertingDriver = {
  live: (name, facts) => runningState(unitOf(name), facts),
  set: (changes, facts) => changes.flatMap(({ name, to }) => (to === "stopped" ? stopSteps(unitOf(name), facts, true) : to === "running" ? startSteps(unitOf(name), facts, "saved") : [])),
  revert: (facts, changed) =>
    changed.map(unitOf).flatMap((unit) => {
      const found = runningState(unit, facts);
      const steps = found === "running" ? startSteps(unit, facts, "facts") : found === "stopped" ? stopSteps(unit, facts, false) : [];
      // The copies a stop keeps (or a start consumed) go back as they were too.
      for (const path of [...iptablesFamiliesOf(unit), "nft" as const].map((w) => savedPath(unit, w))) {
        const before = facts.files[path];
        steps.push(...(before === undefined ? [removeFile(path)] : writeFile(path, before, "0600")));
      }
      return steps;
    }),
};

/** The systemctl verb that gives a unit file this state (undefined: none can, e.g. "static"). */
const verbs: Record<string, string> = { enabled: "enable", disabled: "disable", masked: "mask" };

function enableSteps(unit: FirewallUnit, from: string | undefined, to: string): Step[] {
  const verb = verbs[to];
  if (!verb) return [];
  const steps: Step[] = [];
  if (from === "masked" && to !== "masked") steps.push(run(`unmask ${unit}.service`, "systemctl", "unmask", `${unit}.service`));
  steps.push(run(`${verb} ${unit}.service`, "systemctl", verb, `${unit}.service`));
  return steps;
}

export const serviceEnabled: RevertingDriver = {
  live: (name, facts) => {
    const u = facts.firewalls.units[unitOf(name)];
    return u?.exists ? u.enabled : undefined;
  },
  set: (changes, facts) => changes.flatMap(({ name, to }) => (to === null ? [] : enableSteps(unitOf(name), facts.firewalls.units[unitOf(name)]?.enabled, to))),
  revert: (facts, changed) =>
    changed.map(unitOf).flatMap((unit) => {
      const u = facts.firewalls.units[unit];
      return u?.exists && verbs[u.enabled] ? enableSteps(unit, undefined, u.enabled) : [];
    }),
};
