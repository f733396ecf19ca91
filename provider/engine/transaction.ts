import type { FactName, HostFacts } from "../facts/host";
import { floorBlockers } from "../facts/tools";
import type { FileBackend } from "../persistence/items";
import { HostError } from "../transport/errors";
import type { HostTarget } from "../transport/target";
import { checkOutcome, removeFile, renderScript, stepNotes, tryRun, writeFile, type Step } from "./commands";
import type { Intents } from "./hostIntents";
import { awaitJobs, startJob } from "./hostJobs";
import { withHostTransaction } from "./hostLock";
import { guardedApply, revertSteps } from "./lockoutGuard";
import { driverOf, type ItemDriver } from "./items";
import { LedgerError, ledgerDir, ledgerPath, renderLedger, type Claim } from "./ledger";
import { readHostFacts } from "./hostFacts";
import { currentLedger, hasWork, planHost, type HostPlan, type HostPlanInput } from "./plan";

/** What a resource wants on one host, worked out purely from its settings and the host's facts. */
export interface Wanted {
  /** Item key → the value this resource wants, and whether it must survive reboots. */
  claims: Record<string, { value: string; persist: boolean }>;
  warnings: string[];
  /** Reasons this host can't take the change at all; each names the fix. */
  blockers: string[];
  /** Steps before the claims can be read or applied (e.g. load a module); empty when none. */
  prepare: Step[];
}

/** The little the engine needs to know of a resource type. */
export interface ResourceKind<S> {
  type: string;
  facts: FactName[];
  backends: FileBackend[];
  /**
   * `self`: the resource's own ledger label, for a kind whose claims depend on what it claimed
   * before (KernelModuleSet keeps claiming the holders it unloaded); absent in intents checks.
   */
  want(settings: S, facts: HostFacts, self?: { label: string }): Wanted;
  /** What it needs left in place on the host or takes away, for clashes with other resources there. */
  intents?(settings: S, facts: HostFacts): Intents;
}

export interface Owner {
  id: string;
  label: string;
  /** Its label before a rename: ids under it are taken over too. */
  formerLabels?: string[];
  /** Owner ids this one takes over (migrated from an older version's files). */
  alsoRelease?: string[];
}

/** Lets a caller adjust the facts before planning (e.g. adopt an older version's files). */
export type FactsView = (facts: HostFacts) => { facts: HostFacts; removeFiles: string[] };
const asIs: FactsView = (facts) => ({ facts, removeFiles: [] });

export function claimsOf(wanted: Wanted, label: string): Record<string, Claim> {
  return Object.fromEntries(Object.entries(wanted.claims).map(([k, c]) => [k, { ...c, label }]));
}

export const nothingWanted: Wanted = { claims: {}, warnings: [], blockers: [], prepare: [] };

export interface Converged {
  facts: HostFacts;
  plan: HostPlan;
  wanted: Wanted;
  /** What the host reported of earlier changes whose connection was cut (see hostJobs.ts). */
  earlier: string[];
  /** Optional steps of this change that failed, in the host's words (e.g. udev's reload). */
  notes: string[];
}

/**
 * The whole transaction for one resource on one host, under the host lock: read the facts, plan
 * purely, apply, then verify that a fresh read plans nothing more. `settings` undefined means
 * "leave": release everything this owner holds (destroy). A failed first apply is rolled back.
 */
export function converge<S>(kind: ResourceKind<S>, target: HostTarget, owner: Owner, settings: S | undefined, options: { rollback: boolean; view?: FactsView }): Promise<Converged> {
  return withHostTransaction(target, async (stillLocked, earlier) => {
    try {
      return { ...(await convergeLocked(kind, target, owner, settings, options.view ?? asIs, stillLocked)), earlier };
    } catch (thrown) {
      // A ledger broken by hand stops the change before it starts: say on which host.
      const err = thrown instanceof LedgerError ? new HostError(target.label, "config", thrown.message) : thrown;
      // After a lockout the host has reverted by itself, and our connection may be gone.
      const reverted = err instanceof HostError && err.layer === "lockout";
      if (options.rollback && settings !== undefined && !reverted && !(thrown instanceof LedgerError)) {
        // An apply whose waiter gave up may still run on the host: plan the rollback only from
        // facts read after it ended. Without the host lock (its connection was cut too) there is
        // no rollback to wait for.
        const rollBack = async () => {
          stillLocked();
          await awaitJobs(target, "wait for the change to end before rolling it back");
          return convergeLocked(kind, target, owner, undefined, asIs, stillLocked);
        };
        await rollBack().catch((rollbackErr: Error) => {
          const said = (e: Error) => (e instanceof HostError ? `${e.detail}${e.fix ? ` (fix: ${e.fix})` : ""}` : e.message);
          throw new HostError(target.label, "command", `${said(err as Error)}; rolling back also failed: ${said(rollbackErr)}`);
        });
      }
      throw err;
    }
  });
}

async function convergeLocked<S>(kind: ResourceKind<S>, target: HostTarget, owner: Owner, settings: S | undefined, view: FactsView, stillLocked: () => void): Promise<Omit<Converged, "earlier">> {
  const notes: string[] = [];
  const read = async () => view(await readHostFacts(target, kind.facts));
  let seen = await read();
  const floor = floorBlockers(seen.facts.tools);
  if (floor.length > 0) throw new HostError(target.label, "config", floor.join("; "));
  let wanted = settings === undefined ? nothingWanted : kind.want(settings, seen.facts, owner);
  refuseBlocked(target, wanted);
  if (wanted.prepare.length > 0) {
    stillLocked();
    notes.push(...(await runSteps(target, `prepare ${kind.type}`, wanted.prepare)));
    seen = await read();
    wanted = kind.want(settings!, seen.facts, owner);
    refuseBlocked(target, wanted);
  }
  const input = (facts: HostFacts): HostPlanInput => ({ owner: owner.id, alsoRelease: owner.alsoRelease, claims: claimsOf(wanted, owner.label), facts, backends: kind.backends, labels: [owner.label, ...(owner.formerLabels ?? [])] });
  const plan = planHost(input(seen.facts));
  refuseConflicts(target, kind.type, plan);
  const removeExtra = seen.removeFiles.filter((p) => seen.facts.files[p] !== undefined);
  if (hasWork(plan) || removeExtra.length > 0) {
    stillLocked();
    const { ledger, files, values, persist } = applySteps(seen.facts, plan, removeExtra);
    const revert = revertSteps(seen.facts, plan);
    if (revert) {
      notes.push(...(await guardedApply(target, `apply ${kind.type}`, [...ledger, ...values], revert, [...files, ...persist])));
    } else {
      notes.push(...(await runSteps(target, `apply ${kind.type}`, [...ledger, ...files, ...values, ...persist])));
    }
  }
  // Verify from a fresh read: the host must hold the change (a kernel may round or refuse).
  const after = await readHostFacts(target, kind.facts);
  const again = planHost(input(after));
  if (hasWork(again)) {
    const left = [
      ...again.changes.map((c) => `${c.item} is ${c.from ?? "absent"}, wanted ${c.to ?? "absent"}`),
      ...Object.keys(again.writeFiles).map((p) => `${p} differs`),
      ...again.removeFiles.map((p) => `${p} still exists`),
    ];
    throw new HostError(target.label, "verify", `the host doesn't hold the change: ${left.join("; ")}`);
  }
  return { facts: after, plan, wanted, notes };
}

function refuseBlocked(target: HostTarget, wanted: Wanted): void {
  if (wanted.blockers.length > 0) throw new HostError(target.label, "config", wanted.blockers.join("; "));
}

export function conflictMessages(plan: HostPlan): string[] {
  return plan.conflicts.map((c) => `${c.item} is managed by ${c.other.label}, which wants ${c.other.value} (this resource wants ${c.wanted}): give both the same value, or manage it in one resource`);
}

function refuseConflicts(target: HostTarget, type: string, plan: HostPlan): void {
  if (plan.conflicts.length > 0) throw new HostError(target.label, "config", `${type}: ${conflictMessages(plan).join("; ")}`);
}

/**
 * The order that keeps every failure recoverable: first the ledger with both the items being
 * claimed and those being released (so originals are on the host before anything changes, and
 * still there if we stop half way), then files, then live values, then the final ledger. Under
 * the lockout guard the live values come before the files (`persist`), which the same job on the
 * host writes only once a new connection got in and disarmed the guard (lockoutGuard.ts): a reboot
 * before that boots into what was persisted before, and a connection lost after it doesn't stop it.
 */
function applySteps(facts: HostFacts, plan: HostPlan, removeExtra: string[]): { ledger: Step[]; files: Step[]; values: Step[]; persist: Step[] } {
  const ledger: Step[] = [];
  const files: Step[] = [];
  const values: Step[] = [];
  const persist: Step[] = [];
  const before = currentLedger(facts);
  const union = { ...plan.ledger, items: { ...before.items, ...plan.ledger.items } };
  const finalLedger = plan.writeFiles[ledgerPath];
  const unionText = renderLedger(union);
  if (Object.keys(union.items).length > 0 && unionText !== facts.files[ledgerPath]) ledger.push(...writeFile(ledgerPath, unionText, "0600"));
  for (const [path, content] of Object.entries(plan.writeFiles)) if (path !== ledgerPath) files.push(...writeFile(path, content));
  for (const path of [...plan.removeFiles.filter((p) => p !== ledgerPath), ...removeExtra]) files.push(removeFile(path));
  // Changes come sorted by kind; each kind gets its changes at once.
  const byDriver = new Map<ItemDriver, Array<{ name: string; to: string | null }>>();
  for (const change of plan.changes) {
    const { driver, name } = driverOf(change.item);
    byDriver.set(driver, [...(byDriver.get(driver) ?? []), { name, to: change.to }]);
  }
  for (const [driver, changes] of byDriver) values.push(...driver.set(changes, facts));
  if (finalLedger !== undefined && finalLedger !== unionText) persist.push(...writeFile(ledgerPath, finalLedger, "0600"));
  if (plan.removeFiles.includes(ledgerPath)) persist.push(removeFile(ledgerPath), tryRun(`remove ${ledgerDir} if empty`, "rmdir", ledgerDir));
  const touchedUdev = [...Object.keys(plan.writeFiles), ...plan.removeFiles, ...removeExtra].some((p) => p.startsWith("/etc/udev/"));
  if (touchedUdev && facts.system.udevadm) persist.push(tryRun("reload udev rules", "udevadm", "control", "--reload"));
  return { ledger, files, values, persist };
}

/** Runs the steps as one job; resolves with the notes of optional steps that failed. */
async function runSteps(target: HostTarget, what: string, steps: Step[]): Promise<string[]> {
  const outcome = await startJob(target, renderScript(steps), what);
  checkOutcome(target.label, what, outcome);
  return stepNotes(outcome.stderr).map((note) => `${what}: ${note}`);
}
