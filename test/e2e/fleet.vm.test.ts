import { execFileSync, spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sshArgs, type LabHost } from "../lab/host";
import { hostExec, startHosts, stopHosts } from "../lab/netns";
import { bootVm, destroyVm, vmHostJson, vmSh } from "../lab/vm";
import { testStack, type TestStack } from "./harness";
import { installHelloServer } from "./port80";

// A Fleet whose wave 2 is the lab VM and whose change makes it really sick (the seed's full
// table: a max of 16 under 24 held connections, new connections dropped, the drop counter
// rising): the gate stops the rollout naming it and its readings, and wave 3 stays untouched.
const vmName = "e2e-fleet";
const prefix = "pctv";
let vm: LabHost;
let hosts: LabHost[];
let httpPort: number;
let stack: TestStack;
type Held = ChildProcessByStdio<Writable, Readable, null>;
let held: Held | undefined;

const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });
const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const udpTimeout = (h: LabHost) => inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout");

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);

/**
 * Holds 24 established connections to the VM's port 81 from inside it, over one SSH session
 * that stays open (new SSH connections are dropped while the table is full); writing "go" to it
 * closes them, flushes the table and makes room again.
 */
async function holdTable(): Promise<Held> {
  const h = await vmHostJson(vmName);
  const script = [
    "perl -e 'use IO::Socket::INET; my @c = map { IO::Socket::INET->new(q(127.0.0.1:81)) } 1..24; sleep 900' & f=$!",
    "sleep 2", "echo ready", "read go",
    "kill $f", "conntrack -F >/dev/null 2>&1", "sysctl -qw net.netfilter.nf_conntrack_max=4096", "echo done",
  ].join("; ");
  const child = spawn("ssh", sshArgs(h, h.privateKeyPath, script), { stdio: ["pipe", "pipe", "inherit"] });
  await waitFor(child, "ready");
  return child;
}

function waitFor(child: Held, text: string): Promise<void> {
  let out = "";
  return new Promise((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); if (out.includes(text)) resolve(); });
    child.on("close", () => reject(new Error(`held session ended before "${text}": ${out}`)));
  });
}

/** New connections to the VM's port 80 from outside, one every 100 ms, until stopped. */
function keepConnecting(): { stop(): void } {
  const timer = setInterval(() => {
    const s = connect({ host: "127.0.0.1", port: httpPort });
    s.setTimeout(2000, () => s.destroy());
    s.on("data", () => s.destroy());
    s.on("error", () => s.destroy());
  }, 100);
  return { stop: () => clearInterval(timer) };
}

beforeAll(async () => {
  [vm, hosts] = await Promise.all([bootVm(vmName), startHosts(2, prefix)]);
  httpPort = (await vmHostJson(vmName)).httpPort;
  await sh([installHelloServer, "systemd-run --quiet --unit pct-hello80 perl /root/hello.pl 80", "systemd-run --quiet --unit pct-hello81 perl /root/hello.pl 81",
    // A stateful rule, as on the seed's hosts: without one the kernel tracks nothing.
    "iptables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"].join(" && "));
  const list = [
    { name: "n1", connection: connection(hosts[0]) },
    { name: "vm", connection: connection(vm), conntrack: { max: 16 } },
    { name: "n2", connection: connection(hosts[1]) },
  ];
  stack = await testStack("fleet", {
    hosts: { value: JSON.stringify(list), secret: true },
    settings: { value: JSON.stringify({ conntrack: { timeouts: { udp: 45 } } }) },
    rollout: { value: JSON.stringify({ waves: [1], healthCheck: { maxUsage: 0.9, noNewDrops: true, soakSeconds: 5 } }) },
  });
});

afterAll(async () => {
  try {
    if (held) {
      held.stdin.write("go\n");
      await waitFor(held, "done").catch(() => undefined);
    }
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    await Promise.all([destroyVm(vmName), stopHosts(prefix)]);
  }
});

describe("Fleet gate on a real kernel", () => {
  it("stops the rollout at the VM whose new max fills its table, naming it and its readings; wave 3 is untouched", async () => {
    const n2Before = udpTimeout(hosts[1]);
    held = await holdTable();
    const load = keepConnecting();
    let err: string | undefined;
    try {
      err = await stack.up().then((r) => `up succeeded: ${JSON.stringify(r.outputs.statusTable)}`, (e: Error) => e.message);
    } finally {
      load.stop();
    }
    const gateLine = err?.split("\n").find((l) => l.trim().startsWith("vm:")) ?? "";
    console.log(`[figure] the gate's words: ${gateLine.trim()}`);
    expect(err).toContain("Fleet web, wave 2 failed its health check after a soak of 5 s: later waves were not started.");
    expect(gateLine).toMatch(/usage \d+\.\d\d \(\d+\/16\) is above maxUsage 0\.9/);
    expect(gateLine).toMatch(/drop rose by \d+ \(\d+ → \d+\)/);
    expect(gateLine).toMatch(/the kernel logs "table full, dropping packet" \(\d+ recent lines\)/);
    // Wave 1 changed; the VM has its (bad) new max; wave 3 was never touched.
    expect(udpTimeout(hosts[0])).toBe("45");
    expect(udpTimeout(hosts[1])).toBe(n2Before);
    expect((await hostExec(hosts[1], "ls /etc/sysctl.d | grep -c pulumi-conntrack || true")).stdout.trim()).toBe("0");
    const state = await stack.state();
    expect(state.resources.map((r: any) => r.urn.split("::").pop())).not.toContain("web-n2-conntrack");
  });
});
