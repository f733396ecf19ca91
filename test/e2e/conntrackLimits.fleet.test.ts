import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { testStack, type TestStack } from "./harness";

// Twenty namespaced hosts in one stack: per-namespace conntrack timeouts applied and verified on
// each, with the SSH connections each host saw counted on the host side.
const prefix = "pctf";
const count = 20;
const timeouts = { tcpEstablished: 3600, udp: 45 };
let hosts: LabHost[];
let stack: TestStack;

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const timeoutsOf = (h: LabHost) => inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_established", "net.netfilter.nf_conntrack_udp_timeout").split("\n");
/** SYNs to port 22 each host has received: one per TCP connection opened to it. */
const synCounts = () => hosts.map((h) => Number(inNs(h, "iptables", "-nvxL", "PCT-SYN").split("\n")[2].trim().split(/\s+/)[0]));
const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });

beforeAll(async () => {
  hosts = await startHosts(count, prefix);
  for (const h of hosts) {
    inNs(h, "sh", "-c", "iptables -N PCT-SYN && iptables -A PCT-SYN -j RETURN && iptables -I INPUT -p tcp --dport 22 --syn -j PCT-SYN");
  }
  stack = await testStack("conntrack-limits", {
    hosts: { value: JSON.stringify(hosts.map((h) => ({ name: h.name, connection: connection(h) }))), secret: true },
    settings: { value: JSON.stringify({ timeouts }) },
  });
});

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    await stopHosts(prefix);
  }
});

describe(`ConntrackLimits on ${count} namespaced hosts`, () => {
  let defaults: string[][];

  it("preview reads every host once and changes nothing", async () => {
    defaults = hosts.map(timeoutsOf);
    const before = synCounts();
    const t = Date.now();
    const { changes } = await stack.preview();
    console.log(`[figure] ${count}-host preview: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: count + 1 });
    const opened = synCounts().map((n, i) => n - before[i]);
    // The program process reads each host once (prefetch); the provider plans from that output.
    console.log(`[figure] SSH connections per host during preview: ${[...new Set(opened)].join(",")}`);
    expect(opened).toEqual(hosts.map(() => 1));
    expect(hosts.map(timeoutsOf)).toEqual(defaults);
  });

  it("up applies and verifies the timeouts on every host, one connection per host per process", async () => {
    const before = synCounts();
    const t = Date.now();
    const { changes } = await stack.up();
    console.log(`[figure] ${count}-host up: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: count + 1 });
    const opened = synCounts().map((n, i) => n - before[i]);
    console.log(`[figure] SSH connections per host during up (preview + update): ${[...new Set(opened)].join(",")}`);
    for (const h of hosts) expect(timeoutsOf(h)).toEqual(["3600", "45"]);
    // Each host's /etc is private to its sshd's mount namespace: read it over SSH.
    for (const h of hosts) expect((await hostExec(h, "cat /etc/sysctl.d/90-pulumi-conntrack.conf")).stdout).toContain("net.netfilter.nf_conntrack_udp_timeout = 45");
    // The Automation API's up skips the preview: the program reads each host once (its facts for
    // check), the provider makes the change on one connection of its own.
    expect(opened).toEqual(hosts.map(() => 2));
  });

  it("a second up changes nothing, and only reads each host once", async () => {
    const before = synCounts();
    const { changes } = await stack.up();
    expect(changes).toEqual({ same: count + 1 });
    expect(synCounts().map((n, i) => n - before[i])).toEqual(hosts.map(() => 1));
  });

  it("preview --diff shows a hand-made change as live → desired on that host alone", async () => {
    inNs(hosts[3], "sysctl", "-w", "net.netfilter.nf_conntrack_udp_timeout=99");
    const { stdout, changes } = await stack.preview();
    expect(changes).toEqual({ update: 1, same: count });
    // Exactly the drift, as live → desired: not the plan stored at the last up set against a new one.
    const block = stdout.slice(stdout.indexOf("~ pulumi-nodejs:dynamic/pulumi-conntrack:ConntrackLimits: (update)"));
    expect(block).toContain(`[urn=urn:pulumi:test::e2e-conntrack-limits::pulumi-nodejs:dynamic/pulumi-conntrack:ConntrackLimits::limits-${hosts[3].name}]`);
    expect(block).toContain(['      + plan        : {', '          + net.netfilter.nf_conntrack_udp_timeout: "99 → 45"', "        }"].join("\n"));
    expect(stdout.match(/\(update\)/g)).toHaveLength(1);
    expect(stdout).not.toMatch(/^\s*[-~] plan/m);
    inNs(hosts[3], "sysctl", "-w", "net.netfilter.nf_conntrack_udp_timeout=45");
  });

  it("refresh shows a hand-made change on one host only", async () => {
    expect((await stack.refresh()).drift).toEqual({});
    inNs(hosts[3], "sysctl", "-w", "net.netfilter.nf_conntrack_udp_timeout=99");
    expect((await stack.refresh()).drift).toEqual({ [`limits-${hosts[3].name}`]: ["live"] });
    const { changes } = await stack.up();
    expect(changes).toMatchObject({ update: 1 });
    expect(timeoutsOf(hosts[3])).toEqual(["3600", "45"]);
  });

  it("a timeout dropped from the program goes back to what it was; the rest stay", async () => {
    await stack.setConfig({ settings: { value: JSON.stringify({ timeouts: { tcpEstablished: 3600 } }) } });
    const { changes } = await stack.up();
    expect(changes).toMatchObject({ update: count });
    hosts.forEach((h, i) => expect(timeoutsOf(h)).toEqual(["3600", defaults[i][1]]));
    const file = (await hostExec(hosts[0], "cat /etc/sysctl.d/90-pulumi-conntrack.conf")).stdout;
    expect(file).toContain("net.netfilter.nf_conntrack_tcp_timeout_established = 3600");
    expect(file).not.toContain("udp_timeout");
  });

  it("destroy puts every host's timeouts back", async () => {
    await stack.destroy();
    expect(hosts.map(timeoutsOf)).toEqual(defaults);
    for (const h of hosts) expect((await hostExec(h, "ls /etc/sysctl.d /etc/udev/rules.d | grep -c pulumi-conntrack")).stdout.trim()).toBe("0");
  });
});

describe("four resources on one host", () => {
  it("share one TCP connection per operation", async () => {
    const h = hosts[0];
    const four = await testStack("conntrack-limits", {
      hosts: { value: JSON.stringify(["a", "b", "c", "d"].map((n) => ({ name: `${h.name}-${n}`, connection: connection(h) }))), secret: true },
      settings: { value: JSON.stringify({ timeouts: { icmp: 25 } }) },
    });
    try {
      const before = synCounts()[0];
      await four.preview();
      expect(synCounts()[0] - before).toBe(1);
      const beforeUp = synCounts()[0];
      await four.up();
      const upConnections = synCounts()[0] - beforeUp;
      console.log(`[figure] connections for 4 resources on one host, pulumi up: ${upConnections}`);
      expect(inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_icmp_timeout")).toBe("25");
      const beforeDestroy = synCounts()[0];
      await four.destroy();
      expect(synCounts()[0] - beforeDestroy).toBe(1);
      // One connection from the program (the facts of all four), one from the provider.
      expect(upConnections).toBe(2);
    } finally {
      await four.dispose();
    }
  });
});
