import type * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { parseTarget, toTarget, type HostTarget, type StoredConnection } from "./transport/target";

/** What the engine sends for a value it doesn't know yet (preview of a dependent value). */
export const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export function containsUnknown(value: unknown): boolean {
  if (value === unknown) return true;
  if (Array.isArray(value)) return value.some(containsUnknown);
  if (value && typeof value === "object") return Object.values(value).some(containsUnknown);
  return false;
}

/** zod issues → Pulumi check failures ("property" is the dotted input path). */
export function failuresOf(error: z.ZodError, prefix?: string): pulumi.dynamic.CheckFailure[] {
  return error.issues.map((issue) => {
    const path = [prefix, ...issue.path.map(String)].filter(Boolean).join(".");
    return { property: path || prefix || "", reason: issue.message };
  });
}

/** The connection of a resource's stored inputs, validated; throws a readable error if invalid. */
export function targetOf(props: StoredConnection): HostTarget {
  const parsed = parseTarget(props);
  if (!parsed.success) {
    throw new Error(`invalid connection: ${parsed.error.issues.map((i) => `${i.path.join(".") || "connection"}: ${i.message}`).join("; ")}`);
  }
  return toTarget(parsed.data);
}
