import * as pulumi from "@pulumi/pulumi";
import type { Connection, ConnectionInput } from "./connection";

/** How full one host's conntrack table is, and what it has dropped. */
export interface ConntrackStatus {
  /** The host, as `user@host:port`. */
  host: string;
  /** Entries in the table now (net.netfilter.nf_conntrack_count). */
  count: number;
  /** The table's limit (net.netfilter.nf_conntrack_max). */
  max: number;
  /** Hash buckets (net.netfilter.nf_conntrack_buckets, the module's hashsize). */
  buckets: number;
  /** count / max: at 1 the kernel drops new connections. */
  usage: number;
  /** Packets dropped because no entry could be made, summed over CPUs since boot (null where the kernel doesn't count it). */
  drop: number | null;
  /** Entries evicted early to make room, summed over CPUs since boot. */
  earlyDrop: number | null;
  /** Entries that failed to be inserted, summed over CPUs since boot. */
  insertFailed: number | null;
  /** The kernel's most recent "nf_conntrack: table full, dropping packet" lines (up to 20), oldest first. */
  tableFullMessages: string[];
}

/** The arguments of {@link getConntrackStatus}. */
export interface GetConntrackStatusArgs {
  /** How to reach the host. */
  connection: Connection;
}

/** The arguments of {@link getConntrackStatusOutput}. */
export interface GetConntrackStatusOutputArgs {
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionInput>;
}

type Reader = { readConntrackStatus(connection: unknown): Promise<ConntrackStatus> };
// Loaded at call time, so importing the SDK never loads SSH code.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const reader = () => require("../provider/status") as Reader;

/**
 * Reads a host's conntrack readings in one SSH round trip (in the program process, in previews
 * too). Reads /proc and the kernel log only: it never loads a module, so on a host without
 * nf_conntrack it fails saying so and `lsmod` is unchanged. While the table is full, the host
 * may drop a new SSH connection's SYN: the error then says that this may be why.
 */
export function getConntrackStatus(args: GetConntrackStatusArgs): Promise<ConntrackStatus> {
  return reader().readConntrackStatus(args.connection);
}

/** {@link getConntrackStatus} for a connection that is a Pulumi Input; the result holds no secret. */
export function getConntrackStatusOutput(args: GetConntrackStatusOutputArgs): pulumi.Output<ConntrackStatus> {
  return pulumi.unsecret(pulumi.output(args.connection).apply((c) => reader().readConntrackStatus(c)));
}
