import { z } from "zod";

/** The firewall services FirewallState manages, by their systemd unit ("auto": whichever this host runs). */
export const firewallServices = ["auto", "firewalld", "iptables", "ip6tables", "nftables", "ufw", "netfilter-persistent"] as const;

/** The settings of a FirewallState resource, validated before anything reaches a host. */
export const firewallStateSettingsSchema = z.strictObject({
  service: z.enum(firewallServices, { error: `service must be one of ${firewallServices.map((s) => `"${s}"`).join(", ")}` }),
  running: z.boolean({ error: "running must be true or false" }),
  enabled: z.boolean({ error: "enabled must be true or false" }),
  force: z.boolean({ error: "force must be true or false" }).default(false),
});

export type FirewallStateSettings = z.output<typeof firewallStateSettingsSchema>;
