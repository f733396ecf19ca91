import { z } from "zod";

/**
 * A kernel module name or alias as modprobe takes it: letters, digits, "_" and "-" (alike to the
 * kernel), at most 55 characters (the kernel's MODULE_NAME_LEN less its terminator). Nothing
 * else can reach modprobe, rmmod or a modprobe.d line.
 */
export const moduleNameSchema = z
  .string({ error: "a module name must be a string" })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, 'a module name takes only letters, digits, "_" and "-" (e.g. "nf_conntrack")')
  .max(55, "a module name has at most 55 characters");

/** The settings of a KernelModuleSet resource, validated before anything reaches a host. */
export const kernelModuleSetSettingsSchema = z.strictObject({
  modules: z
    .array(moduleNameSchema, { error: "modules must be a list of module names" })
    .min(1, "modules must name at least one module")
    .max(64, "modules takes at most 64 names")
    .refine((names) => new Set(names.map((n) => n.replace(/-/g, "_"))).size === names.length, "modules names a module twice"),
  state: z.enum(["absent", "present"], { error: 'state must be "absent" or "present"' }).default("absent"),
  persist: z.boolean({ error: "persist must be true or false" }).default(true),
  force: z.boolean({ error: "force must be true or false" }).default(false),
});

export type KernelModuleSetSettings = z.output<typeof kernelModuleSetSettingsSchema>;
