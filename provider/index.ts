import type * as pulumi from "@pulumi/pulumi";
import { conntrackLimitsProvider } from "./conntrackLimits/provider";
import { kernelModuleSetProvider } from "./kernelModuleSet/provider";
import { notrackRuleProvider } from "./notrackRule/provider";
import { firewallStateProvider } from "./firewallState/provider";
import { fleetWaveBaselineProvider, fleetWaveGateProvider } from "./fleet/provider";

/**
 * The engine-side entry point that the serialized stub (sdk/internal/stub.ts) requires. Each call
 * is routed by the `resourceType` every resource of this package carries in its props (in
 * `check`, under `__program`), so one stub serves all types. These signatures are a contract with
 * state written by older versions.
 */
const providers: Record<string, pulumi.dynamic.ResourceProvider> = {
  ConntrackLimits: conntrackLimitsProvider,
  NotrackRule: notrackRuleProvider,
  FirewallState: firewallStateProvider,
  KernelModuleSet: kernelModuleSetProvider,
  FleetWaveBaseline: fleetWaveBaselineProvider,
  FleetWaveGate: fleetWaveGateProvider,
};

type Props = { resourceType?: string } | undefined;

function providerFor(props: Props): pulumi.dynamic.ResourceProvider {
  const type = props?.resourceType;
  const provider = type ? providers[type] : undefined;
  if (!provider) throw new Error(`pulumi-conntrack: unknown resource type ${String(type)}; is the installed package older than the program?`);
  return provider;
}

/**
 * The inputs as stored: the program sends what it knows of the resource (type, name, scope, the
 * facts it read) as one property, `__program`, because the SDK makes an output for every
 * property (sdk/internal/stub.ts). State keeps them as properties of their own, as it always has.
 */
function unbundled(sent: Props): Props {
  const { __program: program, ...rest } = (sent ?? {}) as Record<string, unknown>;
  return typeof program === "object" && program !== null ? { ...rest, ...program } : sent;
}

export const check = (olds: Props, sent: Props) => {
  const news = unbundled(sent);
  return providerFor(news).check!(olds, news);
};
export const diff = (id: string, olds: Props, news: Props) => providerFor(news ?? olds).diff!(id, olds, news);
export const create = (inputs: Props) => providerFor(inputs).create(inputs);
export const read = (id: string, props: Props) => providerFor(props).read!(id, props);
export const update = (id: string, olds: Props, news: Props) => providerFor(news).update!(id, olds, news);
const remove = (id: string, props: Props) => providerFor(props).delete!(id, props);
export { remove as delete };
