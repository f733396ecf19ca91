import { kernelModuleSetSettingsSchema, type KernelModuleSetSettings } from "../../sdk/kernelModuleSet.schema";
import { engineProvider } from "../engine/dynamicProvider";
import type { ResourceSpec } from "../engine/resource";
import type { ResourceKind } from "../engine/transaction";
import { moduleBlockBackend, moduleLoadBackend } from "../persistence/moduleFiles";
import { kernelModuleSetFacts, kernelModuleSetIntents, wantKernelModuleSet } from "./plan";

export const kernelModuleSetKind: ResourceKind<KernelModuleSetSettings> = {
  type: "KernelModuleSet",
  facts: [...kernelModuleSetFacts],
  backends: [moduleBlockBackend, moduleLoadBackend],
  want: wantKernelModuleSet,
  intents: kernelModuleSetIntents,
};

/** "module:xt_CT" → "module xt_CT". */
export const moduleDisplay = (item: string) => item.replace(/^module:/, "module ");

/** What the engine needs to know of a KernelModuleSet, for both front doors. */
export const kernelModuleSetSpec: ResourceSpec<KernelModuleSetSettings> = {
  kind: kernelModuleSetKind,
  schema: kernelModuleSetSettingsSchema,
  settingFields: ["modules", "state", "persist", "force"],
  defaults: { state: "absent", persist: true, force: false },
  display: moduleDisplay,
  notes: (settings, facts) => ({ resolved: wantKernelModuleSet(settings, facts).resolved }),
};

export const kernelModuleSetProvider = engineProvider(kernelModuleSetSpec);

