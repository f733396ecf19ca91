/**
 * A program that already reaches its host with `@pulumi/command` passes the same connection
 * object to ConntrackLimits, unchanged: the fields, meanings and defaults are the same (ours adds
 * `sudo`, host-key verification by default and `insecureSkipHostKeyCheck`).
 *
 * Needs `npm install @pulumi/command` (and its provider plugin, which `pulumi` fetches on first
 * use). In this repository the example is only type-checked (`npx tsc -p tsconfig.json`): the
 * command provider's binary can't be built or downloaded here, so no test runs it.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as ct from "pulumi-conntrack";

const config = new pulumi.Config();

const connection: command.types.input.remote.ConnectionArgs = {
  host: config.require("host"),
  port: config.getNumber("port") ?? 22,
  user: config.get("user") ?? "root",
  privateKey: config.requireSecret("privateKey"),
  hostKey: config.require("hostKey"),
};

const limits = new ct.ConntrackLimits("edge-conntrack", {
  connection,
  max: 262144,
  hashsize: 32768,
  timeouts: { tcpEstablished: 86400, udp: 20 },
});

// After each change of the limits: how full the table is now, read with the same connection.
const usage = new command.remote.Command(
  "conntrack-usage",
  {
    connection,
    create: "echo $(cat /proc/sys/net/netfilter/nf_conntrack_count) of $(cat /proc/sys/net/netfilter/nf_conntrack_max) entries in use",
    triggers: [limits.live],
  },
  { dependsOn: [limits] },
);

export const tableUsage = usage.stdout;
export const live = limits.live;
