/**
 * A fact reader is one shell fragment run on the host and one pure parser of what it printed.
 * Readers never change the host: no module loads (`conntrack -C`, `iptables -t nat` under
 * iptables-legacy and `modprobe` all load modules), no files, no locks. The engine batches the
 * readers a host needs into one script, so one round trip reads them all.
 */
export interface FactReader<T> {
  /** Section name in the batched output; unique across readers. */
  name: string;
  /** POSIX sh (dash) fragment; its stdout is this reader's section. */
  script: string;
  /** Pure: the non-empty lines of the section → the fact. */
  parse(lines: string[]): T;
}

export class FactsParseError extends Error {}

const sectionMark = "@@section ";
const endMark = "@@end";

/** One script that runs every reader, each behind its own section marker. */
export function batchScript(readers: FactReader<unknown>[]): string {
  const parts = ["LC_ALL=C; export LC_ALL"];
  for (const r of readers) parts.push(`echo '${sectionMark}${r.name}'`, r.script.trim());
  parts.push(`echo '${endMark}'`);
  return parts.join("\n") + "\n";
}

/** The output of batchScript, split back into each reader's parsed fact. */
export function parseBatch(output: string, readers: FactReader<unknown>[]): Record<string, unknown> {
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  let ended = false;
  for (const line of output.split("\n")) {
    if (line.startsWith(sectionMark)) {
      current = [];
      sections.set(line.slice(sectionMark.length), current);
    } else if (line === endMark) {
      ended = true;
      current = undefined;
    } else if (current && line.trim() !== "") {
      current.push(line);
    }
  }
  if (!ended) throw new FactsParseError("the facts script's output was cut short");
  const facts: Record<string, unknown> = {};
  for (const r of readers) {
    const lines = sections.get(r.name);
    if (!lines) throw new FactsParseError(`the facts script printed no section ${r.name}`);
    facts[r.name] = r.parse(lines);
  }
  return facts;
}
