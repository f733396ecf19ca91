import type { FactReader } from "./reader";

/** A module in /proc/modules. */
export interface LoadedModule {
  /** References held on it: one per module that uses it, plus other users (rules, sockets...). */
  refcount: number;
  /** Modules that use it ("used by" in /proc/modules, the same as /sys/module/NAME/holders). */
  holders: string[];
  /** Built without an exit function: the kernel can't unload it ("[permanent]"). */
  permanent: boolean;
}

/** A modprobe.d line that changes how a name loads: `install`, `blacklist` or `alias`. */
export interface ModprobeRule {
  file: string;
  line: number;
  kind: "install" | "blacklist" | "alias";
  /** The module (or alias) name it applies to, dashes as underscores. */
  name: string;
  /** The rest of the line: the install command, or the alias's target. */
  rest: string;
}

/**
 * What the kernel's module tools know, read without loading anything. Only the netfilter part of
 * the module index is read (modules under kernel/net/…/netfilter and the aliases that point at
 * them): what a resolver needs for the modules this package is about, in a few kilobytes.
 */
export interface KernelModuleFacts {
  /** False when the kernel has no loadable module support (no /proc/modules). */
  loadable: boolean;
  loaded: Record<string, LoadedModule>;
  /** Modules built into the kernel (modules.builtin). */
  builtin: string[];
  /** Netfilter modules this kernel has as files (modules.dep). */
  netfilter: string[];
  /** modules.alias entries whose target is one of those: alias → module. */
  aliases: Record<string, string>;
  /** install/blacklist/alias lines of modprobe.d, as kmod reads them (a file name in an earlier directory hides the same name later). */
  modprobeRules: ModprobeRule[];
}

/** Kernel module names treat "-" and "_" alike; the kernel prints "_". */
export const normalModuleName = (name: string) => name.replace(/-/g, "_");

const modprobeDirs = ["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"];

export const kernelModulesReader: FactReader<KernelModuleFacts> = {
  name: "kernel-modules",
  script: `
[ -e /proc/modules ] && echo "loadable" && sed -n 's/^\\([^ ]*\\) [0-9]* \\([0-9-]*\\) \\([^ ]*\\) .*/loaded \\1 \\2 \\3/p' /proc/modules
K=/lib/modules/$(uname -r)
[ -r $K/modules.builtin ] && echo "builtin $(sed 's|.*/||; s/\\.ko$//' $K/modules.builtin | tr '\\n' ' ')"
[ -r $K/modules.dep ] && awk 'FNR == NR { if ($1 ~ /\\/netfilter\\//) { n = $1; sub(/:.*/, "", n); sub(/.*\\//, "", n); sub(/\\.ko.*/, "", n); gsub(/-/, "_", n); nf[n] = 1; print "netfilter", n }; next }
  $1 == "alias" && $2 !~ /:/ && ($3 in nf) { print "alias", $2, $3 }' $K/modules.dep $K/modules.alias 2>/dev/null
grep -HnE '^[[:space:]]*(install|blacklist|alias)[[:space:]]' ${modprobeDirs.map((d) => `${d}/*.conf`).join(" ")} 2>/dev/null
true
`,
  parse(lines) {
    const facts: KernelModuleFacts = { loadable: false, loaded: {}, builtin: [], netfilter: [], aliases: {}, modprobeRules: [] };
    const seenFiles = new Map<string, string>(); // base name → the directory kmod takes it from
    for (const line of lines) {
      const [tag, ...rest] = line.split(" ");
      if (line === "loadable") facts.loadable = true;
      else if (tag === "loaded" && rest.length === 3) {
        const [name, refs, users] = rest;
        const names = users.split(",").filter((u) => u !== "" && u !== "-" && !u.startsWith("["));
        facts.loaded[name] = { refcount: refs === "-" ? 0 : Number(refs), holders: names.sort(), permanent: users.includes("[permanent]") };
      } else if (tag === "builtin") facts.builtin.push(...rest.filter(Boolean).map(normalModuleName));
      else if (tag === "netfilter" && rest[0]) facts.netfilter.push(rest[0]);
      else if (tag === "alias" && rest.length === 2) facts.aliases[normalModuleName(rest[0])] ??= rest[1];
      else {
        const m = /^(.+?):(\d+):\s*(install|blacklist|alias)\s+(\S+)\s*(.*?)\s*$/.exec(line);
        if (!m) continue;
        const base = m[1].slice(m[1].lastIndexOf("/") + 1);
        const dir = m[1].slice(0, m[1].lastIndexOf("/"));
        if ((seenFiles.get(base) ?? dir) !== dir) continue; // hidden by a file of that name read first
        seenFiles.set(base, dir);
        facts.modprobeRules.push({ file: m[1], line: Number(m[2]), kind: m[3] as ModprobeRule["kind"], name: normalModuleName(m[4]), rest: m[5] });
      }
    }
    return facts;
  },
};
