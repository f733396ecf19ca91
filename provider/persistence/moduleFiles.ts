import { header, type FileBackend, type PersistedItem } from "./items";

/** Modules the persisted items want "absent" or "loaded" ("module:NAME" items). */
function modulesWanted(items: PersistedItem[], value: "absent" | "loaded"): string[] {
  return items.filter((i) => i.key.startsWith("module:") && i.value === value).map((i) => i.key.slice(7)).sort();
}

/**
 * Keeps modules out of the kernel. A `blacklist` line alone stops only loads by alias (and
 * systemd-modules-load); `install NAME /bin/false` makes every modprobe of the module fail:
 * explicit ones, those for a module that depends on it, and those the kernel asks for when a
 * rule needs it. The file sorts first among modprobe.d files, so our install line is the one
 * kmod uses.
 */
export const moduleBlockBackend: FileBackend = {
  path: "/etc/modprobe.d/00-pulumi-conntrack-modules.conf",
  render({ items, owners }) {
    const modules = modulesWanted(items, "absent");
    if (modules.length === 0) return undefined;
    return header("#", owners.module ?? []) + modules.map((m) => `blacklist ${m}\ninstall ${m} /bin/false\n`).join("");
  },
};

/** Loads modules at boot (systemd-modules-load reads modules-load.d). */
export const moduleLoadBackend: FileBackend = {
  path: "/etc/modules-load.d/pulumi-conntrack.conf",
  render({ items, owners }) {
    const modules = modulesWanted(items, "loaded");
    if (modules.length === 0) return undefined;
    return header("#", owners.module ?? []) + modules.map((m) => `${m}\n`).join("");
  },
};
