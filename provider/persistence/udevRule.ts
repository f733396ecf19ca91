import { header, sysctlItems, type FileBackend } from "./items";

/**
 * systemd-sysctl skips keys of a module that isn't loaded yet at boot, and nothing re-applies
 * them after the module is unloaded and loaded again (an iptables service restart does that).
 * This rule, documented in sysctl.d(5), re-applies them each time the module loads. Hosts
 * without systemd get the same effect from sysctl(8) reading our sysctl.d file.
 */
export function udevRuleBackend(sysctlFile: string): FileBackend {
  return {
    path: "/etc/udev/rules.d/90-pulumi-conntrack.rules",
    render({ items, owners, systemd, sysctlPath }) {
      const modules = new Set(sysctlItems(items).map((s) => (s.key.includes(".ip_conntrack_") ? "ip_conntrack" : "nf_conntrack")));
      if (modules.size === 0) return undefined;
      const rules = [...modules].sort().map((m) => {
        const prefix = m === "ip_conntrack" ? "/net/ipv4/netfilter" : "/net/netfilter";
        const run = systemd ? `/lib/systemd/systemd-sysctl --prefix=${prefix}` : `${sysctlPath ?? "/sbin/sysctl"} -q -p ${sysctlFile}`;
        return `ACTION=="add", SUBSYSTEM=="module", KERNEL=="${m}", RUN+="${run}"\n`;
      });
      return header("#", owners.sysctl ?? []) + rules.join("");
    },
  };
}
