import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "./connection";
import { ConntrackLimits, type ConntrackLimitsArgs } from "./conntrackLimits";
import { FirewallState, type FirewallStateArgs } from "./firewallState";
import { fleetHostNameSchema, rolloutSchema, splitIntoWaves, type WaveSize } from "./fleet.schema";
import { FleetWaveBaseline, FleetWaveGate } from "./internal/fleetWave";
import { KernelModuleSet, type KernelModuleSetArgs } from "./kernelModuleSet";
import { NotrackRule, type NotrackRuleArgs } from "./notrackRule";

export type { WaveSize } from "./fleet.schema";

/** The settings a Fleet declares on its hosts: each present kind becomes one resource per host. */
export interface FleetSettings {
  /** A {@link ConntrackLimits} per host. */
  conntrack?: Omit<ConntrackLimitsArgs, "connection">;
  /** A {@link NotrackRule} per host. */
  notrack?: Omit<NotrackRuleArgs, "connection">;
  /** A {@link FirewallState} per host. */
  firewall?: Omit<FirewallStateArgs, "connection">;
  /** A {@link KernelModuleSet} per host. */
  modules?: Omit<KernelModuleSetArgs, "connection">;
}

/**
 * One host of a {@link Fleet}. Its settings override the fleet's field by field (a `timeouts`
 * given here replaces the fleet's `timeouts` as a whole); `false` leaves that kind off this host.
 */
export interface FleetHost {
  /** Names the host's resources (`<fleet>-<name>-conntrack`...): keep it stable, or they are replaced. */
  name: string;
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionInput>;
  /** Overrides of the fleet's `conntrack` on this host, or false for no ConntrackLimits here. */
  conntrack?: Partial<Omit<ConntrackLimitsArgs, "connection">> | false;
  /** Overrides of the fleet's `notrack` on this host, or false for no NotrackRule here. */
  notrack?: Partial<Omit<NotrackRuleArgs, "connection">> | false;
  /** Overrides of the fleet's `firewall` on this host, or false for no FirewallState here. */
  firewall?: Partial<Omit<FirewallStateArgs, "connection">> | false;
  /** Overrides of the fleet's `modules` on this host, or false for no KernelModuleSet here. */
  modules?: Partial<Omit<KernelModuleSetArgs, "connection">> | false;
}

/** How a {@link Fleet} rolls a change out. */
export interface FleetRollout {
  /**
   * Wave sizes, in host order: a count or a percentage of all hosts (rounded up); the last size
   * repeats until every host has a wave, e.g. `[1, "25%", "100%"]`. Default: one wave of all hosts.
   */
  waves?: WaveSize[];
  /**
   * How many hosts may fail (their resources' apply fails, e.g. the host is unreachable) while the
   * rollout goes on. Counted by the gates, so only under `pulumi up --continue-on-error`: without
   * it the engine stops scheduling at the first failure, whatever this says. Default 0.
   */
  maxFailures?: number;
  /** What every wave's hosts must show after their change before the next wave starts. */
  healthCheck?: {
    /** The highest count / max a host may show (0..1]. Unchecked if omitted. */
    maxUsage?: number;
    /** Fail a host whose drop, earlyDrop or insertFailed counters rose since the wave's baseline. Default true. */
    noNewDrops?: boolean;
    /** Seconds to wait after a wave's changes before reading its hosts. Default 30. */
    soakSeconds?: number;
  };
}

/** The arguments of a {@link Fleet}. */
export interface FleetArgs extends FleetSettings {
  /** The hosts, in rollout order. A plain array: the waves are fixed when the program runs. */
  hosts: FleetHost[];
  /** Waves, failure budget and health gates. Default: one wave of all hosts, gated, no failure allowed. */
  rollout?: FleetRollout;
}

/** A host's resources in a {@link Fleet}, by kind. */
export interface FleetHostResources {
  /** The host's wave, from 1. */
  wave: number;
  /** Its ConntrackLimits, if the fleet declares one here. */
  conntrack?: ConntrackLimits;
  /** Its NotrackRule, if the fleet declares one here. */
  notrack?: NotrackRule;
  /** Its FirewallState, if the fleet declares one here. */
  firewall?: FirewallState;
  /** Its KernelModuleSet, if the fleet declares one here. */
  modules?: KernelModuleSet;
}

const kinds = ["conntrack", "notrack", "firewall", "modules"] as const;
type Kind = (typeof kinds)[number];

/**
 * The resources above on many hosts from one declaration, rolled out in waves. Before each wave a
 * baseline resource reads its hosts' conntrack readings; the wave's resources change the hosts;
 * then its gate waits `soakSeconds`, reads them again and fails when a host is unhealthy
 * (`healthCheck`) or more than `maxFailures` hosts failed. Each wave starts only after the gate
 * before it passed, so a failed gate leaves later waves untouched and its error names the hosts
 * and their readings. Baselines and gates run again whenever their wave's settings change (or
 * an earlier wave's gate ran again); a converged fleet's preview is a no-op.
 */
export class Fleet extends pulumi.ComponentResource {
  /** Host names per wave, in rollout order. */
  public readonly waves: pulumi.Output<string[][]>;
  /** Each host's wave and resources. */
  public readonly hosts: Record<string, FleetHostResources>;
  /** The readings each wave's gate took at its last run, by host. */
  public readonly readings: pulumi.Output<Record<string, unknown>>;
  /** The readings as a table for people (export it, then `pulumi stack output <name>`). */
  public readonly statusTable: pulumi.Output<string>;

  /**
   * @param name Names the component and prefixes every resource it declares.
   * @param args The hosts, the settings for them and how to roll them out.
   * @param opts The usual component options.
   */
  constructor(name: string, args: FleetArgs, opts?: pulumi.ComponentResourceOptions) {
    super("pulumi-conntrack:index:Fleet", name, {}, opts);
    const rollout = validate(name, args);
    const waveHosts = splitIntoWaves(args.hosts, (rollout.waves ?? ["100%"]) as WaveSize[]);
    const health = { maxUsage: rollout.healthCheck?.maxUsage, noNewDrops: rollout.healthCheck?.noNewDrops ?? true, soakSeconds: rollout.healthCheck?.soakSeconds ?? 30 };
    this.hosts = {};
    const gates: FleetWaveGate[] = [];
    waveHosts.forEach((hosts, i) => {
      const wave = i + 1;
      const previous = gates[i - 1];
      const declared = hosts.map((h) => ({ name: h.name, settings: Object.fromEntries(kinds.map((k) => [k, settingsFor(args, h, k) ?? null])) }));
      const trigger = pulumi.all([pulumi.output(declared), previous?.checkedAt ?? ""]).apply(([d, after]) => createHash("sha256").update(JSON.stringify([d, after])).digest("hex").slice(0, 16));
      const baseline = new FleetWaveBaseline(`${name}-wave${wave}-baseline`, { fleet: name, wave, hosts, trigger: pulumi.unsecret(trigger) }, { parent: this, ...(previous ? { dependsOn: [previous] } : {}) });
      const applied = hosts.map((h) => {
        const declaredHere = this.declareHost(name, args, h, wave, baseline);
        const urns = Object.values(declaredHere).filter((r): r is pulumi.CustomResource => r instanceof pulumi.CustomResource).map((r) => r.urn);
        // A host whose resource failed (only seen under --continue-on-error) reaches its gate as
        // `applied: false` instead of failing the gate's inputs, so the gate can count it.
        return { ...h, applied: pulumi.recover(pulumi.all(urns).apply(() => true), () => false) };
      });
      gates.push(
        new FleetWaveGate(`${name}-wave${wave}-gate`, { fleet: name, wave, hosts: applied, baseline, health, maxFailures: rollout.maxFailures ?? 0, failedBefore: previous?.failedHosts ?? [] }, { parent: this }),
      );
    });
    this.waves = pulumi.output(waveHosts.map((hosts) => hosts.map((h) => h.name)));
    this.readings = pulumi.all(gates.map((g) => g.readings)).apply((perWave): Record<string, unknown> => Object.assign({}, ...perWave));
    this.statusTable = this.readings.apply((r) => statusTable(waveHosts, r as Record<string, Reading>));
    this.registerOutputs({ waves: this.waves, readings: this.readings, statusTable: this.statusTable });
  }

  private declareHost(fleet: string, args: FleetArgs, host: FleetHost, wave: number, baseline: FleetWaveBaseline): FleetHostResources {
    const opts = { parent: this, dependsOn: [baseline] };
    const connection = host.connection;
    const s = (k: Kind) => settingsFor(args, host, k);
    const c = s("conntrack"), n = s("notrack"), f = s("firewall"), m = s("modules");
    const resources: FleetHostResources = {
      wave,
      ...(c ? { conntrack: new ConntrackLimits(`${fleet}-${host.name}-conntrack`, { ...c, connection }, opts) } : {}),
      ...(n ? { notrack: new NotrackRule(`${fleet}-${host.name}-notrack`, { ...(n as Omit<NotrackRuleArgs, "connection">), connection }, opts) } : {}),
      ...(f ? { firewall: new FirewallState(`${fleet}-${host.name}-firewall`, { ...(f as Omit<FirewallStateArgs, "connection">), connection }, opts) } : {}),
      ...(m ? { modules: new KernelModuleSet(`${fleet}-${host.name}-modules`, { ...(m as Omit<KernelModuleSetArgs, "connection">), connection }, opts) } : {}),
    };
    this.hosts[host.name] = resources;
    return resources;
  }
}

/** The fleet's settings of one kind with the host's overrides on top; undefined: none on this host. */
function settingsFor(args: FleetArgs, host: FleetHost, kind: Kind): Record<string, unknown> | undefined {
  const own = host[kind];
  if (own === false) return undefined;
  if (args[kind] === undefined && own === undefined) return undefined;
  return { ...(args[kind] ?? {}), ...(own ?? {}) };
}

function validate(name: string, args: FleetArgs) {
  const problems: string[] = [];
  if (!Array.isArray(args.hosts) || args.hosts.length === 0) problems.push("hosts: list at least one host (a plain array, known when the program runs)");
  const seen = new Set<string>();
  (Array.isArray(args.hosts) ? args.hosts : []).forEach((h, i) => {
    const parsed = fleetHostNameSchema.safeParse(h?.name);
    if (!parsed.success) problems.push(`hosts[${i}].name: ${parsed.error.issues[0].message} (got ${JSON.stringify(h?.name)})`);
    else if (seen.has(h.name)) problems.push(`hosts[${i}].name: ${h.name} is listed twice`);
    else seen.add(h.name);
    if (!h?.connection) problems.push(`hosts[${i}].connection is required`);
  });
  if (kinds.every((k) => args[k] === undefined && !(args.hosts ?? []).some((h) => h?.[k]))) problems.push("declare at least one of conntrack, notrack, firewall, modules");
  const rollout = rolloutSchema.safeParse(args.rollout ?? {});
  if (!rollout.success) problems.push(...rollout.error.issues.map((i) => `rollout.${i.path.join(".")}: ${i.message}`));
  if (problems.length > 0) throw new Error(`Fleet ${name}: ${problems.join("; ")}`);
  return rollout.data!;
}

interface Reading {
  tracking?: boolean;
  count?: number;
  max?: number;
  drop?: number | null;
  earlyDrop?: number | null;
  insertFailed?: number | null;
  error?: string;
}

function statusTable(waves: FleetHost[][], readings: Record<string, Reading>): string {
  const rows = [["host", "wave", "usage", "count/max", "drop", "early_drop", "insert_failed"]];
  waves.forEach((hosts, i) =>
    hosts.forEach((h) => {
      const r = readings[h.name];
      if (!r) rows.push([h.name, String(i + 1), "-", "-", "-", "-", "-"]);
      else if (r.error) rows.push([h.name, String(i + 1), "unread", r.error.slice(0, 60), "-", "-", "-"]);
      else if (!r.tracking) rows.push([h.name, String(i + 1), "untracked", "-", "-", "-", "-"]);
      else rows.push([h.name, String(i + 1), `${Math.round((100 * r.count!) / r.max!)}%`, `${r.count}/${r.max}`, String(r.drop ?? "-"), String(r.earlyDrop ?? "-"), String(r.insertFailed ?? "-")]);
    }),
  );
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()).join("\n");
}
