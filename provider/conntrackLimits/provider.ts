import { conntrackLimitsSettingsSchema, type ConntrackLimitsSettings } from "../../sdk/conntrackLimits.schema";
import type { HostFacts } from "../facts/host";
import { liveValue } from "../engine/items";
import { engineProvider } from "../engine/dynamicProvider";
import type { BaseOutputs, ResourceSpec } from "../engine/resource";
import type { ResourceKind } from "../engine/transaction";
import { modprobeDBackend } from "../persistence/modprobeD";
import { sysctlDBackend } from "../persistence/sysctlD";
import { udevRuleBackend } from "../persistence/udevRule";
import { adoptLegacy, hasLegacyFiles, legacyId, legacyOwner, type LegacyOutputs } from "./legacy";
import { conntrackLimitsFacts, itemKey, valueName, wantConntrackLimits } from "./plan";

export const conntrackLimitsKind: ResourceKind<ConntrackLimitsSettings> = {
  type: "ConntrackLimits",
  facts: [...conntrackLimitsFacts],
  backends: [sysctlDBackend, modprobeDBackend, udevRuleBackend(sysctlDBackend.path)],
  want: wantConntrackLimits,
  // The values live in the module: unloading it resets them.
  intents: (_settings, facts) => ({ needs: [`module ${facts.conntrackModule.name}`], removes: [] }),
};

/** Preview of a 0.1 resource that hasn't moved to the ledger: only live values can differ. */
function legacyPreview(settings: ConntrackLimitsSettings, facts: HostFacts): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(wantConntrackLimits(settings, facts).desired)) {
    const live = liveValue(itemKey(name), facts);
    if (live !== undefined && live !== value) out[name] = `${live ?? "(absent)"} → ${value}`;
  }
  return out;
}

/** What the engine needs to know of a ConntrackLimits, for both front doors. */
export const conntrackLimitsSpec: ResourceSpec<ConntrackLimitsSettings> = {
  kind: conntrackLimitsKind,
  schema: conntrackLimitsSettingsSchema,
  settingFields: ["max", "hashsize", "timeouts", "persist"],
  defaults: { persist: true },
  display: valueName,
  outputs(settings, facts) {
    const { bytes, human, formula } = wantConntrackLimits(settings, facts).memory;
    return { memoryEstimate: { bytes, human, formula } };
  },
  legacy: {
    preview: (settings, facts, props, target) => (hasLegacyFiles(facts, legacyId(props.owner, target)) ? legacyPreview(settings, facts) : undefined),
    adopt(outputs: BaseOutputs, label: string) {
      const legacy = outputs as unknown as Partial<LegacyOutputs>;
      if (!legacy.hostId) return undefined;
      return { ownerId: legacyOwner(legacy.hostId), view: adoptLegacy(legacy as LegacyOutputs, label) };
    },
  },
};

export const conntrackLimitsProvider = engineProvider(conntrackLimitsSpec);

