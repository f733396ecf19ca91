import type { FactReader } from "./reader";

/**
 * The tool floor: the commands (and the flags of them that not every implementation has) that
 * the host-side scripts of every change use, whatever the resource: the host lock and the jobs
 * (provider/engine/hostLock.ts, hostJobs.ts), the lockout guard, file writes and the fact readers.
 * Tools only some resources need (iptables, nft, firewall-cmd, systemctl, modprobe, ...) are each
 * resource's own business, looked for when it reads the host. docs/api.md
 * ("What a managed host needs") lists both, and a lab test runs the scripts with busybox's
 * applets first on PATH.
 */
export interface FloorTool {
  /** The command, as the scripts call it. */
  name: string;
  /** What the scripts need of it and where a host gets it, in a user's words: one literal, as the docs quote it. */
  needs: string;
}

const coreutils = (name: string): FloorTool => ({ name, needs: `needs ${name} (GNU coreutils, or busybox)` });

/** Commands our scripts run that must be on the PATH of the SSH session, as they are. */
export const floorCommands: FloorTool[] = [
  { name: "flock", needs: "needs flock with -w and -o (util-linux's flock; busybox's has neither flag)" },
  { name: "setsid", needs: "needs setsid (util-linux, or busybox)" },
  { name: "timeout", needs: "needs timeout (GNU coreutils 7.0 or later, or busybox)" },
  { name: "base64", needs: "needs base64 with -w0 (GNU coreutils, or busybox)" },
  ...["sleep", "cat", "head", "tail", "tr", "sort", "uname", "mkdir", "mv", "cp", "rm", "rmdir", "chmod", "touch"].map(coreutils),
  { name: "grep", needs: "needs grep (GNU grep, or busybox)" },
  { name: "sed", needs: "needs sed (GNU sed, or busybox)" },
  { name: "awk", needs: "needs awk (gawk, mawk, or busybox)" },
];

/**
 * Flags some implementations lack, each probed by running it harmlessly. `flock -s` takes a
 * shared lock on "/" for as long as `true` runs: it creates nothing, and only an exclusive lock
 * on "/", which nothing takes, would wait for it.
 */
const flagProbes: Array<{ name: string; probe: string }> = [
  { name: "flock", probe: "flock -s -w 5 -o / true" },
  { name: "base64", probe: "base64 -w0 </dev/null" },
];

/** What of the floor a host lacks; both empty on a host that has it all (a base Debian, Ubuntu or RHEL). */
export interface ToolFacts {
  /** Commands not on the PATH the scripts run with (the SSH session's, or sudo's secure_path). */
  missing: string[];
  /** Commands there but without a flag the scripts use. */
  lacking: string[];
}

// Reading changes nothing and costs two processes where all is there: `command -v` is the
// shell's own, and the flags are probed in one chain (flock runs base64); only when that chain
// fails is each flag probed alone, to name the one missing. (`sleep 0.2` needs no probe: the
// scripts fall back to whole seconds where sleep takes no fractions.)
export const toolsReader: FactReader<ToolFacts> = {
  name: "tools",
  script: `
for t in ${floorCommands.map((t) => t.name).join(" ")}; do command -v $t >/dev/null 2>&1 || echo "missing $t"; done
flock -s -w 5 -o / base64 -w0 </dev/null >/dev/null 2>&1 || {
${flagProbes.map((p) => `  { ${p.probe}; } >/dev/null 2>&1 || echo "lacks ${p.name}"`).join("\n")}
}
true
`,
  parse(lines) {
    const missing = new Set<string>();
    const lacking = new Set<string>();
    for (const line of lines) {
      const [tag, name, ...rest] = line.trim().split(/\s+/);
      if (rest.length > 0 || !name || !floorCommands.some((t) => t.name === name)) continue;
      if (tag === "missing") missing.add(name);
      else if (tag === "lacks") lacking.add(name);
    }
    return { missing: [...missing].sort(), lacking: [...lacking].filter((n) => !missing.has(n)).sort() };
  },
};

/**
 * Why this host can't take a change (empty when it can): one reason per tool, naming it, what
 * the scripts need of it and where to get it. Pure.
 */
export function floorBlockers(tools: ToolFacts): string[] {
  const needs = (name: string) => floorCommands.find((t) => t.name === name)!.needs;
  return [
    ...tools.missing.map((n) => `${needs(n)}, and the host has no ${n} on the PATH the scripts run with: install it, then run again`),
    ...tools.lacking.map((n) => `${needs(n)}, and the host's ${n} (the first on the PATH the scripts run with) lacks that: install one that has it, then run again`),
  ];
}
