import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { testStack, type TestStack } from "./harness";

// A Fleet over six namespaced hosts in three waves of two, through the real pulumi CLI: wave
// order seen in the hosts' own file times, gates that run again on a change, an unreachable host
// within and beyond maxFailures, and two shard stacks running at once.
const prefix = "pctw";
let hosts: LabHost[];
let stack: TestStack;

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const udpTimeout = (h: LabHost) => inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout");
const icmpTimeout = (h: LabHost) => inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_icmp_timeout");
const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });
/** A host nobody listens on: connection refused at once, given up after one try. */
const deadHost = () => ({ name: "dead", connection: { host: "127.0.0.1", port: 1, user: "root", insecureSkipHostKeyCheck: true, privateKey: hosts[0].privateKey, dialErrorLimit: 1, perDialTimeout: 2 } });
const rollout = { waves: [2], healthCheck: { maxUsage: 0.9, noNewDrops: true, soakSeconds: 2 } };

/** When each host's persisted sysctl file was last written (its own clock is the machine's). */
async function writtenAt(h: LabHost): Promise<number> {
  const r = await hostExec(h, "stat -c %.9Y /etc/sysctl.d/90-pulumi-conntrack.conf");
  return r.code === 0 ? Number(r.stdout.trim()) : NaN;
}

async function gateTimes(s: TestStack): Promise<Record<string, string>> {
  const state = await s.state();
  return Object.fromEntries(
    state.resources.filter((r: any) => r.type.endsWith(":FleetWaveGate")).map((r: any) => [r.urn.split("::").pop(), r.outputs.checkedAt]),
  );
}

function config(hostList: unknown[], udp: number, more: Record<string, unknown> = rollout) {
  return {
    hosts: { value: JSON.stringify(hostList), secret: true },
    settings: { value: JSON.stringify({ conntrack: { timeouts: { udp } } }) },
    rollout: { value: JSON.stringify(more) },
  };
}

beforeAll(async () => {
  hosts = await startHosts(6, prefix);
  stack = await testStack("fleet", config(hosts.map((h) => ({ name: h.name, connection: connection(h) })), 45));
});

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    await stopHosts(prefix);
  }
});

describe("Fleet in three waves on namespaced hosts", () => {
  let defaults: string[];

  it("preview shows each wave's baseline and gate and the hosts' changes, changing nothing", async () => {
    defaults = hosts.map(udpTimeout);
    const { stdout, changes } = await stack.preview();
    // 6 ConntrackLimits, 3 baselines, 3 gates, the component and the stack.
    expect(changes).toMatchObject({ create: 14 });
    for (const w of [1, 2, 3]) {
      expect(stdout).toContain(`FleetWaveBaseline: (create)`);
      expect(stdout).toContain(`web-wave${w}-gate`);
    }
    // The wave-3 baseline lists the wave's hosts.
    const wave3 = stdout.slice(stdout.indexOf("::web-wave3-baseline]"));
    expect(wave3.slice(0, wave3.indexOf("wave        : 3"))).toMatch(new RegExp(`name\\s+: "${hosts[4].name}"[\\s\\S]*name\\s+: "${hosts[5].name}"`));
    expect(hosts.map(udpTimeout)).toEqual(defaults);
  });

  it("up applies wave by wave: every host of a wave is written after the gate before it passed", async () => {
    const t = Date.now();
    const { outputs } = await stack.up();
    console.log(`[figure] 3-wave up of 6 hosts, 2 s soak: ${Date.now() - t} ms`);
    expect(outputs.waves).toEqual([[hosts[0].name, hosts[1].name], [hosts[2].name, hosts[3].name], [hosts[4].name, hosts[5].name]]);
    for (const h of hosts) expect(udpTimeout(h)).toBe("45");
    const times = await Promise.all(hosts.map(writtenAt));
    const gates = await gateTimes(stack);
    const gate = (w: number) => Date.parse(gates[`web-wave${w}-gate`]) / 1000;
    console.log(`[figure] host writes (s since the first): ${times.map((x) => (x - times[0]).toFixed(2)).join(", ")}; gates at ${[1, 2, 3].map((w) => (gate(w) - times[0]).toFixed(2)).join(", ")}`);
    expect(Math.max(times[0], times[1])).toBeLessThan(gate(1));
    expect(gate(1)).toBeLessThan(Math.min(times[2], times[3]));
    expect(Math.max(times[2], times[3])).toBeLessThan(gate(2));
    expect(gate(2)).toBeLessThan(Math.min(times[4], times[5]));
    // Each gate waited its soak after its wave's last write.
    expect(gate(1) - Math.max(times[0], times[1])).toBeGreaterThanOrEqual(2);
    expect(outputs.statusTable).toMatch(new RegExp(`^${hosts[5].name}\\s+3\\s+\\d+%`, "m"));
  });

  it("a second up changes nothing and runs no gate", async () => {
    const before = await gateTimes(stack);
    const { changes } = await stack.up();
    expect(changes).toEqual({ same: 14 });
    expect(await gateTimes(stack)).toEqual(before);
  });

  it("an update of the converged fleet runs every gate again, wave by wave", async () => {
    const before = await gateTimes(stack);
    await stack.setConfig(config(hosts.map((h) => ({ name: h.name, connection: connection(h) })), 50));
    const { changes } = await stack.up();
    expect(changes).toMatchObject({ update: 12 });
    const after = await gateTimes(stack);
    for (const w of [1, 2, 3]) expect(after[`web-wave${w}-gate`] > before[`web-wave${w}-gate`]).toBe(true);
    const times = await Promise.all(hosts.map(writtenAt));
    expect(Math.max(times[2], times[3])).toBeLessThan(Date.parse(after["web-wave2-gate"]) / 1000);
    expect(Date.parse(after["web-wave2-gate"]) / 1000).toBeLessThan(Math.min(times[4], times[5]));
    for (const h of hosts) expect(udpTimeout(h)).toBe("50");
  });

  describe("an unreachable host in wave 2", () => {
    const withDead = () => [...hosts.slice(0, 3).map((h) => ({ name: h.name, connection: connection(h) })), deadHost(), ...hosts.slice(3).map((h) => ({ name: h.name, connection: connection(h) }))];

    it("without --continue-on-error, the engine stops at its failure and wave 3 is untouched", async () => {
      await stack.setConfig(config(withDead(), 55, { ...rollout, maxFailures: 1 }));
      const err = await stack.up().then(() => undefined, (e: Error) => e.message);
      expect(err).toContain("127.0.0.1:1");
      expect(err).toMatch(/refused/i);
      expect(udpTimeout(hosts[0])).toBe("55");
      expect([udpTimeout(hosts[4]), udpTimeout(hosts[5])]).toEqual(["50", "50"]);
    });

    it("with --continue-on-error and maxFailures 0, wave 2's gate fails naming it, and wave 3 is untouched", async () => {
      await stack.setConfig(config(withDead(), 55, { ...rollout, maxFailures: 0 }));
      const err = await stack.stack.up({ continueOnError: true, color: "never" }).then(() => undefined, (e: Error) => e.message);
      expect(err).toContain("Fleet web, wave 2: 1 host(s) failed (dead; their own errors are above), more than maxFailures 0");
      expect(err).toContain("127.0.0.1:1");
      expect([udpTimeout(hosts[4]), udpTimeout(hosts[5])]).toEqual(["50", "50"]);
    });

    it("with --continue-on-error and maxFailures 1, the rest of the fleet goes on and up fails naming it", async () => {
      await stack.setConfig(config(withDead(), 55, { ...rollout, maxFailures: 1 }));
      const err = await stack.stack.up({ continueOnError: true, color: "never" }).then(() => undefined, (e: Error) => e.message);
      expect(err).toContain("127.0.0.1:1");
      expect(err).not.toContain("more than maxFailures");
      for (const h of hosts) expect(udpTimeout(h)).toBe("55");
      // Back to the six live hosts for what follows.
      await stack.setConfig(config(hosts.map((h) => ({ name: h.name, connection: connection(h) })), 55));
      await stack.up();
    });
  });

  it("destroy puts every host back", async () => {
    await stack.destroy();
    expect(hosts.map(udpTimeout)).toEqual(defaults);
  });
});

describe("two shard stacks at once", () => {
  async function shard(name: string, list: LabHost[], settings: object) {
    const s = await testStack("fleet", {
      name: { value: name },
      hosts: { value: JSON.stringify(list.map((h) => ({ name: h.name, connection: connection(h) }))), secret: true },
      settings: { value: JSON.stringify(settings) },
      rollout: { value: JSON.stringify({ healthCheck: { soakSeconds: 0 } }) },
    }, { stackName: name });
    return s;
  }

  it("over disjoint hosts both apply, and over overlapping hosts both settings are there after both ups", async () => {
    const defaultsIcmp = hosts.map(icmpTimeout);
    const defaultsUdp = hosts.map(udpTimeout);
    const a = await shard("shard-a", hosts.slice(0, 3), { conntrack: { timeouts: { udp: 41 } } });
    const b = await shard("shard-b", hosts.slice(3), { conntrack: { timeouts: { udp: 42 } } });
    // Overlapping: every host, another key.
    const c = await shard("shard-c", hosts, { conntrack: { timeouts: { icmp: 21 } } });
    try {
      await Promise.all([a.up(), b.up()]);
      expect(hosts.map(udpTimeout)).toEqual(["41", "41", "41", "42", "42", "42"]);
      await Promise.all([c.up(), a.setConfig({ settings: { value: JSON.stringify({ conntrack: { timeouts: { udp: 43 } } }) } }).then(() => a.up())]);
      expect(hosts.map(udpTimeout)).toEqual(["43", "43", "43", "42", "42", "42"]);
      expect(hosts.map(icmpTimeout)).toEqual(hosts.map(() => "21"));
      // Both owners are in each overlapping host's ledger, and its file holds both keys.
      const file = (await hostExec(hosts[0], "cat /etc/sysctl.d/90-pulumi-conntrack.conf")).stdout;
      expect(file).toContain("nf_conntrack_udp_timeout = 43");
      expect(file).toContain("nf_conntrack_icmp_timeout = 21");
      await Promise.all([a.destroy(), b.destroy(), c.destroy()]);
      expect(hosts.map(udpTimeout)).toEqual(defaultsUdp);
      expect(hosts.map(icmpTimeout)).toEqual(defaultsIcmp);
    } finally {
      await Promise.all([a, b, c].map((s) => s.destroy().catch(() => undefined).then(() => s.dispose())));
    }
  });
});
