import type { HostFacts } from "../facts/host";
import type { FileBackend, PersistedItem } from "../persistence/items";
import { agreedValue, conflictsWith, ledgerPath, parseLedger, persisted, reclaim, renderLedger, type Claim, type Conflict, type Ledger } from "./ledger";
import { liveValue } from "./items";

/** One live value to change: an item from what the host holds to what the owners want. */
export interface ItemChange {
  item: string;
  /** null: the item doesn't exist; undefined never appears here. */
  from: string | null;
  to: string | null;
}

/** Everything one transaction does to a host, derived without I/O from the facts. */
export interface HostPlan {
  ledger: Ledger;
  changes: ItemChange[];
  writeFiles: Record<string, string>;
  removeFiles: string[];
  conflicts: Conflict[];
  /** Items this owner now holds (with the values found before the first owner came). */
  held: Record<string, { original: string | null; value: string }>;
}

export interface HostPlanInput {
  /** This resource's owner id in the ledger. */
  owner: string;
  /**
   * Labels under which this resource may already hold items (its own; its label before a rename):
   * owner ids with these labels are taken over when it claims, so a replacement or a rename never
   * leaves a twin behind that a later destroy would use to undo the values.
   */
  labels?: string[];
  /** Exactly what this owner wants now; {} on destroy. */
  claims: Record<string, Claim>;
  /** Owner ids to drop along with this one (a migrated legacy id). */
  alsoRelease?: string[];
  facts: HostFacts;
  backends: FileBackend[];
  /**
   * Values of items that can't be read yet (module not loaded) for a preview; a transaction
   * loads the module first instead, so there every original is known.
   */
  unreadable?: string;
}

/** Owner ids that hold items under one of `labels`, sorted. */
export function ownersLabelled(ledger: Ledger, labels: string[]): string[] {
  const ids = new Set<string>();
  for (const item of Object.values(ledger.items)) for (const [id, c] of Object.entries(item.owners)) if (labels.includes(c.label)) ids.add(id);
  return [...ids].sort();
}

export function currentLedger(facts: HostFacts): Ledger {
  return parseLedger(facts.files[ledgerPath] ?? "");
}

/** Kernel parameters before sysctls: a hashsize change resizes the table the sysctls describe. */
const order = (item: string) => (item.startsWith("param:") ? 0 : item.startsWith("sysctl:") ? 1 : 2);

/**
 * The pure core shared by preview, apply, verify and destroy: the ledger after this owner claims
 * `claims`, the live changes for the items it claims or releases, and the files that persist
 * what every owner on the host wants persisted.
 */
export function planHost(input: HostPlanInput): HostPlan {
  const { facts, owner, claims } = input;
  const before = currentLedger(facts);
  const twins = Object.keys(claims).length > 0 ? ownersLabelled(before, input.labels ?? []).filter((id) => id !== owner) : [];
  const alsoRelease = [...(input.alsoRelease ?? []), ...twins];
  const isSelf = (id: string) => id === owner || alsoRelease.includes(id);
  const conflicts = conflictsWith(before, isSelf, claims);

  const originals: Record<string, string | null> = {};
  for (const key of Object.keys(claims)) {
    if (before.items[key]) continue;
    const live = liveValue(key, facts);
    if (live === undefined && input.unreadable === undefined) throw new Error(`can't read ${key} to record its original value`);
    originals[key] = live === undefined ? input.unreadable! : live;
  }
  const { ledger, released } = reclaim(before, owner, conflicts.length > 0 ? {} : claims, originals, alsoRelease);
  if (conflicts.length > 0) return { ledger: before, changes: [], writeFiles: {}, removeFiles: [], conflicts, held: {} };

  const targets: Record<string, string | null> = { ...released };
  for (const key of Object.keys(claims)) targets[key] = agreedValue(ledger.items[key])!;
  const changes: ItemChange[] = [];
  for (const [item, to] of Object.entries(targets)) {
    const from = liveValue(item, facts);
    if (from === undefined || from === to) continue;
    if (to === null) continue; // an item that didn't exist before can't be made absent again by writing
    changes.push({ item, from, to });
  }
  changes.sort((a, b) => order(a.item) - order(b.item) || a.item.localeCompare(b.item));

  const { writeFiles, removeFiles } = planFiles(ledger, facts, input.backends);
  const held: HostPlan["held"] = {};
  for (const key of Object.keys(claims)) held[key] = { original: ledger.items[key].original, value: ledger.items[key].owners[owner].value };
  return { ledger, changes, writeFiles, removeFiles, conflicts, held };
}

/** Our files as the ledger says they should be, against what the host has. */
function planFiles(ledger: Ledger, facts: HostFacts, backends: FileBackend[]): { writeFiles: Record<string, string>; removeFiles: string[] } {
  const items: PersistedItem[] = [];
  const owners: Record<string, Set<string>> = {};
  for (const [key, item] of Object.entries(ledger.items)) {
    if (key.startsWith("token:") || !persisted(item)) continue;
    // A rule or value that was there before us is the host's own: it is not ours to persist.
    if (item.original !== null && item.original === agreedValue(item) && (key.startsWith("rule:") || key.startsWith("nft:"))) continue;
    items.push({ key, value: agreedValue(item)! });
    const kind = key.slice(0, key.indexOf(":"));
    for (const c of Object.values(item.owners)) if (c.persist) (owners[kind] ??= new Set()).add(c.label);
  }
  const byKind = Object.fromEntries(Object.entries(owners).map(([kind, labels]) => [kind, [...labels].sort()]));
  const input = { items, owners: byKind, systemd: facts.system.systemd, sysctlPath: facts.system.sysctlPath };
  const wanted: Record<string, string | undefined> = {};
  for (const b of backends) wanted[b.path] = b.render(input, facts.files[b.path], facts);
  wanted[ledgerPath] = Object.keys(ledger.items).length > 0 ? renderLedger(ledger) : undefined;
  const writeFiles: Record<string, string> = {};
  const removeFiles: string[] = [];
  for (const [path, content] of Object.entries(wanted)) {
    const current = facts.files[path];
    if (content === undefined && current !== undefined) removeFiles.push(path);
    else if (content !== undefined && content !== current) writeFiles[path] = content;
  }
  return { writeFiles, removeFiles };
}

export function hasWork(plan: Pick<HostPlan, "changes" | "writeFiles" | "removeFiles">): boolean {
  return plan.changes.length > 0 || Object.keys(plan.writeFiles).length > 0 || plan.removeFiles.length > 0;
}
