/**
 * The same conntrack settings on every host listed in stack config, rolled out in waves: the
 * first host alone, then a quarter of the fleet, then the rest, each wave gated on its hosts'
 * conntrack readings (usage under 80%, no new drops) after a soak.
 *
 *   pulumi config set --path 'hosts[0].name' web-1
 *   pulumi config set --path 'hosts[0].host' 203.0.113.10
 *   pulumi config set --path 'hosts[0].hostKey' "ssh-ed25519 AAAA..."
 *   pulumi config set --path 'hosts[1].name' web-2  ...and so on
 *   pulumi config set --secret privateKey < ~/.ssh/id_ed25519     (one key for every host)
 *   pulumi config set max 262144 && pulumi config set hashsize 32768  (optional: only on machines,
 *     not containers or network namespaces, which share their machine's table)
 *   pulumi config set soakSeconds 60                                   (optional, default 30)
 *
 * A host entry may also give `port`, `user` and `sudo`. After an up, `pulumi stack output status`
 * prints each host's readings at its wave's gate.
 */
import * as pulumi from "@pulumi/pulumi";
import * as ct from "pulumi-conntrack";

interface HostEntry {
  /** Names the host's resources (`web-<name>-conntrack`): keep it stable, or they are replaced. */
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

const fleet = new ct.Fleet("web", {
  hosts: hosts.map((h) => ({ name: h.name, connection: { host: h.host, port: h.port, user: h.user, sudo: h.sudo, hostKey: h.hostKey, privateKey } })),
  conntrack: {
    max: config.getNumber("max"),
    hashsize: config.getNumber("hashsize"),
    timeouts: { tcpEstablished: 3600, tcpTimeWait: 30, udp: 20 },
  },
  rollout: {
    waves: [1, "25%", "100%"],
    maxFailures: 0,
    healthCheck: { maxUsage: 0.8, noNewDrops: true, soakSeconds: config.getNumber("soakSeconds") ?? 30 },
  },
});

/** Host names per wave. */
export const waves = fleet.waves;
/** Each host's readings at its wave's last gate, as a table. */
export const status = fleet.statusTable;
/** Per host: the values live after the last up, and anything that may undo them. */
export const live = pulumi
  .all(hosts.map((h) => pulumi.all([fleet.hosts[h.name].conntrack!.live, fleet.hosts[h.name].conntrack!.warnings])))
  .apply((rows) => Object.fromEntries(rows.map(([values, warnings], i) => [hosts[i].name, { live: values, warnings }])));
