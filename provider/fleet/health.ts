import type { ConntrackStatusFacts } from "../facts/conntrackStatus";

/** One host's conntrack readings as a baseline or gate stores them (or why they couldn't be read). */
export type Reading =
  | { tracking: false }
  | { tracking: true; count: number; max: number; usage: number; drop: number | null; earlyDrop: number | null; insertFailed: number | null; tableFull: number }
  | { error: string };

export function readingOf(facts: ConntrackStatusFacts): Reading {
  if (!facts.tracking) return { tracking: false };
  return {
    tracking: true,
    count: facts.count,
    max: facts.max,
    usage: facts.max > 0 ? Number((facts.count / facts.max).toFixed(4)) : 0,
    drop: facts.drop ?? null,
    earlyDrop: facts.earlyDrop ?? null,
    insertFailed: facts.insertFailed ?? null,
    tableFull: facts.tableFull.length,
  };
}

export interface HealthCheck {
  maxUsage?: number;
  noNewDrops: boolean;
}

const counters = ["drop", "earlyDrop", "insertFailed"] as const;

/**
 * Why a host is unhealthy after its wave's change, compared with its reading before it (empty:
 * healthy). A host that tracks nothing can't fill a table; one that couldn't be read fails (a
 * full table drops new SSH connections too). Counters of a host that tracked nothing before, or
 * whose baseline couldn't be read, count from 0: they start at 0 when nf_conntrack loads.
 */
export function unhealthy(before: Reading | undefined, now: Reading, check: HealthCheck): string[] {
  if ("error" in now) return [`couldn't be read: ${now.error}`];
  if (!now.tracking) return [];
  const problems: string[] = [];
  if (check.maxUsage !== undefined && now.usage > check.maxUsage) {
    problems.push(`usage ${now.usage.toFixed(2)} (${now.count}/${now.max}) is above maxUsage ${check.maxUsage}`);
  }
  if (check.noNewDrops) {
    const base = before && "tracking" in before && before.tracking ? before : undefined;
    for (const c of counters) {
      const was = base?.[c] ?? 0;
      const is = now[c];
      if (is !== null && is > was) problems.push(`${c} rose by ${is - was} (${was} → ${is})`);
    }
    if (now.tableFull > 0 && problems.length > 0) problems.push(`the kernel logs "table full, dropping packet" (${now.tableFull} recent lines)`);
  }
  return problems;
}
