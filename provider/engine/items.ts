import type { HostFacts } from "../facts/host";
import { hasToken, iptablesConfigPath, withToken } from "../persistence/iptablesConfig";
import { writeFile, writeValue, type Step } from "./commands";

/**
 * The kinds of item the ledger records, and for each how to read its live value from the facts
 * and how to set it. An item key is "<kind>:<name>":
 * - "sysctl:net.netfilter.nf_conntrack_max": a sysctl;
 * - "param:nf_conntrack.hashsize": a module parameter under /sys/module;
 * - "token:/etc/sysconfig/iptables-config:.nf_conntrack": a token of IPTABLES_SYSCTL_LOAD_LIST.
 * A live value of undefined means "can't be read now" (the module isn't loaded): nothing to
 * compare, and persistence applies the value when the module loads.
 */
export interface ItemDriver {
  live(name: string, facts: HostFacts): string | null | undefined;
  /** Steps that make the live value `value` (null: the item should not exist). */
  set(name: string, value: string | null, facts: HostFacts): Step[];
}

export const present = "present";
export const absent = "absent";

const sysctl: ItemDriver = {
  // A key the kernel doesn't list exists nowhere while its module is loaded (null); before the
  // module loads it can't be told (undefined).
  live: (name, facts) => facts.conntrackSysctl.values[name] ?? (["loaded", "builtin"].includes(facts.conntrackModule.state) ? null : undefined),
  set: (name, value) => (value === null ? [] : [writeValue(`set ${name} to ${value}`, `/proc/sys/${name.replace(/\./g, "/")}`, value)]),
};

const param: ItemDriver = {
  live(name, facts) {
    const [module, p] = name.split(".");
    if (p !== "hashsize" || facts.conntrackModule.name !== module || !["loaded", "builtin"].includes(facts.conntrackModule.state)) return undefined;
    return facts.conntrackTable.hashsize === undefined ? undefined : String(facts.conntrackTable.hashsize);
  },
  set(name, value) {
    const [module, p] = name.split(".");
    return value === null ? [] : [writeValue(`set ${module} ${p} to ${value}`, `/sys/module/${module}/parameters/${p}`, value)];
  },
};

const token: ItemDriver = {
  live(name, facts) {
    const { path, token: t } = splitToken(name);
    const content = facts.files[path];
    if (content === undefined) return undefined;
    return hasToken(content, t) ? present : absent;
  },
  set(name, value, facts) {
    const { path, token: t } = splitToken(name);
    const content = facts.files[path];
    if (content === undefined) return [];
    return writeFile(path, withToken(content, t, value === present));
  },
};

function splitToken(name: string): { path: string; token: string } {
  const colon = name.lastIndexOf(":");
  const path = name.slice(0, colon);
  if (path !== iptablesConfigPath) throw new Error(`unknown token file ${path}`);
  return { path, token: name.slice(colon + 1) };
}

const drivers: Record<string, ItemDriver> = { sysctl, param, token };

export function driverOf(itemKey: string): { driver: ItemDriver; name: string } {
  const colon = itemKey.indexOf(":");
  const driver = drivers[itemKey.slice(0, colon)];
  if (!driver) throw new Error(`unknown item kind in ${itemKey}`);
  return { driver, name: itemKey.slice(colon + 1) };
}

export function liveValue(itemKey: string, facts: HostFacts): string | null | undefined {
  const { driver, name } = driverOf(itemKey);
  return driver.live(name, facts);
}
