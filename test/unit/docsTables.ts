// Reads docs/api.md's argument tables and checks what they say against the zod schemas (used by
// docs.test.ts). Each check returns the mismatches as sentences, so a failure names the row.
import { isDeepStrictEqual } from "node:util";
import type { z } from "zod";

export interface ArgumentRow {
  section: string;
  name: string;
  type: string;
  default: string;
  meaning: string;
}

const cells = (line: string) => line.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));

/** The rows of every table under `## <section>` whose header has "default" and "meaning" columns. */
export function argumentTables(markdown: string): ArgumentRow[] {
  const rows: ArgumentRow[] = [];
  let section = "";
  let header: string[] | undefined;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("## ")) section = line.slice(3).trim();
    if (!line.startsWith("|")) {
      header = undefined;
      continue;
    }
    const c = cells(line);
    if (!header) {
      header = c;
      continue;
    }
    if (c.every((x) => /^-+$/.test(x)) || !header.includes("default") || !header.includes("meaning")) continue;
    const at = (column: string) => c[header!.indexOf(column)] ?? "";
    rows.push({ section, name: at(header[0]).replace(/`/g, ""), type: header.includes("type") ? at("type") : "", default: at("default"), meaning: at("meaning") });
  }
  return rows;
}

/** The names in the first column of the table under each `## <section>`'s `### Outputs`. */
export function outputTables(markdown: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  let section = "";
  let inOutputs = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("## ")) section = line.slice(3).trim();
    if (line.startsWith("#")) inOutputs = line.trim() === "### Outputs";
    const name = inOutputs ? /^\| `(\w+)` \|/.exec(line)?.[1] : undefined;
    if (name) (out[section] ??= []).push(name);
  }
  return out;
}

type Schema = z.ZodType;
const def = (s: Schema) => (s as unknown as { def: { type: string; innerType?: Schema; element?: Schema; shape?: Record<string, Schema>; options?: Schema[]; entries?: Record<string, string> } }).def;

/** The schema under its default/optional wrappers. */
function unwrapped(s: Schema): Schema {
  let inner = s;
  while (["default", "optional", "nullable"].includes(def(inner).type)) inner = def(inner).innerType!;
  return inner;
}

/** Where a documented limit applies: the field itself, its array's elements, or its object's members. */
function limitTargets(s: Schema): Schema[] {
  const inner = unwrapped(s);
  const d = def(inner);
  if (d.type === "array") return limitTargets(d.element!);
  if (d.type === "object") return Object.values(d.shape!).flatMap(limitTargets);
  if (d.type === "union") return d.options!.flatMap((o) => (def(unwrapped(o)).type === "number" ? [o] : []));
  return [inner];
}

const superscript = "⁰¹²³⁴⁵⁶⁷⁸⁹";
/** "65535", "2147483", "2²⁸" → a number. */
function numberOf(text: string): number {
  const power = /^(\d+)([⁰¹²³⁴⁵⁶⁷⁸⁹]+)$/.exec(text);
  if (!power) return Number(text.replace(/,/g, ""));
  return Number(power[1]) ** Number([...power[2]].map((ch) => superscript.indexOf(ch)).join(""));
}

const accepts = (s: Schema, v: unknown) => s.safeParse(v).success;

/** Samples the schema accepts as array elements: ports 1, 2, ..., or names m1, m2, ... */
function elements(s: Schema, n: number): unknown[] {
  const element = def(unwrapped(s)).element!;
  const numbers = Array.from({ length: n }, (_, i) => i + 1);
  return accepts(element, 1) ? numbers : numbers.map((i) => `m${i}`);
}

/** Each documented default, limit and allowed value of `row`, checked against `field`. */
export function mismatches(row: ArgumentRow, field: Schema): string[] {
  const out: string[] = [];
  const where = `${row.section} ${row.name}`;
  const parsedDefault = field.safeParse(undefined);
  const literal = /^`([^`]+)`$/.exec(row.default)?.[1];
  let documented: unknown;
  try {
    documented = literal === undefined ? undefined : JSON.parse(literal);
  } catch {
    documented = undefined;
  }
  if (row.default === "required") {
    if (parsedDefault.success) out.push(`${where}: documented as required, but the schema accepts it left out`);
  } else if (documented !== undefined) {
    if (!parsedDefault.success || !isDeepStrictEqual(parsedDefault.data, documented)) out.push(`${where}: documented default ${literal}, schema default ${JSON.stringify(parsedDefault.success ? parsedDefault.data : "(required)")}`);
  } else if (!parsedDefault.success || parsedDefault.data !== undefined) {
    // "unmanaged", "—" or a sentence: the schema leaves the field out and the provider decides.
    out.push(`${where}: documented default "${row.default}", but the schema sets ${JSON.stringify(parsedDefault.success ? parsedDefault.data : "(required)")}`);
  }

  const targets = limitTargets(field);
  const text = row.meaning;
  // "1–65535", "1-1000", "1–2²⁸"; not "6.x" or a version.
  for (const m of text.matchAll(/(?<![\w.])(\d+[⁰¹²³⁴⁵⁶⁷⁸⁹]+|\d[\d,]*)\s*[–-]\s*(\d+[⁰¹²³⁴⁵⁶⁷⁸⁹]+|\d[\d,]*)(?!\d|\.\d|[a-z])/g)) {
    const [lo, hi] = [numberOf(m[1]), numberOf(m[2])];
    for (const t of targets) {
      if (!accepts(t, lo) || !accepts(t, hi) || accepts(t, lo - 1) || accepts(t, hi + 1)) out.push(`${where}: documented range ${m[0]}, but the schema ${accepts(t, lo) && accepts(t, hi) ? "accepts more" : "refuses part of it"}`);
    }
  }
  for (const m of text.matchAll(/\bup to (\d[\d,]*)\b/g)) {
    const hi = numberOf(m[1]);
    for (const t of targets) if (!accepts(t, hi) || accepts(t, hi + 1)) out.push(`${where}: documented "up to ${m[1]}", but the schema's bound differs`);
  }
  if (/\bwhole numbers?\b/i.test(text)) for (const t of targets) if (accepts(t, 1.5)) out.push(`${where}: documented as whole, but the schema accepts 1.5`);
  const characters = /at most (\d+) characters/.exec(text);
  if (characters) {
    const element = def(unwrapped(field)).element!;
    const n = Number(characters[1]);
    if (!accepts(element, "m".repeat(n)) || accepts(element, "m".repeat(n + 1))) out.push(`${where}: documented "at most ${n} characters", but the schema's bound differs`);
  }
  const count = /at most (\d+)\b(?! characters)/.exec(text);
  if (count) {
    const n = Number(count[1]);
    if (!accepts(field, elements(field, n)) || accepts(field, elements(field, n + 1))) out.push(`${where}: documented "at most ${n}" entries, but the schema's bound differs`);
  }

  // Allowed values: every quoted literal of an enum's row, exactly the enum's options.
  const inner = unwrapped(field);
  if (def(inner).type === "enum") {
    const quoted = new Set([...`${row.type} ${row.meaning} ${row.default}`.matchAll(/`"([^"`]+)"`/g)].map((m) => m[1]));
    const options = new Set(Object.values(def(inner).entries!));
    if (!isDeepStrictEqual(quoted, options)) out.push(`${where}: documents ${[...quoted].sort().join(", ")}; the schema takes ${[...options].sort().join(", ")}`);
  }
  for (const m of row.meaning.matchAll(/`(\[[\d, ]*\])`/g)) if (!accepts(field, JSON.parse(m[1]))) out.push(`${where}: documents ${m[1]}, which the schema refuses`);
  return out;
}

/** The object fields a schema takes, by name. */
export const shapeOf = (s: Schema): Record<string, Schema> => def(unwrapped(s)).shape!;
