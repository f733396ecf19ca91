/**
 * Remedy 1 of "nf_conntrack: table full, dropping packet" on one host: a bigger table, a hash
 * table sized for it, shorter timeouts, kept across iptables restarts, module reloads and reboots.
 * `bash scripts/demo.sh` runs this against a disposable lab VM. Aim it at your own host:
 *
 *   pulumi config set host 203.0.113.10
 *   pulumi config set hostKey "ssh-ed25519 AAAA..."        (or its SHA256:... fingerprint)
 *   pulumi config set --secret privateKey < ~/.ssh/id_ed25519
 *   pulumi preview --diff
 *
 * Optional: `port` (22), `user` ("root"), `sudo` (false; true when `user` isn't root), and
 * `timeoutsOnly` (false): the table's size is global to a machine's kernel, so a container or a
 * network namespace can only set timeouts; `pulumi config set timeoutsOnly true` there.
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
  sudo: config.getBoolean("sudo"),
};

const size = config.getBoolean("timeoutsOnly") ? {} : { max: 262144, hashsize: 32768 };

const limits = new ct.ConntrackLimits("edge-conntrack", {
  connection,
  ...size,
  timeouts: { tcpEstablished: 86400, tcpTimeWait: 30, udp: 20 },
});

export const live = limits.live;
export const previous = limits.previous;
export const files = limits.files;
export const memoryEstimate = limits.memoryEstimate;
export const warnings = limits.warnings;
