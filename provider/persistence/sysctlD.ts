import { header, sysctlItems, type FileBackend } from "./items";

/**
 * /etc/sysctl.d: systemd-sysctl (or procps' `sysctl --system`) applies it at boot. Alone it misses
 * keys of a module that loads after boot or is reloaded: see udevRule.ts.
 */
export const sysctlDBackend: FileBackend = {
  path: "/etc/sysctl.d/90-pulumi-conntrack.conf",
  render({ items, owners }) {
    const sysctls = sysctlItems(items).sort((a, b) => a.key.localeCompare(b.key));
    if (sysctls.length === 0) return undefined;
    return header("#", owners.sysctl ?? []) + sysctls.map((s) => `${s.key} = ${s.value}\n`).join("");
  },
};
