import { z } from "zod";

/** Timeout names accepted in `timeouts`, and the kernel suffix each one maps to. */
export const timeoutKernelSuffix = {
  tcpEstablished: "tcp_timeout_established",
  tcpTimeWait: "tcp_timeout_time_wait",
  tcpCloseWait: "tcp_timeout_close_wait",
  tcpFinWait: "tcp_timeout_fin_wait",
  tcpSynSent: "tcp_timeout_syn_sent",
  tcpSynRecv: "tcp_timeout_syn_recv",
  tcpLastAck: "tcp_timeout_last_ack",
  tcpClose: "tcp_timeout_close",
  udp: "udp_timeout",
  udpStream: "udp_timeout_stream",
  icmp: "icmp_timeout",
  generic: "generic_timeout",
} as const;

export type TimeoutName = keyof typeof timeoutKernelSuffix;

/** Upper bounds: far above any sane host, low enough to catch a typo of a few extra digits. */
export const limits = {
  /** 2^28 entries would take ~80 GiB of kernel memory. */
  maxEntries: 2 ** 28,
  /** 2^26 buckets = 512 MiB of bucket heads alone. */
  maxBuckets: 2 ** 26,
  /** The kernel keeps timeouts in jiffies (32 bit); 2^31/1000 s stays safe at any HZ. */
  maxTimeoutSeconds: 2_147_483,
} as const;

const wholePositive = (field: string, max: number) =>
  z
    .number({ error: (iss) => (iss.input === undefined ? `${field} is required` : `${field} must be a number, not ${typeof iss.input}`) })
    .int(`${field} must be a whole number`)
    .min(1, `${field} must be at least 1`)
    .max(max, `${field} must be at most ${max}`);

const timeoutsShape = Object.fromEntries(
  Object.keys(timeoutKernelSuffix).map((name) => [name, wholePositive(`timeouts.${name}`, limits.maxTimeoutSeconds).optional()]),
) as Record<TimeoutName, z.ZodOptional<z.ZodNumber>>;

export const timeoutsSchema = z
  .strictObject(timeoutsShape, {
    error: (iss) =>
      iss.code === "unrecognized_keys"
        ? `unknown timeout name(s) ${iss.keys.join(", ")}; known: ${Object.keys(timeoutKernelSuffix).join(", ")}`
        : undefined,
  })
  .refine((t) => Object.values(t).some((v) => v !== undefined), "timeouts must name at least one timeout");

/** The settings of a ConntrackLimits resource, validated before anything reaches a host. */
export const conntrackLimitsSettingsSchema = z
  .strictObject({
    max: wholePositive("max", limits.maxEntries).optional(),
    hashsize: wholePositive("hashsize", limits.maxBuckets).optional(),
    timeouts: timeoutsSchema.optional(),
    persist: z.boolean().default(true),
  })
  .refine((s) => s.max !== undefined || s.hashsize !== undefined || s.timeouts !== undefined, {
    message: "nothing to manage: give at least one of max, hashsize, timeouts",
  });

export type ConntrackLimitsSettings = z.output<typeof conntrackLimitsSettingsSchema>;
