import { z } from "zod";

/** A port ("80" or 80) or an inclusive range ("1000:2000"), as iptables writes them. */
const portNumber = (field: string) => z.number().int(`${field} must be a whole number`).min(1, `${field} must be 1-65535`).max(65535, `${field} must be 1-65535`);

export const portSpecSchema = z.union([
  portNumber("port"),
  z.string().regex(/^\d{1,5}(:\d{1,5})?$/, 'a port must be a number or a "from:to" range').refine((s) => {
    const [from, to = from] = s.split(":").map(Number);
    return from >= 1 && to <= 65535 && from <= to;
  }, 'a port range "from:to" needs 1 <= from <= to <= 65535'),
]);

/** The settings of a NotrackRule resource, validated before anything reaches a host. */
export const notrackRuleSettingsSchema = z.strictObject({
  ports: z.array(portSpecSchema, { error: "ports must be a list of ports or \"from:to\" ranges" }).min(1, "ports must name at least one port").max(64, "ports takes at most 64 entries"),
  protocol: z.enum(["tcp", "udp"], { error: 'protocol must be "tcp" or "udp"' }).default("tcp"),
  side: z.enum(["both", "server", "client"], { error: 'side must be "both", "server" or "client"' }).default("both"),
  ipVersions: z.array(z.union([z.literal(4), z.literal(6)], { error: "ipVersions takes 4 and/or 6" })).min(1, "ipVersions must name 4 or 6").default([4]),
  acceptUntracked: z.boolean().default(true),
  persist: z.boolean().default(true),
  force: z.boolean().default(false),
});

export type NotrackRuleSettings = z.output<typeof notrackRuleSettingsSchema>;
