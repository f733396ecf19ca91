import { z } from "zod";
import { connectionSchema } from "../../sdk/connection";

/**
 * What the provider plugin's resources and its function return, as zod schemas: the package
 * schema is generated from them and from the settings schemas in sdk/, never written by hand. Each
 * mirrors a type the Node.js SDK declares (test/types/pluginOutputs.ts checks they agree).
 */
const byItem = z.record(z.string(), z.string());

const everyResource = {
  /** By item: the value found before the first owner came, restored when the last leaves. */
  previous: byItem,
  /** By item: the value read at the last create, update or refresh. */
  live: byItem,
  /** pulumi-conntrack's files on the host that persist these settings. */
  files: z.array(z.string()),
  /** What the next apply changes; empty when converged. */
  plan: byItem,
  /** What may undo or hurt these settings (also sent to the engine as warnings). */
  warnings: z.array(z.string()),
};

export const memoryEstimateSchema = z.object({ bytes: z.number(), human: z.string(), formula: z.string() });

export const resourceOutputSchemas = {
  ConntrackLimits: z.object({ ...everyResource, memoryEstimate: memoryEstimateSchema }),
  NotrackRule: z.object(everyResource),
  FirewallState: z.object(everyResource),
  KernelModuleSet: z.object({ ...everyResource, resolved: byItem }),
} as const;

const counter = z.number().int().nullable();

export const conntrackStatusSchema = z.object({
  host: z.string(),
  count: z.number().int(),
  max: z.number().int(),
  buckets: z.number().int(),
  usage: z.number(),
  drop: counter,
  earlyDrop: counter,
  insertFailed: counter,
  tableFullMessages: z.array(z.string()),
});

/** getConntrackStatus's arguments: a connection, as every resource takes it. */
export const conntrackStatusArgsSchema = z.strictObject({ connection: connectionSchema });
