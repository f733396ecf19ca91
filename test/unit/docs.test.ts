import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { connectionSchema } from "../../sdk/connection";
import { conntrackLimitsSettingsSchema, timeoutKernelSuffix } from "../../sdk/conntrackLimits.schema";
import { firewallServices, firewallStateSettingsSchema } from "../../sdk/firewallState.schema";
import { kernelModuleSetSettingsSchema } from "../../sdk/kernelModuleSet.schema";
import { notrackRuleSettingsSchema } from "../../sdk/notrackRule.schema";
import { argumentTables, mismatches, outputTables, shapeOf } from "./docsTables";
import { codeMessages, quotedMessages, unprintable } from "./docsMessages";

const root = resolve(import.meta.dirname, "..", "..");
const read = (path: string) => readFileSync(join(root, path), "utf8");
const api = read("docs/api.md");

/** Each section of docs/api.md with an argument table, and the schema that validates it. */
const schemas = {
  Connection: connectionSchema,
  ConntrackLimits: conntrackLimitsSettingsSchema,
  NotrackRule: notrackRuleSettingsSchema,
  FirewallState: firewallStateSettingsSchema,
  KernelModuleSet: kernelModuleSetSettingsSchema,
};

describe("docs/api.md's export table", () => {
  it("names every export of the package root, and nothing else", () => {
    const exported = [...read("sdk/index.ts").matchAll(/^export (?:type )?\{([^}]+)\}/gm)].flatMap((m) => m[1].split(",").map((n) => n.trim()));
    const table = api.slice(api.indexOf("| export | kind |"), api.indexOf("## Connection"));
    const documented = [...table.matchAll(/^\| (.+?) \|/gm)].flatMap((m) => [...m[1].matchAll(/`(\w+)`/g)].map((n) => n[1]));
    expect(documented.sort()).toEqual(exported.sort());
  });
});

describe("docs/api.md's argument tables agree with the zod schemas", () => {
  const rows = argumentTables(api).filter((r) => r.name !== "connection");

  it("documents every field of every schema, and no field a schema lacks", () => {
    for (const [section, schema] of Object.entries(schemas)) {
      const documented = rows.filter((r) => r.section === section).map((r) => r.name).sort();
      expect(documented, section).toEqual(Object.keys(shapeOf(schema)).sort());
    }
  });

  it("states each default, limit and allowed value as the schema has it", () => {
    const wrong = rows.flatMap((row) => mismatches(row, shapeOf(schemas[row.section as keyof typeof schemas])[row.name]));
    expect(wrong).toEqual([]);
  });

  it("names every timeout the schema takes, with its kernel key", () => {
    const timeoutRows = [...api.matchAll(/^\| `(\w+)` \| `(\w+)` \| \d+ \|$/gm)].map((m) => [m[1], m[2]]);
    expect(Object.fromEntries(timeoutRows)).toEqual(timeoutKernelSuffix);
  });
});

describe("docs/api.md's output tables", () => {
  it("list each resource class's declared outputs (sdk/*.ts), and no other", () => {
    const declared: Record<string, string[]> = {};
    for (const file of readdirSync(join(root, "sdk")).filter((f) => f.endsWith(".ts"))) {
      const source = read(join("sdk", file));
      const outputs = [...source.matchAll(/^\s*declare public readonly (\w+)\b/gm)].map((m) => m[1]);
      const resource = /^export class (\w+)/m.exec(source)?.[1];
      if (resource && outputs.length > 0) declared[resource] = outputs.sort();
    }
    const documented = Object.fromEntries(Object.entries(outputTables(api)).map(([section, names]) => [section, names.sort()]));
    expect(Object.keys(declared).length).toBeGreaterThan(0);
    expect(documented).toEqual(declared);
  });
});

describe("README", () => {
  it("lists the FirewallState services the schema takes, and no other", () => {
    const row = read("README.md").split("\n").find((line) => line.startsWith("| `FirewallState` |")) ?? "";
    const listed = [...row.matchAll(/`"([^"`]+)"`/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual([...firewallServices].sort());
  });
});

describe("every message the docs quote is one the code can print", () => {
  const corpus = codeMessages(root);
  for (const doc of ["README.md", "docs/api.md", "docs/troubleshooting.md"]) {
    it(doc, () => {
      const quotes = quotedMessages(read(doc));
      expect(quotes.length).toBeGreaterThan(0);
      expect(quotes.filter((q) => unprintable(q, corpus))).toEqual([]);
    }, 60_000);
  }
});
