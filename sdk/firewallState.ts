import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "./connection";
import { StubbedResource } from "./internal/stub";

/** The arguments of a {@link FirewallState}. */
export interface FirewallStateArgs {
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionInput>;
  /**
   * The firewall service, by its systemd unit: "firewalld", "iptables", "ip6tables" (RHEL's
   * iptables-services), "nftables", "ufw", "netfilter-persistent" (Debian's iptables-persistent;
   * Debian's iptables.service is an alias of it), or "auto": the one firewall this host runs (the
   * preview's warnings say which and why). Required.
   */
  service: pulumi.Input<"auto" | "firewalld" | "iptables" | "ip6tables" | "nftables" | "ufw" | "netfilter-persistent">;
  /**
   * Whether the firewall runs now. false means none of its rules are live, so traffic it dropped
   * passes: the unit is stopped and its rules are flushed (`netfilter-persistent stop` alone leaves
   * them loaded). Required.
   */
  running: pulumi.Input<boolean>;
  /** Whether the firewall starts at boot (`systemctl enable` / `disable`). Required. */
  enabled: pulumi.Input<boolean>;
  /**
   * Stop the firewall even though its rules NAT, forward, or belong to other tools (Docker,
   * kube-proxy...): without it such a stop is refused, listing each rule that would go. Default false.
   */
  force?: pulumi.Input<boolean>;
}

/**
 * Stops or starts a host's firewall service and disables or enables it at boot (the seed's third
 * remedy, done safely). Destroy puts the service back as found, running and enabled, and with it
 * the rules a stop took away (kept on the host under /var/lib/pulumi-conntrack/).
 */
export class FirewallState extends StubbedResource {
  /** The service's state before the first owner came: "<unit> running" → "running"/"stopped", "<unit> at boot" → "enabled"/"disabled". */
  declare public readonly previous: pulumi.Output<Record<string, string>>;
  /** The same, read from the host at the last create, update or refresh. */
  declare public readonly live: pulumi.Output<Record<string, string>>;
  /** pulumi-conntrack's files on the host (the ledger). */
  declare public readonly files: pulumi.Output<string[]>;
  /** What the next apply changes on the host; empty when converged. */
  declare public readonly plan: pulumi.Output<Record<string, string>>;
  /** What "auto" chose, and the rules a forced stop removes. */
  declare public readonly warnings: pulumi.Output<string[]>;

  /**
   * @param name The resource's name; with the project and stack, it names this resource in the host's ledger.
   * @param args The host, the service and its wanted state.
   * @param opts Pulumi resource options.
   */
  constructor(name: string, args: FirewallStateArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...settings } = args;
    super("FirewallState", name, connection, settings, [], opts);
  }
}
