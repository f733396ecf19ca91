/**
 * The same conntrack settings on every host listed in stack config: a plain loop, one
 * ConntrackLimits per host (a Fleet component with staged rollouts and health gates comes later).
 * Preview reads each host once over one SSH connection; `pulumi up` changes them in parallel.
 *
 *   pulumi config set --path 'hosts[0].name' web-1
 *   pulumi config set --path 'hosts[0].host' 203.0.113.10
 *   pulumi config set --path 'hosts[0].hostKey' "ssh-ed25519 AAAA..."
 *   pulumi config set --path 'hosts[1].name' web-2  ...and so on
 *   pulumi config set --secret privateKey < ~/.ssh/id_ed25519     (one key for every host)
 *   pulumi config set max 262144 && pulumi config set hashsize 32768  (optional: only on machines,
 *     not containers or network namespaces, which share their machine's table)
 *
 * A host entry may also give `port`, `user` and `sudo`.
 */
import * as pulumi from "@pulumi/pulumi";
import * as ct from "pulumi-conntrack";

interface HostEntry {
  /** Names the resource (`conntrack-<name>`): keep it stable, or the host's settings are replaced. */
  name: string;
  host: string;
  port?: number;
  user?: string;
  sudo?: boolean;
  hostKey: string;
}

const config = new pulumi.Config();
const hosts = config.requireObject<HostEntry[]>("hosts");
const privateKey = config.requireSecret("privateKey");
const settings: Omit<ct.ConntrackLimitsArgs, "connection"> = {
  max: config.getNumber("max"),
  hashsize: config.getNumber("hashsize"),
  timeouts: { tcpEstablished: 3600, tcpTimeWait: 30, udp: 20 },
};

const limits = hosts.map(
  (h) => new ct.ConntrackLimits(`conntrack-${h.name}`, { connection: { host: h.host, port: h.port, user: h.user, sudo: h.sudo, hostKey: h.hostKey, privateKey }, ...settings }),
);

/** Per host: the values live after the last up, and anything that may undo them. */
export const fleet = pulumi
  .all(limits.map((l) => pulumi.all([l.live, l.warnings])))
  .apply((rows) => Object.fromEntries(rows.map(([live, warnings], i) => [hosts[i].name, { live, warnings }])));
