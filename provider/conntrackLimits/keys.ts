import { timeoutKernelSuffix, type TimeoutName } from "../../sdk/conntrackLimits.schema";
import type { ConntrackModuleName } from "../facts/conntrack";

export type ModuleName = ConntrackModuleName;

/** The sysctl key the host's kernel uses for `max` or a timeout (nf_ names, or legacy ip_ names). */
export function sysctlKey(field: "max" | TimeoutName, module: ModuleName): string {
  const suffix = field === "max" ? "max" : timeoutKernelSuffix[field];
  return module === "ip_conntrack" ? `net.ipv4.netfilter.ip_conntrack_${suffix}` : `net.netfilter.nf_conntrack_${suffix}`;
}

/** How `hashsize` is named in plans, previous values and outputs. */
export function hashsizeKey(module: ModuleName): string {
  return `${module}.hashsize`;
}
