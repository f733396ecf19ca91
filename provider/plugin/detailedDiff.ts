import type { Diffed } from "../engine/resource";

/** The engine's kinds of a property's difference (pulumirpc.PropertyDiff.Kind). */
export type DiffKind = "ADD" | "ADD_REPLACE" | "DELETE" | "DELETE_REPLACE" | "UPDATE" | "UPDATE_REPLACE";

/**
 * One entry per property path. The engine displays each with the old value from the stored
 * outputs (or, with `inputDiff`, the stored inputs) and the new one from the inputs `check`
 * returned: engine/detailedDiff.go, TranslateDetailedDiff.
 */
export type DetailedDiff = Record<string, { kind: DiffKind; inputDiff: boolean }>;

/** A property path the engine parses back into the same keys (resource.ParsePropertyPath). */
export function propertyPath(keys: ReadonlyArray<string | number>): string {
  return keys
    .map((k, i) => (typeof k === "number" ? `[${k}]` : /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? `${i === 0 ? "" : "."}${k}` : `["${k.replace(/"/g, '\\"')}"]`))
    .join("");
}

type Values = Record<string, unknown>;
const isPlainObject = (v: unknown): v is Values => typeof v === "object" && v !== null && !Array.isArray(v);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The leaves where two values differ: objects key by key, anything else whole. */
function leaves(path: Array<string | number>, before: unknown, after: unknown, out: Array<{ path: Array<string | number>; kind: DiffKind }>): void {
  if (same(before, after)) return;
  if (before === undefined || before === null) out.push({ path, kind: "ADD" });
  else if (after === undefined || after === null) out.push({ path, kind: "DELETE" });
  else if (isPlainObject(before) && isPlainObject(after)) for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) leaves([...path, k], before[k], after[k], out);
  else out.push({ path, kind: "UPDATE" });
}

const replacing: Record<DiffKind, DiffKind> = { ADD: "ADD_REPLACE", DELETE: "DELETE_REPLACE", UPDATE: "UPDATE_REPLACE", ADD_REPLACE: "ADD_REPLACE", DELETE_REPLACE: "DELETE_REPLACE", UPDATE_REPLACE: "UPDATE_REPLACE" };

export interface DiffInput {
  /** The stored outputs; after the refresh before the update, their `live` is the host's now. */
  oldOutputs: Values;
  /** The stored inputs. */
  oldInputs: Values;
  /** What `check` returned: the settings, the connection, `live` as the host will hold it after the up, `plan`. */
  news: Values;
  diffed: Diffed;
  settingFields: readonly string[];
}

/**
 * Per key, why the resource changes: each host value from what the host holds to what it will
 * hold (`live`), each other step of the plan (a file to write, the ledger), each setting and
 * connection field the program changed; the host and port that replace the resource say so.
 */
export function detailedDiff({ oldOutputs, oldInputs, news, diffed, settingFields }: DiffInput): DetailedDiff {
  const out: DetailedDiff = {};
  const hostNow = isPlainObject(oldOutputs.live) ? oldOutputs.live : {};
  const hostAfter = isPlainObject(news.live) ? news.live : undefined;
  if (hostAfter) {
    for (const key of new Set([...Object.keys(hostNow), ...Object.keys(hostAfter)])) {
      const before = hostNow[key];
      const after = hostAfter[key];
      if (before === after) continue;
      out[propertyPath(["live", key])] = { kind: before === undefined ? "ADD" : after === undefined ? "DELETE" : "UPDATE", inputDiff: false };
    }
  }
  if (isPlainObject(news.plan)) {
    for (const step of Object.keys(news.plan)) if (!hostAfter || !(step in hostAfter)) out[propertyPath(["plan", step])] = { kind: "ADD", inputDiff: false };
  }
  const changes: Array<{ path: Array<string | number>; kind: DiffKind }> = [];
  for (const field of diffed.settings) if (settingFields.includes(field)) leaves([field], oldInputs[field], news[field], changes);
  if (diffed.connection) leaves(["connection"], oldInputs.connection, news.connection, changes);
  const replaced = diffed.replaces.includes("connection");
  let replaceShown = false;
  for (const { path, kind } of changes) {
    const address = path[0] === "connection" && path.length === 2 && (path[1] === "host" || path[1] === "port");
    replaceShown ||= address && replaced;
    out[propertyPath(path)] = { kind: address && replaced ? replacing[kind] : kind, inputDiff: true };
  }
  // The address replaces the resource but no field of it differs as written (a whole connection
  // not known yet in a preview): the connection as a whole forces it.
  if (replaced && !replaceShown) out.connection = { kind: "UPDATE_REPLACE", inputDiff: true };
  return out;
}
