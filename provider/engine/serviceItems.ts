import { flushFilesystemOf, pipeInto, removeFile, run, writeFile, type Step } from "./commands";
import { firewallUnits, type FirewallUnit, type NftTable } from "../facts/firewalls";
import type { HostFacts } from "../facts/host";
import { lineKey } from "../facts/iptablesRules";
import { putBack, RulesetEdit, tablesOf, takeOut, type Party } from "../facts/rulesetEdit";
import { ledgerPath, parseLedger } from "./ledger";
import { afterStart, afterStop, byLines, iptablesFamiliesOf, neighbourParty, nftTablesOf, restoreLines, runningState, savedPath, serviceParty, unitActive, type Family } from "../facts/firewallRules";

/**
 * Ledger items of FirewallState:
 * - "service-running:netfilter-persistent": "running" (the unit is active or any of its rules
 *   are live) or "stopped" (inactive, and none of its rules are live);
 * - "service-enabled:netfilter-persistent": systemd's UnitFileState ("enabled", "disabled", "masked").
 * A stop keeps the ruleset it found in /var/lib/pulumi-conntrack/firewall-UNIT.{v4,v6,nft}, and
 * a start puts back the unit's rules from it, so a destroy restores even live rules that were
 * never saved. Both work by lines, never by replacing a table: a stop takes out the unit's own
 * rules (`-D`), a start inserts what is missing (`-I` at its place), and the rules of other tools
 * (Docker, fail2ban, kube-proxy...) stay, also where the unit's own start or stop wipes them
 * (then they are put back right after, as they were just before).
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

/** An iptables ruleset per family (iptables-save output). */
type Rulesets = Record<Family, string>;
const liveRulesets = (facts: HostFacts): Rulesets => ({ v4: facts.iptables.v4, v6: facts.iptables.v6 });
const toolName = (f: Family) => (f === "v4" ? "iptables" : "ip6tables");
const everything: Party = { rule: () => true, chain: () => true };

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

/** The edit's lines as one `iptables-restore --noflush` transaction; nothing when it has none. */
function restoreStep(name: string, f: Family, edit: RulesetEdit): Step[] {
  const input = edit.input();
  return input === "" ? [] : [pipeInto(name, input, ...restoreLines(f))];
}

/** What a phase of a change runs on the host, and the rulesets it leaves there (planned purely). */
interface Phase {
  steps: Step[];
  after: Rulesets;
}

/**
 * Stops the unit and takes out its own rules from `state` (the rulesets before), each by its
 * line, in one `iptables-restore --noflush` per family: `netfilter-persistent stop` leaves them
 * loaded (FLUSH_ON_STOP=0), so "stopped" would be a lie without it. Built-in chains whose policy
 * isn't ACCEPT become ACCEPT, and its user chains go once empty and unreferenced; other tools'
 * rules and chains stay. RHEL's iptables.init stops first (with IPTABLES_SAVE_ON_STOP=yes it saves
 * the rules: it must see them all) and flushes every table itself: the same transaction then puts
 * the other tools' rules back at their places. `active`: the unit is up, so its stop runs.
 */
function stopPhase(unit: FirewallUnit, facts: HostFacts, state: Rulesets, active: boolean): Phase {
  const steps: Step[] = [];
  const after = { ...state };
  const stop = run(`stop ${unit}.service`, "systemctl", "stop", `${unit}.service`);
  // `ufw enable` loads ufw's rules without starting its unit, whose stop (ufw-init stop) is what
  // takes them out: a stop of the inactive unit would do nothing. Its start, with the rules
  // loaded, only marks it active ("Firewall already started").
  if (unit === "ufw" && !active) steps.push(run("start ufw.service, so that its stop takes out the rules `ufw enable` loaded", "systemctl", "start", "ufw.service"));
  const stopFirst = unit === "iptables" || unit === "ip6tables";
  if (stopFirst) steps.push(stop);
  for (const f of byLines(unit) ? iptablesFamiliesOf(unit) : []) {
    const edit = new RulesetEdit(stopFirst ? afterStop(unit, f, state[f], facts, active) : state[f]);
    takeOut(edit, serviceParty(unit));
    putBack(edit, state[f], neighbourParty(unit));
    steps.push(...restoreStep(`take out the ${toolName(f)} rules of ${unit} line by line, other tools' rules left in place`, f, edit));
    after[f] = edit.save();
  }
  if (!stopFirst) steps.push(stop);
  // nftables.service's own stop flushes the whole ruleset, iptables-nft rules included (the host's doing).
  if (unit === "nftables") for (const f of iptablesFamiliesOf(unit)) after[f] = afterStop(unit, f, state[f], facts, active);
  // firewalld removes its tables when it stops (CleanupOnExit); these are for a host where it didn't.
  const tables = nftTablesOf(unit, facts);
  if (tables.length > 0) steps.push(pipeInto(`remove the nftables tables of ${unit}`, nftDeleteInput(tables), "nft", "-f", "-"));
  return { steps, after };
}

/**
 * Starts the unit, whose own start reloads its file with a plain iptables-restore (the host's
 * doing: each table the file names is replaced, other tools' chains in it gone; nftables.service's
 * `flush ruleset` takes every iptables-nft rule), then puts back, in one `iptables-restore
 * --noflush` per family and each at its place, what is missing of: the unit's own rules in `kept`
 * (the copy a stop kept; all of it for nftables, whose stop took every rule), with its policies;
 * then the other tools' rules `state` (the rulesets just before the start) held, among the unit's
 * where `kept` had them so, else where `state` had them. Nothing is replaced or deleted.
 *
 * Why put back what the host's own reload wiped: netfilter-persistent's start would otherwise take
 * Docker's chains (its containers lose their network until dockerd restarts), fail2ban's bans and
 * kube-proxy's services with it, in a change the user made to a firewall unit. The rules are read
 * with the facts under the host lock, moments before the start: a ban added in between is lost
 * with the reload, as it would be without us.
 */
function startPhase(unit: FirewallUnit, facts: HostFacts, state: Rulesets, kept: Partial<Rulesets>): Phase {
  const steps: Step[] = [run(`start ${unit}.service`, "systemctl", "start", `${unit}.service`)];
  const after = { ...state };
  const others = neighbourParty(unit);
  for (const f of iptablesFamiliesOf(unit)) {
    const edit = new RulesetEdit(afterStart(unit, f, state[f], facts));
    const copy = kept[f];
    if (copy !== undefined) {
      putBack(edit, copy, unit === "nftables" ? everything : serviceParty(unit), { policies: true });
      const now = new Set(tablesOf(state[f]).flatMap((t) => t.chains.flatMap((c) => c.rules.map((r) => `${t.name} ${c.name} ${lineKey(r.text)}`))));
      putBack(edit, copy, { rule: (r) => others.rule(r) && now.has(`${r.table} ${r.chain} ${lineKey(r.text)}`), chain: () => false });
    }
    putBack(edit, state[f], others);
    steps.push(...restoreStep(`put back line by line the ${toolName(f)} rules ${unit} had and other tools' rules its start removed`, f, edit));
    after[f] = edit.save();
  }
  return { steps, after };
}

/**
 * Before a stop: keep what the facts show, so a destroy restores even rules that were never saved.
 * The first stop (no owner yet) keeps what it found, replacing any copy a failed run left; a later
 * one (someone started it by hand since) keeps the first copy: destroy restores what was there
 * before the first owner came.
 */
function keepCopies(unit: FirewallUnit, facts: HostFacts): Step[] {
  const first = parseLedger(facts.files[ledgerPath] ?? "").items[`service-running:${unit}`] === undefined;
  const keepCopy = (path: string, text: string): Step[] => {
    if (text.trim() !== "") return first || facts.files[path] === undefined ? writeFile(path, text, "0600") : [];
    return first && facts.files[path] !== undefined ? [removeFile(path)] : [];
  };
  const live = liveRulesets(facts);
  const steps = iptablesFamiliesOf(unit).flatMap((f) => keepCopy(savedPath(unit, f), live[f]));
  if (unit === "nftables") steps.push(...keepCopy(savedPath(unit, "nft"), nftTablesOf(unit, facts).map((t) => t.text).join("")));
  return steps;
}

/** The copies a stop kept, per family (undefined: none). */
const copiesOf = (unit: FirewallUnit, facts: HostFacts): Partial<Rulesets> => ({ v4: facts.files[savedPath(unit, "v4")], v6: facts.files[savedPath(unit, "v6")] });

/** Starts the unit and puts back what a stop of ours kept, then forgets the copies. */
function startFromCopies(unit: FirewallUnit, facts: HostFacts): Step[] {
  const steps = startPhase(unit, facts, liveRulesets(facts), copiesOf(unit, facts)).steps;
  for (const f of iptablesFamiliesOf(unit)) if (facts.files[savedPath(unit, f)] !== undefined) steps.push(removeFile(savedPath(unit, f)));
  if (unit === "nftables") {
    const tables = savedNftTables(facts.files[savedPath(unit, "nft")] ?? "");
    if (tables.length > 0) steps.push(pipeInto("restore the nftables tables nftables.service had", nftReplaceInput(tables), "nft", "-f", "-"));
    if (facts.files[savedPath(unit, "nft")] !== undefined) steps.push(removeFile(savedPath(unit, "nft")));
  }
  return steps;
}

/**
 * Steps that put the unit back as `facts` found it after a change that stops or starts it, planned
 * from what the change leaves (its phases simulated on the facts): a stop is undone by starting
 * it and putting back, by lines, every rule of the facts that the stop and the start's own reload
 * took; a start by stopping it and taking out, by lines, the unit's rules it brought.
 */
function revertRunning(unit: FirewallUnit, facts: HostFacts): Step[] {
  const live = liveRulesets(facts);
  const found = runningState(unit, facts);
  if (found === "running") {
    const stopped = stopPhase(unit, facts, live, unitActive(unit, facts)).after;
    const steps = startPhase(unit, facts, stopped, live).steps;
    const tables = nftTablesOf(unit, facts);
    if (unit === "nftables" && tables.length > 0) steps.push(pipeInto("restore the nftables tables nftables.service had", nftReplaceInput(tables), "nft", "-f", "-"));
    return steps;
  }
  if (found === "stopped") return stopPhase(unit, facts, startPhase(unit, facts, live, copiesOf(unit, facts)).after, true).steps;
  return [];
}

export const serviceRunning: RevertingDriver = {
  live: (name, facts) => runningState(unitOf(name), facts),
  set: (changes, facts) =>
    changes.flatMap(({ name, to }) => {
      const unit = unitOf(name);
      if (to === "stopped") return [...keepCopies(unit, facts), ...stopPhase(unit, facts, liveRulesets(facts), unitActive(unit, facts)).steps];
      return to === "running" ? startFromCopies(unit, facts) : [];
    }),
  revert: (facts, changed) =>
    changed.map(unitOf).flatMap((unit) => {
      const steps = revertRunning(unit, facts);
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
  // systemctl adds or removes the unit's links under /etc/systemd/system and flushes none: a
  // power cut soon after would boot the unit as it was.
  steps.push(flushFilesystemOf(`flush ${unit}.service's links to disk`, "/etc/systemd/system"));
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
