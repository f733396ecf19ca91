export type { Connection, ConnectionInput } from "./connection";
export { ConntrackLimits } from "./conntrackLimits";
export type { ConntrackLimitsArgs, ConntrackTimeouts } from "./conntrackLimits";
export { NotrackRule } from "./notrackRule";
export type { NotrackRuleArgs } from "./notrackRule";
export { KernelModuleSet } from "./kernelModuleSet";
export type { KernelModuleSetArgs } from "./kernelModuleSet";
export { getConntrackStatus, getConntrackStatusOutput } from "./getConntrackStatus";
export type { ConntrackStatus, GetConntrackStatusArgs, GetConntrackStatusOutputArgs } from "./getConntrackStatus";
