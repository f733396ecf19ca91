import { header, paramItems, type FileBackend } from "./items";

/** /etc/modprobe.d options: module parameters (hashsize) applied at every load of the module. */
export const modprobeDBackend: FileBackend = {
  path: "/etc/modprobe.d/pulumi-conntrack.conf",
  render({ items, owners }) {
    const byModule = new Map<string, string[]>();
    for (const p of paramItems(items).sort((a, b) => a.param.localeCompare(b.param))) {
      byModule.set(p.module, [...(byModule.get(p.module) ?? []), `${p.param}=${p.value}`]);
    }
    if (byModule.size === 0) return undefined;
    return header("#", owners.param ?? []) + [...byModule].sort().map(([m, opts]) => `options ${m} ${opts.join(" ")}\n`).join("");
  },
};
