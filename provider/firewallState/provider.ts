import { firewallStateSettingsSchema, type FirewallStateSettings } from "../../sdk/firewallState.schema";
import { engineProvider } from "../engine/dynamicProvider";
import type { ResourceSpec } from "../engine/resource";
import type { ResourceKind } from "../engine/transaction";
import { firewallStateFacts, firewallStateIntents, wantFirewallState } from "./plan";

export const firewallStateKind: ResourceKind<FirewallStateSettings> = {
  type: "FirewallState",
  facts: [...firewallStateFacts],
  backends: [],
  want: wantFirewallState,
  // Stopping or disabling a firewall takes away what a NotrackRule persisting through it needs.
  intents: firewallStateIntents,
};

/** "service-running:firewalld" → "firewalld running"; "service-enabled:firewalld" → "firewalld at boot". */
export function firewallItemDisplay(item: string): string {
  const colon = item.indexOf(":");
  const unit = item.slice(colon + 1);
  return item.startsWith("service-running:") ? `${unit} running` : item.startsWith("service-enabled:") ? `${unit} at boot` : item;
}

/** What the engine needs to know of a FirewallState, for both front doors. */
export const firewallStateSpec: ResourceSpec<FirewallStateSettings> = {
  kind: firewallStateKind,
  schema: firewallStateSettingsSchema,
  settingFields: ["service", "running", "enabled", "force"],
  defaults: { force: false },
  display: firewallItemDisplay,
};

export const firewallStateProvider = engineProvider(firewallStateSpec);

