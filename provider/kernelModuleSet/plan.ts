import type { KernelModuleSetSettings } from "../../sdk/kernelModuleSet.schema";
import type { HostFacts } from "../facts/host";
import type { KernelModuleFacts } from "../facts/modules";
import type { Intents } from "../engine/hostIntents";
import { currentLedger } from "../engine/plan";
import type { Wanted } from "../engine/transaction";
import { resolveModule, type Resolution } from "./resolve";
import { ruleUsers } from "./users";

/** The facts KernelModuleSet reads (besides the engine's own: system and files). */
export const kernelModuleSetFacts = ["kernelModules", "iptables"] as const;

import { loaded, moduleItem, unloaded } from "../engine/moduleItems";

export interface ModulePlan extends Wanted {
  /** Each name given → what it stands for on this kernel ("xt_CT (an alias of …)", "not in this kernel"). */
  resolved: Record<string, string>;
  /** Modules to keep unloaded or loaded, holders unloaded under force last. */
  modules: string[];
  /** Modules `force` unloads because they hold listed ones (also absent afterwards). */
  holders: string[];
}

/**
 * Whose ledger items need nf_conntrack loaded: conntrack sysctls, its parameters, raw-table rules,
 * and notrack rules with their untracked accepts in each spelling: iptables and firewalld direct
 * rules (`-j CT --notrack`, `--ctstate UNTRACKED`), native nftables (`notrack`, `ct state untracked`).
 */
const needsConntrack = (item: string) =>
  /^sysctl:net\.(netfilter\.nf|ipv4\.netfilter\.ip)_conntrack_/.test(item) ||
  /^param:(nf|ip)_conntrack\./.test(item) ||
  /^rule:v[46]:raw:/.test(item) ||
  /CT --notrack|UNTRACKED/.test(item) ||
  /^nft:.*(\bnotrack\b|\bct state\b)/.test(item);

/** All loaded modules that hold any of `mods`, transitively, not counting `mods` themselves. */
function holdersOf(mods: string[], k: KernelModuleFacts): string[] {
  const out = new Set<string>();
  const todo = [...mods];
  while (todo.length > 0) {
    for (const h of k.loaded[todo.pop()!]?.holders ?? []) if (!out.has(h) && !mods.includes(h)) { out.add(h); todo.push(h); }
  }
  return [...out].sort();
}

/**
 * The pure heart of KernelModuleSet: each name resolved on this kernel, the module items it
 * claims ("absent" or "loaded"), and what stops it. `self` is this resource's ledger label: the
 * holders a forced unload took stay claimed while they are gone (they are no longer holders then).
 */
export function wantKernelModuleSet(settings: KernelModuleSetSettings, facts: HostFacts, self?: { label: string }): ModulePlan {
  const k = facts.kernelModules;
  const blockers: string[] = [];
  const warnings: string[] = [];
  const claims: Wanted["claims"] = {};
  const resolved: Record<string, string> = {};
  const resolutions: Resolution[] = settings.modules.map((n) => resolveModule(n, k));
  for (const r of resolutions) {
    resolved[r.name] = r.found ? (r.module === r.name ? r.how : `${r.module} (${r.how})`) : r.how;
    if (r.found && r.builtin) resolved[r.name] += ", built into the kernel";
  }
  const targets = [...new Set(resolutions.flatMap((r) => (r.found ? [r.module] : [])))].sort();
  const persist = settings.persist;
  const missing = resolutions.filter((r) => !r.found).map((r) => r.name);
  if (settings.state === "present") {
    for (const name of missing) blockers.push(`${name} is not a module of this kernel (${facts.system.kernel}): looked up among its netfilter modules, their aliases, and its loaded and built-in modules`);
    for (const m of targets) {
      if (k.builtin.includes(m) && !k.loaded[m]) continue; // always there
      claims[moduleItem(m)] = { value: loaded, persist };
      for (const rule of k.modprobeRules.filter((x) => x.name === m && !x.file.includes("pulumi-conntrack"))) {
        if (rule.kind === "install") blockers.push(`${rule.file} line ${rule.line} runs "${rule.rest}" instead of loading ${m}: remove that line`);
        if (rule.kind === "blacklist" && persist) warnings.push(`${rule.file} line ${rule.line} blacklists ${m}: systemd-modules-load skips blacklisted modules at boot, so modules-load.d won't load it; remove that line`);
      }
    }
    if (!k.loadable) blockers.push("this kernel loads no modules (no /proc/modules): only built-in modules exist here");
    if (!persist) warnings.push("persist is false: the modules are loaded now but not at the next boot");
    return { claims, warnings, blockers, prepare: [], resolved, modules: targets, holders: [] };
  }

  for (const name of missing) warnings.push(`${name}: ${resolved[name]}; nothing to unload`);
  const builtin = targets.filter((m) => k.builtin.includes(m) && !k.loaded[m]);
  for (const m of builtin) blockers.push(`${m} is built into this kernel (modules.builtin): it can't be unloaded; drop it from modules, or boot a kernel that builds it as a module`);
  const live = targets.filter((m) => k.loaded[m]);
  const holders = holdersOf(live, k);
  // Holders this resource unloaded earlier: no longer loaded, so no longer seen as holders.
  const ledger = currentLedger(facts);
  const heldBefore = Object.entries(ledger.items)
    .filter(([key, item]) => key.startsWith("module:") && Object.values(item.owners).some((c) => c.label === self?.label && c.value === unloaded && !c.persist))
    .map(([key]) => key.slice(7))
    .filter((m) => !targets.includes(m));
  if (holders.length > 0 && !settings.force) {
    const by = live.filter((m) => k.loaded[m].holders.some((h) => !targets.includes(h))).map((m) => `${m} by ${k.loaded[m].holders.filter((h) => !targets.includes(h)).join(", ")}`);
    blockers.push(`modules in use by other modules: ${by.join("; ")}; add them to modules, or set force: true to unload them first`);
  }
  const forced = settings.force ? [...new Set([...holders, ...heldBefore])].sort() : [];
  const unloading = [...live, ...forced.filter((m) => k.loaded[m])];
  const usedByRules = new Set<string>();
  for (const user of ruleUsers(facts.iptables, k)) {
    const hit = unloading.filter((m) => user.modules.has(m));
    hit.forEach((m) => usedByRules.add(m));
    if (hit.length > 0) blockers.push(`${user.what} uses ${hit.join(", ")}: remove or change it first (this resource never removes rules)`);
  }
  for (const m of unloading) {
    const info = k.loaded[m];
    if (info.permanent) blockers.push(`${m} can't be unloaded: it was built without an unload function ([permanent] in /proc/modules)`);
    const others = info.refcount - info.holders.length;
    // Users the ruleset explains are named above; the refcount tells of the others.
    if (others > 0 && !usedByRules.has(m)) {
      blockers.push(`${m} is in use by ${others} user(s) other than modules (refcount ${info.refcount}, modules ${info.holders.length}): rules of nftables or another tool, or open sockets; find and remove them first`);
    }
  }
  if (targets.includes("nf_conntrack")) {
    const owners = new Map<string, string[]>();
    for (const [key, item] of Object.entries(ledger.items)) {
      if (!needsConntrack(key)) continue;
      for (const c of Object.values(item.owners)) owners.set(c.label, [...(owners.get(c.label) ?? []), key]);
    }
    for (const [label, items] of owners) blockers.push(`${label} manages ${items.slice(0, 3).join(", ")}${items.length > 3 ? ` and ${items.length - 3} more` : ""}, which need nf_conntrack: destroy it first, or keep nf_conntrack`);
  }
  for (const m of targets) if (!builtin.includes(m)) claims[moduleItem(m)] = { value: unloaded, persist };
  // Holders can't load again while what they use is kept out, so they need no file of their own.
  for (const m of forced) claims[moduleItem(m)] = { value: unloaded, persist: false };
  if (forced.length > 0) warnings.push(`force: also unloading ${forced.join(", ")}, which hold the listed modules`);
  if (!persist) warnings.push("persist is false: the modules are unloaded now, but anything (a rule, modprobe, the next boot) may load them again");
  if (!k.loadable) blockers.push("this kernel loads no modules (no /proc/modules): its modules are built in and can't be unloaded");
  return { claims, warnings, blockers, prepare: [], resolved, modules: targets, holders: forced };
}

/** What it takes away from or needs on the host, for clashes with other resources in one program. */
export function kernelModuleSetIntents(settings: KernelModuleSetSettings, facts: HostFacts): Intents {
  const plan = wantKernelModuleSet(settings, facts);
  const words = [...plan.modules, ...plan.holders].map((m) => `module ${m}`);
  return settings.state === "absent" ? { needs: [], removes: words } : { needs: words, removes: [] };
}
