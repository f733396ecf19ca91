import type { z } from "zod";
import { conntrackLimitsSpec } from "../conntrackLimits/provider";
import type { ResourceSpec } from "../engine/resource";
import { resourceCore, type ResourceCore } from "../engine/resourceCore";
import { firewallStateSpec } from "../firewallState/provider";
import { kernelModuleSetSpec } from "../kernelModuleSet/provider";
import { notrackRuleSpec } from "../notrackRule/provider";
import { resourceOutputSchemas } from "./outputs";

/** The package's name: type tokens are `conntrack:index:<Type>`, the plugin `pulumi-resource-conntrack`. */
export const packageName = "conntrack";

export const tokenOf = (name: string) => `${packageName}:index:${name}`;

export const statusFunctionToken = tokenOf("getConntrackStatus");

/** One resource type as the plugin serves it: the engine's spec and flow, and what it outputs. */
export interface PluginResource {
  /** The type as the engine and the host's ledger name it ("ConntrackLimits"). */
  type: string;
  spec: ResourceSpec<unknown>;
  core: ResourceCore;
  outputs: z.ZodObject;
}

const served = (spec: ResourceSpec<never>): PluginResource => {
  const type = spec.kind.type as keyof typeof resourceOutputSchemas;
  return { type, spec: spec as ResourceSpec<unknown>, core: resourceCore(spec), outputs: resourceOutputSchemas[type] };
};

/** By type token, the four resources of the engine (Fleet stays a Node.js component). */
export const pluginResources: ReadonlyMap<string, PluginResource> = new Map(
  [conntrackLimitsSpec, notrackRuleSpec, firewallStateSpec, kernelModuleSetSpec].map((spec) => {
    const resource = served(spec as ResourceSpec<never>);
    return [tokenOf(resource.type), resource];
  }),
);
