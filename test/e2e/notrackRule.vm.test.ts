import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sshArgs, type LabHost } from "../lab/host";
import { bootVm, destroyVm, rebootVm, vmHostJson, vmSh } from "../lab/vm";
import { comparableRuleset, inBackground, testStack, type TestStack } from "./harness";
import { holdConnections, installHelloServer, trackedWhileHeld } from "./port80";

// The seed's second remedy on a real kernel, through the real pulumi CLI: a host whose INPUT
// drops what it doesn't know, a server on port 80, a conntrack table of 16 entries, and 40
// connections from outside the VM held open at once, first without the rule, then with it.
const vmName = "e2e-notrack";
let vm: LabHost;
let httpPort: number;
let stack: TestStack;

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);

/** The VM's ruleset, as rulesets are compared. */
const ruleset = async () => comparableRuleset(await sh("iptables-save"));
const savedFile = () => sh("cat /etc/iptables/rules.v4");
const tableFullLines = async () => Number(await sh("dmesg | grep -c 'nf_conntrack: table full, dropping packet' || true"));

/**
 * Fills the conntrack table with established (assured) connections the kernel can't evict, over
 * local connections to port 81, shrinks it to 16 entries, and runs the load from outside. All
 * of it over one SSH session opened before the table fills (new SSH connections are dropped
 * while it is full). Returns how many were greeted, the port-80 entries seen while they were
 * held, and the kernel's "table full" lines logged meanwhile; then empties the table again.
 */
async function loadWithFullTable(): Promise<{ ok: number; logged: number }> {
  const before = await tableFullLines();
  const h = await vmHostJson(vmName);
  const filler = "perl -e 'use IO::Socket::INET; my @c = map { IO::Socket::INET->new(q(127.0.0.1:81)) } 1..24; sleep 600' & f=$!";
  // No flush before: this session's own entry must stay, or its next packet finds the table full.
  const script = [
    filler, "sleep 2",
    "sysctl -qw net.netfilter.nf_conntrack_max=16", "echo ready",
    "read go",
    "kill $f", "conntrack -F >/dev/null 2>&1", "sysctl -qw net.netfilter.nf_conntrack_max=4096", "echo done",
  ].join("; ");
  const child = spawn("ssh", sshArgs(h, h.privateKeyPath, script), { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const saw = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => out.includes(text) && (clearInterval(timer), resolve()), 100);
      child.on("close", () => { clearInterval(timer); if (out.includes(text)) resolve(); else reject(new Error(`held session ended before "${text}": ${out}`)); });
    });
  await saw("ready");
  const result = await holdConnections(httpPort, 40, 4);
  child.stdin.write("go\n");
  await saw("done");
  result.close();
  return { ok: result.ok, logged: (await tableFullLines()) - before };
}

let originalRules: string;
let originalFile: string;

/** getConntrackStatusOutput through the real CLI: the stack output, or the error of the up. */
async function conntrackStatus(): Promise<Record<string, unknown> | string> {
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  const status = await testStack("conntrack-status", { connection: { value: JSON.stringify(connection), secret: true } });
  try {
    return await status.up().then((r) => r.outputs.status as Record<string, unknown>, (err: Error) => err.message);
  } finally {
    await status.dispose();
  }
}

let notTracking: { error: Record<string, unknown> | string; lsmodBefore: string; lsmodAfter: string };

beforeAll(async () => {
  vm = await bootVm(vmName);
  httpPort = (await vmHostJson(vmName)).httpPort;
  // Freshly booted, nothing has loaded nf_conntrack yet: reading the status must not either.
  const lsmodBefore = await sh("lsmod | sort");
  notTracking = { error: await conntrackStatus(), lsmodBefore, lsmodAfter: await sh("lsmod | sort") };
  // The seed's host: SSH and established traffic accepted, port 80 opened for NEW connections, the rest dropped.
  await sh([
    "iptables -A INPUT -i lo -j ACCEPT",
    "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
    "iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT",
    "iptables -A INPUT -p tcp -m state --state NEW --dport 80 -j ACCEPT",
    "iptables -P INPUT DROP",
    "netfilter-persistent save >/dev/null 2>&1",
    // (from a file: systemd-run would expand the script's $ signs)
    installHelloServer,
    "systemd-run --quiet --unit pct-hello80 perl /root/hello.pl 80",
    "systemd-run --quiet --unit pct-hello81 perl /root/hello.pl 81",
  ].join(" && "));
  originalRules = await ruleset();
  originalFile = await savedFile();
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("notrack-rule", {
    hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true },
    notrack: { value: JSON.stringify({ ports: [80] }) },
  });
});

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    await destroyVm(vmName);
  }
});

describe("NotrackRule on a real kernel", () => {
  it("without the rule, a full table drops every new connection to port 80 and the kernel says so", async () => {
    const held = await trackedWhileHeld(sh, httpPort, 5);
    expect(held).toEqual({ ok: 5, tracked: 5 });
    const { ok, logged } = await loadWithFullTable();
    console.log(`[figure] without NotrackRule: ${ok}/40 greeted with a full table, ${logged} "table full" lines; ${held.tracked} of 5 held connections tracked`);
    expect(ok).toBe(0);
    expect(logged).toBeGreaterThan(0);
  });

  it("getConntrackStatus reports the table, the drops and the kernel's table-full lines; on a host that tracks nothing it says so and loads nothing", async () => {
    expect(notTracking.error).toMatch(/nf_conntrack isn't loaded, so nothing is tracked here/);
    expect(notTracking.lsmodAfter).toBe(notTracking.lsmodBefore);
    const status = (await conntrackStatus()) as Record<string, number | string[]>;
    console.log(`[figure] getConntrackStatus after the seed: count ${status.count}, max ${status.max}, drop ${status.drop}, ${(status.tableFullMessages as string[]).length} table-full lines`);
    expect(status).toMatchObject({ host: `root@${vm.host}:${vm.port}`, max: 4096, buckets: 4096 });
    expect(status.count).toBeGreaterThan(0);
    expect(status.usage).toBeCloseTo((status.count as number) / 4096, 6);
    expect(status.drop).toBeGreaterThan(0);
    expect((status.tableFullMessages as string[]).length).toBeGreaterThan(0);
    expect((status.tableFullMessages as string[]).every((l) => l.includes("nf_conntrack: table full, dropping packet"))).toBe(true);
  });

  it("preview shows the rules to add and names the --state NEW rule that stops matching, changing nothing", async () => {
    const t = Date.now();
    const { stdout, changes } = await stack.preview();
    console.log(`[figure] NotrackRule VM preview: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    expect(stdout).toMatch(/iptables -t raw -A PREROUTING -p tcp --dport 80 -j CT --notrack\s*: "absent → present"/);
    expect(stdout).toMatch(/iptables -t filter -A INPUT -p tcp --dport 80 -m conntrack --ctstate UNTRACKED -j ACCEPT\s*: "absent → present"/);
    expect(stdout).toContain('"-A INPUT -p tcp -m state --state NEW -m tcp --dport 80 -j ACCEPT\\" matches --state NEW on port 80');
    expect(await ruleset()).toBe(originalRules);
  });

  it("up adds the raw rules and the UNTRACKED accept together, and saves them", async () => {
    const t = Date.now();
    const { changes } = await stack.up();
    console.log(`[figure] NotrackRule VM up: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    const live = await ruleset();
    expect(live).toMatch(/^-A PREROUTING -p tcp -m tcp --dport 80 -m comment --comment "?pulumi-conntrack"? -j CT --notrack$/m);
    expect(live.split("\n").findIndex((l) => l.includes("UNTRACKED"))).toBeLessThan(live.split("\n").findIndex((l) => l.includes("--dport 22")));
    expect(await savedFile()).toContain("--ctstate UNTRACKED");
    expect((await stack.up()).changes).toEqual({ same: 2 });
  });

  it("with the rule, every connection is greeted, none is tracked, and nothing is logged", async () => {
    const held = await trackedWhileHeld(sh, httpPort, 5);
    expect(held).toEqual({ ok: 5, tracked: 0 });
    const { ok, logged } = await loadWithFullTable();
    console.log(`[figure] with NotrackRule: ${ok}/40 greeted with a full table, ${logged} "table full" lines; ${held.tracked} of 5 held connections tracked`);
    expect(ok).toBe(40);
    expect(logged).toBe(0);
  });

  it("the rules come back after a netfilter-persistent restart and after a reboot, and a preview is a no-op", async () => {
    const withRules = await ruleset();
    await sh("systemctl restart netfilter-persistent");
    expect(await ruleset()).toBe(withRules);
    await rebootVm(vmName);
    expect(await ruleset()).toBe(withRules);
    expect((await stack.preview()).changes).toEqual({ same: 2 });
  });

  it("destroy leaves the ruleset and the saved file as they were, but for a rule added by hand since", async () => {
    await sh("iptables -A INPUT -p tcp --dport 8080 -j ACCEPT");
    await stack.destroy();
    const now = await ruleset();
    expect(now.replace("-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\n", "")).toBe(originalRules);
    expect(await savedFile()).toBe(originalFile);
  });
});

describe("the lockout guard", () => {
  it("reverts by itself a change that cuts SSH, and up fails saying so", async () => {
    // SSH accepted only through a chain of the host's own, by state: the planner doesn't follow
    // jumps, so it sees no accept for port 22 and adds none; untracked SSH packets then match
    // nothing and meet the DROP policy.
    await sh([
      "iptables -N SSHIN",
      "iptables -A SSHIN -p tcp --dport 22 -m state --state NEW,ESTABLISHED -j ACCEPT",
      "iptables -I INPUT 1 -j SSHIN",
      "iptables -D INPUT -p tcp --dport 22 -j ACCEPT",
      "netfilter-persistent save >/dev/null 2>&1",
    ].join(" && "));
    // A fail2ban-style chain, and a ban it adds while the guard waits (the moment the apply's
    // rules appear): the revert must take out only what the apply added (issue 23, item 2).
    await sh("iptables -N f2b-sshd && iptables -A f2b-sshd -j RETURN && iptables -I INPUT 1 -p tcp --dport 22 -j f2b-sshd");
    const ban = "-A f2b-sshd -s 203.0.113.7/32 -j REJECT --reject-with icmp-port-unreachable";
    await sh(inBackground("until iptables-save -t raw | grep -q -- --notrack; do sleep 0.2; done; iptables -w -I f2b-sshd 1 -s 203.0.113.7 -j REJECT"));
    const rulesBefore = await ruleset();
    const fileBefore = await savedFile();
    await stack.setConfig({ notrack: { value: JSON.stringify({ ports: [22], side: "server" }) } });
    const t = Date.now();
    const error = await stack.up().then(() => undefined, (err: Error) => err.message);
    console.log(`[figure] lockout guard: up failed after ${Date.now() - t} ms, the host reverted by itself`);
    const after = await ruleset();
    expect(after).toContain(ban);
    expect(after.replace(`${ban}\n`, "")).toBe(rulesBefore);
    expect(error).toMatch(/cut new SSH connections to the host .*put back its rules and files by itself 30 s after the apply \(all \d+ steps of the revert succeeded\), and SSH answers again/);
    expect(await savedFile()).toBe(fileBefore);
    expect(await sh("ls -A /var/lib/pulumi-conntrack 2>/dev/null; ls -A /run/pulumi-conntrack-guard")).toMatch(/^[0-9a-f]{12}$/);
    expect(await sh("cat /run/pulumi-conntrack-guard/*/revert.log; ls /run/pulumi-conntrack-guard/*")).toContain("fired");
  });
});
