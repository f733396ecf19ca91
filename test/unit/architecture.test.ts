import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..", "..");
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}
const importsOf = (file: string) =>
  [...readFileSync(file, "utf8").matchAll(/^(?:import|export)[^"';]*?from\s+"([^"]+)"/gm)].map((m) => m[1]);

describe("architecture", () => {
  it("sdk never imports provider code or SSH libraries (only the stub's runtime require)", () => {
    for (const file of sources(join(root, "sdk"))) {
      for (const spec of importsOf(file)) {
        expect(`${relative(root, file)} → ${spec}`).not.toMatch(/→ (ssh2|.*provider\/)/);
      }
    }
  });
  it("has no import cycles", () => {
    const files = [...sources(join(root, "sdk")), ...sources(join(root, "provider"))];
    const graph = new Map(files.map((f) => [f, importsOf(f).filter((s) => s.startsWith(".")).map((s) => resolve(dirname(f), s) + ".ts")]));
    const state = new Map<string, "visiting" | "done">();
    const visit = (f: string, trail: string[]) => {
      if (state.get(f) === "done") return;
      if (state.get(f) === "visiting") throw new Error(`import cycle: ${[...trail, f].map((p) => relative(root, p)).join(" → ")}`);
      state.set(f, "visiting");
      for (const dep of graph.get(f) ?? []) visit(dep, [...trail, f]);
      state.set(f, "done");
    };
    for (const f of files) expect(() => visit(f, [])).not.toThrow();
  });
  it("builds shell text in one place: no module quotes for the shell itself, and no raw template reaches a host", () => {
    // transport/shell.ts's quote, command and sh make quoting a property of the code (issue 23,
    // item 9): a script sent with run() or hold() is made by them, never by interpolating into a
    // plain template, whatever the values happen to be today.
    const offenders = sources(join(root, "provider"))
      .filter((file) => !file.endsWith(join("transport", "shell.ts")))
      .flatMap((file) => {
        const text = readFileSync(file, "utf8");
        const where = relative(root, file);
        return [
          ...(/replace\(\/'\/g/.test(text) ? [`${where}: escapes single quotes itself`] : []),
          ...[...text.matchAll(/\.(run|hold)\(\s*`/g)].map((m) => `${where}: a plain template sent with ${m[1]}()`),
        ];
      });
    expect(offenders).toEqual([]);
  });
});
