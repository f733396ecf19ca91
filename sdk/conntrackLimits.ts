import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "./connection";
import { StubbedResource } from "./internal/stub";
import type { TimeoutName } from "./conntrackLimits.schema";

export type ConntrackTimeouts = Partial<Record<TimeoutName, number>>;

export interface ConntrackLimitsArgs {
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionInput>;
  /** net.netfilter.nf_conntrack_max: the most connections tracked at once. Unmanaged if omitted. */
  max?: pulumi.Input<number>;
  /** Buckets of the conntrack hash table (nf_conntrack's `hashsize` parameter). Unmanaged if omitted. */
  hashsize?: pulumi.Input<number>;
  /** Conntrack timeouts in seconds; only the names given are managed. */
  timeouts?: pulumi.Input<ConntrackTimeouts>;
  /**
   * Keep the values across iptables restarts, module reloads and reboots (sysctl.d, modprobe.d and
   * a udev rule that re-applies sysctl.d when nf_conntrack loads). Default true.
   */
  persist?: pulumi.Input<boolean>;
}

/** Sizes the conntrack table and sets its timeouts on one host, and keeps them set. */
export class ConntrackLimits extends StubbedResource {
  /** Kernel values found before the first owner came, restored when the last owner leaves. */
  declare public readonly previous: pulumi.Output<Record<string, string>>;
  /** Kernel values read from the host at the last create, update or refresh. */
  declare public readonly live: pulumi.Output<Record<string, string>>;
  /** pulumi-conntrack's files on the host that persist these values (shared by every resource on it). */
  declare public readonly files: pulumi.Output<string[]>;
  /** Estimated kernel memory the table can take at `max` entries and `hashsize` buckets. */
  declare public readonly memoryEstimate: pulumi.Output<{ bytes: number; human: string; formula: string }>;
  /** What the next apply changes on the host ("key": "live → desired"); empty when converged. */
  declare public readonly plan: pulumi.Output<Record<string, string>>;
  /** Things that may undo or hurt these settings (overriding files, other owners, capacity). */
  declare public readonly warnings: pulumi.Output<string[]>;

  constructor(name: string, args: ConntrackLimitsArgs, opts?: pulumi.CustomResourceOptions) {
    super("ConntrackLimits", name, args.connection, { max: args.max, hashsize: args.hashsize, timeouts: args.timeouts, persist: args.persist }, ["memoryEstimate"], opts);
  }
}
