import type { HostFacts } from "../facts/host";
import type { KernelModuleFacts } from "../facts/modules";
import { run, tryRun, type Step } from "./commands";
import type { Ledger } from "./ledger";

/** Ledger item key of a module: "module:nf_conntrack", value "loaded" or "absent". */
export const moduleItem = (module: string) => `module:${module}`;
export const loaded = "loaded";
export const unloaded = "absent";

/**
 * Labels of the owners (of any stack) that keep `module` unloaded on this host (a KernelModuleSet
 * with state "absent"): a resource that needs the module is refused naming them, rather than
 * failing later at the module load their modprobe.d line blocks.
 */
export function keptUnloadedBy(ledger: Ledger, module: string): string[] {
  const item = ledger.items[moduleItem(module)];
  return item ? Object.values(item.owners).filter((c) => c.value === unloaded).map((c) => c.label).sort() : [];
}

/**
 * `modules` in an order that unloads them all: each module after every loaded module that holds
 * it (holders first), whatever order they were given in.
 */
export function unloadOrder(modules: string[], k: KernelModuleFacts): string[] {
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (m: string) => {
    if (visiting.has(m)) return;
    visiting.add(m);
    for (const h of k.loaded[m]?.holders ?? []) if (modules.includes(h)) visit(h);
    order.push(m);
  };
  for (const m of [...modules].sort()) visit(m);
  return order;
}

/**
 * Kernel modules: "loaded" (in /proc/modules, or built in) or "absent". Unloads go one rmmod per
 * module, holders first, so a failure names the module the kernel refused; rmmod rather than
 * `modprobe -r`, which would also take out dependencies nobody asked about. Loads go through
 * modprobe (dependencies and modprobe.d options included), then wait for udev, whose rules may
 * set values when a module appears (ConntrackLimits' sysctls).
 */
// Typed by its place in items.ts' drivers (importing ItemDriver here would close an import cycle).
export const moduleDriver = {
  live(name: string, facts: HostFacts): string | undefined {
    const k = facts.kernelModules;
    if (!k) return undefined;
    return k.loaded[name] || k.builtin.includes(name) ? loaded : unloaded;
  },
  set(changes: Array<{ name: string; to: string | null }>, facts: HostFacts): Step[] {
    const k = facts.kernelModules;
    const unload = changes.filter((c) => c.to === unloaded).map((c) => c.name);
    const load = changes.filter((c) => c.to === loaded).map((c) => c.name).sort();
    const steps: Step[] = unloadOrder(unload, k).map((m) => run(`unload ${m}`, "rmmod", m));
    steps.push(...load.map((m) => run(`load ${m}`, "modprobe", m)));
    if (load.length > 0 && facts.system.udevadm) steps.push(tryRun("wait for udev", "udevadm", "settle", "--timeout=30"));
    return steps;
  },
};
