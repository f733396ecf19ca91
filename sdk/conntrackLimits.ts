import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "./connection";
import { StubbedResource } from "./internal/stub";
import type { TimeoutName } from "./conntrackLimits.schema";

/**
 * Conntrack timeouts in seconds, by name; each is a whole number from 1 to 2147483. Names and the
 * kernel keys they set (with the legacy `net.ipv4.netfilter.ip_conntrack_*` names on kernels that
 * have only those; the defaults are Linux 6.x's, older kernels differ, e.g. udpStream 180 on 3.10):
 * - `tcpEstablished`: net.netfilter.nf_conntrack_tcp_timeout_established (default 432000)
 * - `tcpTimeWait`: nf_conntrack_tcp_timeout_time_wait (120)
 * - `tcpCloseWait`: nf_conntrack_tcp_timeout_close_wait (60)
 * - `tcpFinWait`: nf_conntrack_tcp_timeout_fin_wait (120)
 * - `tcpSynSent`: nf_conntrack_tcp_timeout_syn_sent (120)
 * - `tcpSynRecv`: nf_conntrack_tcp_timeout_syn_recv (60)
 * - `tcpLastAck`: nf_conntrack_tcp_timeout_last_ack (30)
 * - `tcpClose`: nf_conntrack_tcp_timeout_close (10)
 * - `udp`: nf_conntrack_udp_timeout (30)
 * - `udpStream`: nf_conntrack_udp_timeout_stream (120)
 * - `icmp`: nf_conntrack_icmp_timeout (30)
 * - `generic`: nf_conntrack_generic_timeout (600)
 */
export type ConntrackTimeouts = Partial<Record<TimeoutName, number>>;

/**
 * What a {@link ConntrackLimits} manages on its host. Only the fields given are managed; at least
 * one of `max`, `hashsize` and `timeouts` is required. Bad values fail in `check`, before any SSH.
 */
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
  declare public readonly memoryEstimate: pulumi.Output<{
    /** Bytes: max × the host's nf_conn slab object size + hashsize × 8. */
    bytes: number;
    /** The same, rounded for people ("64.5 MiB"). */
    human: string;
    /** How it was computed, with the host's numbers. */
    formula: string;
  }>;
  /** What the next apply changes on the host ("key": "live → desired"); empty when converged. */
  declare public readonly plan: pulumi.Output<Record<string, string>>;
  /** Things that may undo or hurt these settings (overriding files, other owners, capacity). */
  declare public readonly warnings: pulumi.Output<string[]>;

  /**
   * @param name The resource's name; with the project and stack, it names this resource among the owners in the host's ledger.
   * @param args The host and the settings to manage.
   * @param opts The usual resource options.
   */
  constructor(name: string, args: ConntrackLimitsArgs, opts?: pulumi.CustomResourceOptions) {
    super("ConntrackLimits", name, args.connection, { max: args.max, hashsize: args.hashsize, timeouts: args.timeouts, persist: args.persist }, ["memoryEstimate"], opts);
  }
}
