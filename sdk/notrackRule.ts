import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "./connection";
import { StubbedResource } from "./internal/stub";

/** The arguments of a {@link NotrackRule}. */
export interface NotrackRuleArgs {
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionInput>;
  /** Ports to take out of connection tracking: numbers, or "from:to" ranges (inclusive). */
  ports: pulumi.Input<pulumi.Input<number | string>[]>;
  /** "tcp" (default) or "udp". */
  protocol?: pulumi.Input<"tcp" | "udp">;
  /**
   * Which traffic of those ports: "server" (this host serves them: PREROUTING --dport and OUTPUT
   * --sport), "client" (this host connects to them: OUTPUT --dport and PREROUTING --sport), or
   * "both" (default, all four rules).
   */
  side?: pulumi.Input<"both" | "server" | "client">;
  /** IP versions: [4] (default), [6] or [4, 6] (ip6tables). */
  ipVersions?: pulumi.Input<pulumi.Input<4 | 6>[]>;
  /**
   * Add a filter rule that accepts the untracked packets ahead of any DROP or REJECT, limited to
   * the sources and interfaces the port was open to (default true). Without it, a filter that
   * drops what it doesn't know would take the port dark; with it false, such a host is refused.
   * A port that wasn't open stays closed either way. On firewalld nothing is added (firewalld
   * accepts the untracked packets of what a zone opens); false refuses a port a zone doesn't open.
   */
  acceptUntracked?: pulumi.Input<boolean>;
  /** Keep the rules across reboots through the host's firewall persistence (default true). */
  persist?: pulumi.Input<boolean>;
  /** Go ahead, with a warning, where DNAT rules match those ports (untracked packets skip NAT). Default false. */
  force?: pulumi.Input<boolean>;
}

/**
 * Takes ports out of connection tracking with raw-table `-j CT --notrack` rules, and keeps them
 * answering: the rules and their UNTRACKED accept go in together, in one iptables-restore (one
 * `nft -f` on native nftables hosts). On firewalld the rules are direct rules and nothing is
 * opened: firewalld accepts the untracked packets of what its zones open, and a closed port stays closed.
 */
export class NotrackRule extends StubbedResource {
  /** Whether each rule was there before the first owner came ("present") or not ("absent"). */
  declare public readonly previous: pulumi.Output<Record<string, string>>;
  /** Each rule's state read from the host at the last create, update or refresh. */
  declare public readonly live: pulumi.Output<Record<string, string>>;
  /** pulumi-conntrack's files on the host that persist the rules. */
  declare public readonly files: pulumi.Output<string[]>;
  /** What the next apply changes on the host; empty when converged. */
  declare public readonly plan: pulumi.Output<Record<string, string>>;
  /** Rules that stop matching, NAT that untracked packets skip, ports that stay closed. */
  declare public readonly warnings: pulumi.Output<string[]>;

  /**
   * @param name The resource's name; with the project and stack, it names this resource's rules in the host's ledger.
   * @param args The host and the ports.
   * @param opts Pulumi resource options.
   */
  constructor(name: string, args: NotrackRuleArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...settings } = args;
    super("NotrackRule", name, connection, settings, [], opts);
  }
}
