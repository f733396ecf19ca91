import { normalModuleName, type KernelModuleFacts } from "../facts/modules";

/** What one name given by the user stands for on this kernel. */
export type Resolution =
  | { name: string; found: true; module: string; builtin: boolean; how: string }
  | { name: string; found: false; how: string };

/** Why some names of old guides are missing from current kernels (shown beside "not in this kernel"). */
const history: Record<string, string> = {
  nf_conntrack_ipv4: "merged into nf_conntrack in Linux 4.19",
  nf_conntrack_ipv6: "merged into nf_conntrack in Linux 4.19",
  ip_conntrack: "renamed nf_conntrack in Linux 2.6.20",
};

/** Whether the kernel has `name` as a module of its own (loaded, built in, or a netfilter module file). */
export function isModule(name: string, k: KernelModuleFacts): boolean {
  return k.loaded[name] !== undefined || k.builtin.includes(name) || k.netfilter.includes(name);
}

function found(name: string, module: string, k: KernelModuleFacts, how: string): Resolution {
  return { name, found: true, module, builtin: k.builtin.includes(module) && k.loaded[module] === undefined, how };
}

/**
 * Resolves a name the way `modprobe -R` does, in kmod's order: an `alias` line of modprobe.d
 * (not ours), the module itself, then the kernel's modules.alias. One step further than modprobe:
 * "xt_X" that no module or alias answers is looked up as the names x_tables asks for when a rule
 * uses match or target X ("ipt_X", "ip6t_X"), so the seed's xt_NOTRACK finds xt_CT, which serves
 * -j NOTRACK on current kernels. Looks only among the netfilter modules, loaded and built-in ones.
 */
export function resolveModule(given: string, k: KernelModuleFacts): Resolution {
  const name = normalModuleName(given);
  const configured = k.modprobeRules.find((r) => r.kind === "alias" && r.name === name && !r.file.includes("pulumi-conntrack"));
  if (configured) {
    const target = normalModuleName(configured.rest.split(/\s+/)[0] ?? "");
    if (isModule(target, k)) return found(given, target, k, `alias in ${configured.file} line ${configured.line}`);
  }
  if (isModule(name, k)) return found(given, name, k, name === given ? "a module" : "a module (- and _ are alike)");
  const aliased = aliasOf(name, k);
  if (aliased) return found(given, aliased, k, "alias in modules.alias");
  const xt = /^xt_(.+)$/.exec(name);
  if (xt) {
    for (const asked of [`ipt_${xt[1]}`, `ip6t_${xt[1]}`]) {
      const target = aliasOf(asked, k);
      if (target) return found(given, target, k, `no module or alias ${name} here; x_tables loads ${target} for ${xt[1]} (alias ${asked})`);
    }
  }
  const why = history[name];
  return { name: given, found: false, how: `not in this kernel${why ? ` (${why})` : ""}` };
}

/** modules.alias lookup, exact names first, then its shell patterns ("nfct-helper-*"). */
function aliasOf(name: string, k: KernelModuleFacts): string | undefined {
  if (k.aliases[name]) return k.aliases[name];
  for (const [pattern, target] of Object.entries(k.aliases)) {
    if (!/[*?[]/.test(pattern)) continue;
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
    if (re.test(name)) return target;
  }
  return undefined;
}
