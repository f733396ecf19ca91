import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseConntrackFacts, type ConntrackFacts } from "../../provider/facts/conntrack";

export function fixture(name: string): string {
  return readFileSync(join(import.meta.dirname, "..", "fixtures", name), "utf8");
}

export function facts(name: string, patch: Partial<ConntrackFacts> = {}): ConntrackFacts {
  return { ...parseConntrackFacts(fixture(`conntrack-facts/${name}.txt`)), ...patch };
}
