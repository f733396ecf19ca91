import { z } from "zod";

/** A wave's size: a number of hosts, or a percentage of all of the fleet's hosts ("25%"). */
export type WaveSize = number | `${number}%`;

const waveSize = z.union([
  z.number().int("a wave's size must be a whole number of hosts").min(1, "a wave has at least 1 host"),
  z.string().regex(/^(100|[1-9][0-9]?)(\.[0-9]+)?%$/, 'a percentage wave is written like "25%", from 1% to 100%'),
]);

/** Fleet's rollout options, validated when the Fleet is constructed (before any host is contacted). */
export const rolloutSchema = z
  .object({
    waves: z.array(waveSize).min(1, "waves needs at least one size").optional(),
    maxFailures: z.number().int("maxFailures must be a whole number").min(0, "maxFailures can't be negative").optional(),
    healthCheck: z
      .object({
        maxUsage: z.number().gt(0, "maxUsage is a fraction of nf_conntrack_max above 0").max(1, "maxUsage is a fraction of nf_conntrack_max, at most 1").optional(),
        noNewDrops: z.boolean().optional(),
        soakSeconds: z.number().int("soakSeconds must be a whole number").min(0, "soakSeconds can't be negative").max(3600, "soakSeconds is at most 3600").optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** Host names name resources and ledger owners: keep them to what both accept. */
export const fleetHostNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "a host's name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");

/**
 * Splits hosts, in the order given, into waves of the sizes given; the last size repeats until
 * every host has a wave (as Ansible's `serial` does). A percentage is of all hosts, rounded up.
 */
export function splitIntoWaves<T>(hosts: readonly T[], sizes: readonly WaveSize[]): T[][] {
  const waves: T[][] = [];
  let next = 0;
  for (let i = 0; next < hosts.length; i++) {
    const size = sizes[Math.min(i, sizes.length - 1)];
    const count = typeof size === "number" ? size : Math.max(1, Math.ceil((hosts.length * Number(size.slice(0, -1))) / 100));
    waves.push(hosts.slice(next, next + count));
    next += count;
  }
  return waves;
}
