/**
 * Remedy 2 of "nf_conntrack: table full, dropping packet": a busy port served by this host stops
 * using the conntrack table at all, so it keeps answering when the table is full. Raw-table
 * `-j CT --notrack` rules for the port, plus the UNTRACKED accept that keeps the filter from
 * dropping its packets (limited to what the port was open to), in one transaction.
 *
 *   pulumi config set host 203.0.113.10
 *   pulumi config set hostKey "ssh-ed25519 AAAA..."
 *   pulumi config set --secret privateKey < ~/.ssh/id_ed25519
 *   pulumi config set --path 'ports[0]' 80          (default: 80 and 443)
 *   pulumi preview --diff                            (shows each rule to add, and any --state NEW
 *                                                     rule on those ports that will stop matching)
 *
 * Optional: `port`, `user`, `sudo`; `persist` (true: saved in /etc/iptables/rules.v4 through
 * netfilter-persistent; `pulumi config set persist false` where it isn't installed).
 */
import * as pulumi from "@pulumi/pulumi";
import * as ct from "pulumi-conntrack";

const config = new pulumi.Config();

const rule = new ct.NotrackRule("web-notrack", {
  connection: {
    host: config.require("host"),
    port: config.getNumber("port") ?? 22,
    user: config.get("user") ?? "root",
    privateKey: config.requireSecret("privateKey"),
    hostKey: config.require("hostKey"),
    sudo: config.getBoolean("sudo"),
  },
  ports: config.getObject<Array<number | string>>("ports") ?? [80, 443],
  side: "server",
  persist: config.getBoolean("persist") ?? true,
});

export const rules = rule.live;
export const warnings = rule.warnings;
