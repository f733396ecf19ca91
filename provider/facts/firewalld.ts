import type { FactReader } from "./reader";

/**
 * A running firewalld's default zone, the ports open in it and its direct rules, runtime and
 * permanent (firewall-cmd only reads here). Empty when firewalld isn't running.
 */
export interface FirewalldFacts {
  running: boolean;
  zone: string;
  runtimePorts: string[];
  permanentPorts: string[];
  /** Direct rules as `firewall-cmd --direct --get-all-rules` prints them: "ipv4 raw PREROUTING 0 -p tcp ...". */
  runtimeDirect: string[];
  permanentDirect: string[];
}

export const firewalldReader: FactReader<FirewalldFacts> = {
  name: "firewalld",
  script: `
if command -v firewall-cmd >/dev/null 2>&1 && systemctl is-active --quiet firewalld 2>/dev/null; then
  z=$(firewall-cmd --get-default-zone 2>/dev/null)
  echo "zone $z"
  echo "runtime-ports $(firewall-cmd --zone="$z" --list-ports 2>/dev/null)"
  echo "permanent-ports $(firewall-cmd --permanent --zone="$z" --list-ports 2>/dev/null)"
  firewall-cmd --direct --get-all-rules 2>/dev/null | sed 's/^/runtime-direct /'
  firewall-cmd --permanent --direct --get-all-rules 2>/dev/null | sed 's/^/permanent-direct /'
fi
true
`,
  parse(lines) {
    const field = (name: string) => lines.find((l) => l === name || l.startsWith(`${name} `))?.slice(name.length + 1).trim();
    const all = (name: string) => lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
    const zone = field("zone") ?? "";
    return {
      running: zone !== "",
      zone,
      runtimePorts: (field("runtime-ports") ?? "").split(/\s+/).filter(Boolean),
      permanentPorts: (field("permanent-ports") ?? "").split(/\s+/).filter(Boolean),
      runtimeDirect: all("runtime-direct"),
      permanentDirect: all("permanent-direct"),
    };
  },
};

/**
 * Splits a direct rule as firewall-cmd prints it into its arguments: firewalld joins them with
 * Python's shlex.quote, so an argument with a space comes in single quotes (`--comment 'ssh in'`)
 * and a single quote inside one as '"'"'. Splitting on spaces would turn such a rule into another.
 */
export function directRuleWords(line: string): string[] {
  const out: string[] = [];
  let current = "";
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      current += line.slice(i + 1, end === -1 ? line.length : end);
      i = end === -1 ? line.length : end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) current += line[j] === "\\" && j + 1 < line.length ? line[++j] : line[j];
      i = j;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      current += line[++i];
      inWord = true;
    } else if (c === " " || c === "\t") {
      if (inWord) out.push(current);
      current = "";
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (inWord) out.push(current);
  return out;
}

