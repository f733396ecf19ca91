/**
 * Remedy 1 of "nf_conntrack: table full, dropping packet" on one host: a bigger table, a hash
 * table sized for it, shorter timeouts, kept across iptables restarts, module reloads and reboots.
 * `bash scripts/demo.sh` runs this against a disposable lab VM; aim it at your own host with
 * `pulumi config set host ...` (and hostKey, privateKey as a secret).
 */
import * as pulumi from "@pulumi/pulumi";
import * as ct from "pulumi-conntrack";

const config = new pulumi.Config();

const connection: ct.ConnectionInput = {
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
  timeouts: { tcpEstablished: 86400, tcpTimeWait: 30, udp: 20 },
});

export const live = limits.live;
export const previous = limits.previous;
export const files = limits.files;
export const memoryEstimate = limits.memoryEstimate;
export const warnings = limits.warnings;
