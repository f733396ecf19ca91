import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHosts, stopHosts, type LabHost } from "../lab/netns";
import { holdCommands, scheduleDrops, type Drop, type Landed } from "../lab/sessions";
import { boundedRun, killPulumiRun, type Outcome } from "./boundedRun";
import { testStack, type TestStack } from "./harness";

// Issue 13: SSH sessions that drop in the middle of an operation (a network blip, an sshd crash, the
// OOM killer) must fail the calls on them at once, with the host and the cause, and never hang
// `pulumi`. Eight namespaced hosts, two resources on each ("a", then "b" once its host's "a" and the
// slow host's "a" are done, as a rollout in waves does); the sessions of some hosts are dropped at
// chosen points while the others carry on.
const prefix = "pcsd";
const count = 8;
/** No operation here may take longer; it takes ~10-20 s when nothing hangs (see the [figure] lines). */
const boundMs = 60_000;
/** Each SSH command waits this long before it starts: the window in which a drop lands. */
const holdSeconds = 0.2;

let hosts: LabHost[];
let stack: TestStack;
let home: string;

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const timeoutsOf = (h: LabHost) => inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_established", "net.netfilter.nf_conntrack_udp_timeout").split("\n");
const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });
/**
 * Two resources per host, each owning its own key (two owners of one key must agree, so a change
 * would be refused halfway): "a" the TCP timeout, "b" the UDP one, after "a" and the slow host's "a".
 */
const program = (udp: number) => {
  const slow = hosts[count - 1];
  const entries = hosts.flatMap((h) => [
    { name: `${h.name}-a`, connection: connection(h), settings: { timeouts: { tcpEstablished: 3000 + udp } } },
    { name: `${h.name}-b`, connection: connection(h), settings: { timeouts: { udp } }, after: [...new Set([`${h.name}-a`, `${slow.name}-a`])] },
  ]);
  return { hosts: { value: JSON.stringify(entries), secret: true } };
};
const hostOfResource = (name: string) => hosts.find((h) => name === `limits-${h.name}-a` || name === `limits-${h.name}-b`);

beforeAll(async () => {
  hosts = await startHosts(count, prefix);
  // The slow host keeps every host's "b" waiting after its "a": that is when a connection is idle.
  for (const h of hosts) holdCommands(h, h === hosts[count - 1] ? 4 * holdSeconds : holdSeconds);
  stack = await testStack("conntrack-limits-waves", program(41));
  home = join(stack.dir, "home");
});

afterAll(async () => {
  try {
    if (home) {
      killPulumiRun(home);
      await boundedRun(stack.stack, home, "destroy", boundMs);
    }
    await stack?.dispose();
  } finally {
    await stopHosts(prefix);
  }
});

/** Runs the operation while the drops are scheduled; returns what the CLI reported and where drops landed. */
async function withDrops(kind: "preview" | "up", drops: Drop[], options: { continueOnError?: boolean } = {}): Promise<{ outcome: Outcome & { overran: boolean }; landed: Landed[] }> {
  const schedule = scheduleDrops(drops);
  const outcome = await boundedRun(stack.stack, home, kind, boundMs, options);
  const landed = await schedule.stop();
  console.log(`[figure] ${kind} with drops: ${outcome.ms} ms, ${outcome.ok ? "succeeded" : "failed"}; drops landed: ${landed.map((l) => `${l.host}@command ${l.atCommand} (${l.ended.join("; ")})`).join(", ") || "none"}; failed resources: ${[...outcome.errors.keys()].filter(Boolean).join(", ") || "none"}`);
  return { outcome, landed };
}

/** The operation ended within the bound, and every resource that failed names its host and why. */
function expectBoundedAndExplained(outcome: Outcome & { overran: boolean }, landed: Landed[]): void {
  expect(outcome.overran, `pulumi did not finish within ${boundMs / 1000} s and was killed`).toBe(false);
  expect(outcome.ms).toBeLessThan(boundMs);
  for (const [name, messages] of outcome.errors) {
    if (name === "" || name.startsWith("e2e-")) continue; // the engine's own summary line and the stack
    const h = hostOfResource(name);
    expect(h, `an error for ${name}, which is no resource of this test: ${messages.join(" | ")}`).toBeDefined();
    expect(landed.map((l) => l.host), `${name} failed, but its host's sessions were not dropped: ${messages.join(" | ")}`).toContain(h!.name);
    const text = messages.join("\n");
    expect(text).toContain(`root@${h!.host}:22`);
    expect(text).toMatch(new RegExp(`connection to ${h!.host.replace(/\./g, "\\.")} closed while running "[^"]+" \\(.+\\)`));
  }
}

function failedHosts(outcome: Outcome): string[] {
  return [...new Set([...outcome.errors.keys()].map((n) => hostOfResource(n)?.name).filter((n): n is string => n !== undefined))].sort();
}

/** A plain `up` afterwards succeeds and every host holds the values. */
async function expectConverges(udp: number): Promise<void> {
  const outcome = await boundedRun(stack.stack, home, "up", boundMs);
  console.log(`[figure] up after the drops: ${outcome.ms} ms, changes ${JSON.stringify(outcome.changes)}`);
  expect(outcome.ok, outcome.output).toBe(true);
  expect([...outcome.errors.keys()]).toEqual([]);
  for (const h of hosts) expect(timeoutsOf(h), h.name).toEqual([String(3000 + udp), String(udp)]);
}

describe(`SSH sessions dropped in the middle of operations on ${count} namespaced hosts`, () => {
  it("a preview whose connections drop while they are being opened dials again and succeeds", async () => {
    const { outcome, landed } = await withDrops("preview", hosts.map((host) => ({ host, point: { connecting: true } })));
    expectBoundedAndExplained(outcome, landed);
    // A handshake lasts ~30 ms: most land, but the poll may miss a host now and then.
    expect(landed.length).toBeGreaterThan(0);
    expect(outcome.ok, outcome.output).toBe(true);
  });

  it("a preview whose host reads lose their sessions fails at once, naming the host and the cause", async () => {
    // The program reads every host at once for planning (its own connections): drop during those reads.
    const { outcome, landed } = await withDrops("preview", hosts.slice(0, 4).map((host) => ({ host, point: { during: 1 } })));
    expectBoundedAndExplained(outcome, landed);
    expect(landed.length).toBeGreaterThan(0);
    expect(outcome.ok).toBe(false);
    // The engine stops at the first failed check, so it may report only one of them.
    expect(failedHosts(outcome).length).toBeGreaterThan(0);
    for (const [name, messages] of outcome.errors) if (hostOfResource(name)) expect(messages.join("\n")).toContain('closed while running "read host facts"');
  });

  it("an up whose lock, reads, applies and verifies lose their sessions fails within the bound; the next up converges", async () => {
    // SSH commands per host in a first up: 1 the program's read for planning (its own
    // connection); then the provider, per resource under the host lock: take the lock (a command
    // that holds it), read, apply, verify: 2-5 for a, 6-9 for b. The engine stops starting
    // resources after the first failure unless told to go on: go on, so every drop lands.
    const points = [
      { during: 2, resource: "a", step: "take the host lock" },
      { during: 3, resource: "a", step: "read host facts" },
      { during: 4, resource: "a", step: "apply ConntrackLimits" },
      { during: 5, resource: "a", step: "read host facts" },
      { during: 8, resource: "b", step: "apply ConntrackLimits" },
    ];
    const { outcome, landed } = await withDrops("up", points.map(({ during }, i) => ({ host: hosts[i], point: { during } })), { continueOnError: true });
    expectBoundedAndExplained(outcome, landed);
    expect(landed.map((l) => `${l.host}@${l.atCommand}`).sort()).toEqual(points.map(({ during }, i) => `${hosts[i].name}@${during}`).sort());
    expect(outcome.ok).toBe(false);
    expect(failedHosts(outcome)).toEqual(landed.map((l) => l.host).sort());
    points.forEach(({ resource, step }, i) => {
      expect(outcome.errors.get(`limits-${hosts[i].name}-${resource}`)?.join("\n")).toContain(`closed while running "${step}"`);
    });
    await expectConverges(41);
  });

  it("a connection dropped while idle between two resources on a host is dialled again by the next one", async () => {
    await stack.setConfig(program(42));
    // After command 5 (a's verify, then the lock released) each host's connection waits for the slow host's "a".
    const { outcome, landed } = await withDrops("up", hosts.slice(0, 4).map((host) => ({ host, point: { idleAfter: 5 } })));
    expectBoundedAndExplained(outcome, landed);
    expect(landed.map((l) => `${l.host}@${l.atCommand}`).sort()).toEqual(hosts.slice(0, 4).map((h) => `${h.name}@5`).sort());
    expect(outcome.ok, outcome.output).toBe(true);
    for (const h of hosts) expect(timeoutsOf(h), h.name).toEqual(["3042", "42"]);
    await expectConverges(42);
  });
});
