export type { Connection, ConnectionInput } from "./connection";
export { ConntrackLimits } from "./conntrackLimits";
export type { ConntrackLimitsArgs, ConntrackTimeouts } from "./conntrackLimits";
export { NotrackRule } from "./notrackRule";
export type { NotrackRuleArgs } from "./notrackRule";
export { FirewallState } from "./firewallState";
export type { FirewallStateArgs } from "./firewallState";
export { getConntrackStatus, getConntrackStatusOutput } from "./getConntrackStatus";
export type { ConntrackStatus, GetConntrackStatusArgs, GetConntrackStatusOutputArgs } from "./getConntrackStatus";
