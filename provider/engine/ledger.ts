/**
 * The ownership ledger: a small JSON file on each host that records, for every item a
 * pulumi-conntrack resource manages there (a sysctl key, a module parameter, a token in a config
 * file...), the value found before the first owner came and what each owner wants. The original
 * comes back only when the last owner leaves, whatever order owners leave in; two owners that
 * want different values are refused, naming each other. `cat` it to see who manages what.
 */
export const ledgerDir = "/var/lib/pulumi-conntrack";
export const ledgerPath = `${ledgerDir}/ledger.json`;
export const ledgerFormat = 1;

/** What one owner wants of one item. */
export interface Claim {
  value: string;
  /** Whether this owner wants the value to survive restarts, reloads and reboots. */
  persist: boolean;
  /** "project/stack/Type/name", for people reading the ledger and for error messages. */
  label: string;
}

export interface LedgerItem {
  /** The value before the first owner came; null when the item did not exist then. */
  original: string | null;
  owners: Record<string, Claim>;
}

export interface Ledger {
  format: typeof ledgerFormat;
  items: Record<string, LedgerItem>;
}

export const emptyLedger = (): Ledger => ({ format: ledgerFormat, items: {} });

export class LedgerError extends Error {}

/** Parses the ledger file's text ("" when the file doesn't exist). */
export function parseLedger(text: string): Ledger {
  if (text.trim() === "") return emptyLedger();
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new LedgerError(`${ledgerPath} is not valid JSON (${(err as Error).message}); fix or remove it by hand`);
  }
  const ledger = data as Partial<Ledger>;
  if (typeof ledger !== "object" || ledger === null || typeof ledger.items !== "object") throw new LedgerError(`${ledgerPath} has no items`);
  if (ledger.format !== ledgerFormat) {
    throw new LedgerError(`${ledgerPath} has format ${String(ledger.format)}, this version of pulumi-conntrack reads format ${ledgerFormat}: upgrade the package`);
  }
  return ledger as Ledger;
}

/**
 * The ledger's one text: items and each item's owners sorted by id, so the same ledger always
 * renders the same whichever owner planned last (an owner that re-adds itself lands last in the
 * object; without the sort two agreeing owners would rewrite the file in turn forever).
 */
export function renderLedger(ledger: Ledger): string {
  const byKey = <T>(record: Record<string, T>) => Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
  const items = Object.fromEntries(byKey(ledger.items).map(([key, item]) => [key, { original: item.original, owners: Object.fromEntries(byKey(item.owners)) }]));
  return JSON.stringify({ format: ledger.format, items }, null, 1) + "\n";
}

/** The value every owner of an item agrees on; undefined when the item has no owner. */
export function agreedValue(item: LedgerItem): string | undefined {
  const values = new Set(Object.values(item.owners).map((c) => c.value));
  if (values.size > 1) throw new LedgerError(`owners disagree: ${describeOwners(item)}`);
  return values.values().next().value;
}

/** Whether any owner wants the item persisted. */
export function persisted(item: LedgerItem): boolean {
  return Object.values(item.owners).some((c) => c.persist);
}

function describeOwners(item: LedgerItem): string {
  return Object.values(item.owners).map((c) => `${c.label} wants ${c.value}`).join(", ");
}

export interface Conflict {
  item: string;
  wanted: string;
  other: Claim;
}

/** Items where another owner wants a different value than `claims`. */
export function conflictsWith(ledger: Ledger, isSelf: (ownerId: string) => boolean, claims: Record<string, Claim>): Conflict[] {
  const conflicts: Conflict[] = [];
  for (const [key, claim] of Object.entries(claims)) {
    for (const [owner, other] of Object.entries(ledger.items[key]?.owners ?? {})) {
      if (!isSelf(owner) && other.value !== claim.value) conflicts.push({ item: key, wanted: claim.value, other });
    }
  }
  return conflicts;
}

export interface Reclaimed {
  ledger: Ledger;
  /** Items nobody owns any more, with the value to put back (null: the item didn't exist). */
  released: Record<string, string | null>;
}

/**
 * The ledger after `owner` claims exactly `claims` (and nothing else). `originals` gives the live
 * value of each newly claimed item, recorded only when the item has no owner yet. Items that
 * lose their last owner leave the ledger and are returned for restoring. Pure.
 */
export function reclaim(ledger: Ledger, owner: string, claims: Record<string, Claim>, originals: Record<string, string | null>, alsoRelease: string[] = []): Reclaimed {
  const items: Record<string, LedgerItem> = {};
  const released: Record<string, string | null> = {};
  const leaving = new Set([owner, ...alsoRelease]);
  for (const [key, item] of Object.entries(ledger.items)) {
    const owners = Object.fromEntries(Object.entries(item.owners).filter(([id]) => !leaving.has(id)));
    if (Object.keys(owners).length > 0 || key in claims) items[key] = { original: item.original, owners };
    else released[key] = item.original;
  }
  for (const [key, claim] of Object.entries(claims)) {
    if (!items[key]) {
      if (!(key in originals)) throw new LedgerError(`no original value known for ${key}`);
      items[key] = { original: originals[key], owners: {} };
    }
    items[key].owners[owner] = claim;
  }
  return { ledger: { format: ledgerFormat, items }, released };
}
