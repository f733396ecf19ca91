import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "../connection";
import { splitConnection } from "./connectionInputs";
import { providerStub } from "./stub";

/** One host of a wave as its baseline and gate see it. */
export interface WaveHost {
  name: string;
  connection: pulumi.Input<ConnectionInput>;
  /** Gate only: false when one of the host's resources failed in this run (under --continue-on-error). */
  applied?: pulumi.Input<boolean>;
}

/** What a wave's health gate judges; see FleetRollout.healthCheck. */
export interface WaveHealth {
  maxUsage?: number;
  noNewDrops: boolean;
  soakSeconds: number;
}

function hostInputs(hosts: WaveHost[]) {
  const split = hosts.map((h) => ({ name: h.name, applied: h.applied, ...splitConnection(h.connection) }));
  return {
    hosts: split.map((h) => ({ name: h.name, connection: h.connection, ...(h.applied === undefined ? {} : { applied: h.applied }) })),
    credentials: pulumi.secret(pulumi.all(split.map((h) => h.credentials))),
  };
}

function registration(type: string, name: string, props: pulumi.Inputs, opts: pulumi.CustomResourceOptions): [string, string, pulumi.Inputs, pulumi.CustomResourceOptions] {
  return [`pulumi-nodejs:dynamic/pulumi-conntrack:${type}`, name, { ...props, resourceType: type, __provider: providerStub }, { ...opts, additionalSecretOutputs: ["credentials"] }];
}

/**
 * Reads the conntrack readings of a wave's hosts just before the wave changes them. `trigger`
 * changes whenever the wave's declared settings change or the previous wave's gate ran again, so
 * each rollout takes a fresh baseline; a converged fleet's preview leaves it alone.
 */
export class FleetWaveBaseline extends pulumi.CustomResource {
  declare public readonly readings: pulumi.Output<Record<string, unknown>>;
  declare public readonly takenAt: pulumi.Output<string>;
  constructor(name: string, args: { fleet: string; wave: number; hosts: WaveHost[]; trigger: pulumi.Input<string> }, opts: pulumi.CustomResourceOptions) {
    const props = { fleet: args.fleet, wave: args.wave, trigger: args.trigger, ...hostInputs(args.hosts), readings: undefined, takenAt: undefined };
    super(...registration("FleetWaveBaseline", name, props, opts));
  }
}

/**
 * A wave's health gate: after the wave's resources are done and a soak time, reads every host of
 * the wave and fails (so later waves never start) when one is unhealthy against the baseline, or
 * when more hosts failed than the rollout allows.
 */
export class FleetWaveGate extends pulumi.CustomResource {
  declare public readonly readings: pulumi.Output<Record<string, unknown>>;
  /** Hosts whose resources failed in this wave and the waves before it. */
  declare public readonly failedHosts: pulumi.Output<string[]>;
  declare public readonly checkedAt: pulumi.Output<string>;
  constructor(
    name: string,
    args: { fleet: string; wave: number; hosts: WaveHost[]; baseline: FleetWaveBaseline; health: WaveHealth; maxFailures: number; failedBefore: pulumi.Input<string[]> },
    opts: pulumi.CustomResourceOptions,
  ) {
    const props = {
      fleet: args.fleet,
      wave: args.wave,
      ...hostInputs(args.hosts),
      baseline: args.baseline.readings,
      baselineTakenAt: args.baseline.takenAt,
      health: args.health,
      maxFailures: args.maxFailures,
      failedBefore: args.failedBefore,
      readings: undefined,
      failedHosts: undefined,
      checkedAt: undefined,
    };
    super(...registration("FleetWaveGate", name, props, opts));
  }
}
