import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { commandCount, dropSessions, holdCommands, holdLockOnHost, onHost, scheduleDrops, sessionProcesses, vanishClients } from "../lab/sessions";
import { boundedRun, killPulumiRun } from "./boundedRun";
import { pulumiCli, testStack, type TestStack } from "./harness";

// Issue 11, faults: connections that drop at each boundary of a host transaction, a client that
// vanishes without a FIN, `pulumi up` SIGKILLed mid-run and the documented recovery, dead and
// refusing hosts in a fleet, and two stacks changing one host at once. Namespaced hosts.
const prefix = "pcft";
let hosts: LabHost[];
const stacks: TestStack[] = [];
/** No operation here may take longer (the lease of a vanished client's lock is 30 s of it). */
const boundMs = 90_000;
const hold = 0.3;

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const sysctl = (h: LabHost, name: string) => inNs(h, "sysctl", "-n", `net.netfilter.nf_conntrack_${name}`);
const connection = (h: LabHost, port = h.port) => ({ host: h.host, port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });
const hostsConfig = (entries: Array<{ name: string; connection: object }>) => ({ hosts: { value: JSON.stringify(entries), secret: true } });
const home = (s: TestStack) => join(s.dir, "home");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A ConntrackLimits stack over `entries`, wanting tcpEstablished 3600 and udp `udp`. */
async function limitsStack(entries: Array<{ name: string; connection: object }>, udp = 20, stackName?: string): Promise<TestStack> {
  const s = await testStack("conntrack-limits", { ...hostsConfig(entries), settings: { value: JSON.stringify({ timeouts: { tcpEstablished: 3600, udp } }) } }, { stackName });
  stacks.push(s);
  return s;
}

/**
 * The one atomic unit a ConntrackLimits change is: both live values, the sysctl.d file that
 * persists them and the ledger, all as before or all as desired. Never a live value without its file.
 */
async function unit(h: LabHost): Promise<"before" | "desired" | string> {
  const live = [sysctl(h, "tcp_timeout_established"), sysctl(h, "udp_timeout")].join(" ");
  const file = (await hostExec(h, "cat /etc/sysctl.d/90-pulumi-conntrack.conf 2>/dev/null")).stdout;
  const ledger = (await hostExec(h, "cat /var/lib/pulumi-conntrack/ledger.json 2>/dev/null")).stdout;
  if (live === "432000 30" && file === "" && ledger === "") return "before";
  const persisted = file.includes("nf_conntrack_tcp_timeout_established = 3600") && file.includes("nf_conntrack_udp_timeout = 20");
  if (live === "3600 20" && persisted && ledger.includes("udp_timeout")) return "desired";
  return `half: live ${live}, file ${JSON.stringify(file)}, ledger ${ledger ? "present" : "absent"}`;
}

/** Whether the host lock is free now (taken and given back at once, without waiting). */
const lockFree = (h: LabHost) => onHost(h, ["sh", "-c", "flock -n /run/pulumi-conntrack.lock true && echo free || echo held"]) === "free";

/** The recovery after a `pulumi up` that was killed, as docs/troubleshooting.md gives it. */
async function documentedRecovery(s: TestStack): Promise<string> {
  const cancel = await pulumiCli(s, ["cancel", "--yes"]);
  expect(cancel.code, cancel.output).toBe(0);
  const refresh = await pulumiCli(s, ["refresh", "--clear-pending-creates", "--yes", "--skip-preview"]);
  expect(refresh.code, refresh.output).toBe(0);
  const up = await pulumiCli(s, ["up", "--yes", "--skip-preview"]);
  expect(up.code, up.output).toBe(0);
  return up.output;
}

beforeAll(async () => {
  hosts = await startHosts(12, prefix);
});

afterAll(async () => {
  try {
    for (const s of stacks) {
      killPulumiRun(home(s));
      await s.destroy().catch(() => undefined);
      await s.dispose();
    }
  } finally {
    await stopHosts(prefix);
  }
});

describe("faults and concurrency on namespaced hosts", () => {
  it("a connection cut at each boundary of the transaction fails naming the host and step, leaves each host as before or as desired, and the next up converges", async () => {
    const fleet = hosts.slice(0, 5);
    for (const h of fleet) holdCommands(h, hold);
    const s = await limitsStack(fleet.map((h) => ({ name: h.name, connection: connection(h) })));
    // SSH commands per host in an up: 1 the program's read; then, under the host lock: 2 take the
    // lock, 3 read, 4 apply (a job detached on the host), 5 verify. "during n" lands after command
    // n-1 finished and before command n runs: the boundaries between the transaction's steps.
    // A cut before the apply: sshd's session child may still run the script it had received
    // (a drop can leave the remote script running), so the apply happened entirely or not at all.
    const points = [
      { during: 2, step: "take the host lock", after: ["before"] },
      { during: 3, step: "read host facts", after: ["before"] },
      { during: 4, step: "apply ConntrackLimits", after: ["before", "desired"] },
      { during: 5, step: "read host facts", after: ["desired"] },
    ];
    const schedule = scheduleDrops(points.map(({ during }, i) => ({ host: fleet[i], point: { during } })));
    // fleet[4]: cut in the middle of the apply. The job waits for the jobs' lock, which the test
    // takes once the lock step is done and holds until it has looked at the host; the connection is
    // cut 1 s into the apply, while the job is pending.
    const mid = fleet[4];
    const base = commandCount(mid);
    let jobLock: { release(): Promise<void> } | undefined;
    const cutMid = (async () => {
      while (commandCount(mid) - base < 3) await sleep(5);
      jobLock = await holdLockOnHost(mid, "/run/pulumi-conntrack-jobs.lock");
      while (commandCount(mid) - base < 4) await sleep(5);
      await sleep(1000);
      return dropSessions(mid);
    })();
    const failed = await boundedRun(s.stack, home(s), "up", boundMs, { continueOnError: true });
    const landed = await schedule.stop();
    const cut = await cutMid;
    console.log(`[figure] up with a cut at each boundary: ${failed.ms} ms; landed ${landed.map((l) => `${l.host}@${l.atCommand}`).join(", ")}, mid-apply ${cut.length} sessions`);
    expect(failed.overran).toBe(false);
    expect(landed.map((l) => l.atCommand)).toEqual(points.map((p) => p.during));
    const states = await Promise.all(fleet.map(unit));
    const steps = fleet.map((_, i) => (i < points.length ? points[i].step : "apply ConntrackLimits"));
    console.log(`[figure] drop point → state after the failed up:\n  ${fleet.map((h, i) => `${h.name} cut before "${steps[i]}"${i === 4 ? " (mid-apply)" : ""}: ${states[i]}`).join("\n  ")}`);
    for (const [i, h] of fleet.entries()) {
      const message = failed.errors.get(`limits-${h.name}`)?.join("\n") ?? "";
      expect(message).toContain(`root@${h.host}:22`);
      expect(message).toContain(`closed while running "${steps[i]}"`);
      // The job of the mid-apply cut is still waiting for the test's lock: as before, for now.
      expect(i < points.length ? points[i].after : ["before"], h.name).toContain(states[i]);
    }
    expect(failed.errors.get(`limits-${mid.name}`)!.join("\n")).toContain("the change goes on on the host by itself");
    await jobLock!.release();

    // The next up waits for the job left running, reports how it ended, and converges everywhere.
    const again = await boundedRun(s.stack, home(s), "up", boundMs);
    expect(again.ok, again.output).toBe(true);
    for (const h of fleet) expect(await unit(h), h.name).toBe("desired");
    const outputs = (await s.stack.outputs())[mid.name].value as { warnings: string[] };
    expect(outputs.warnings).toContainEqual(expect.stringContaining('an earlier "apply ConntrackLimits" lost its SSH connection; it went on on the host by itself and succeeded'));
    for (const h of fleet) expect(lockFree(h), h.name).toBe(true);
    await s.destroy();
    for (const h of fleet) expect(await unit(h), h.name).toBe("before");
  });

  it("NotrackRule: a cut after the guarded apply, at the disarm or while waiting for the job, leaves the rules with their accept and the host finishes the change", async () => {
    const fleet = hosts.slice(10, 12);
    for (const h of fleet) {
      inNs(h, "sh", "-c", "iptables -A INPUT -p tcp --dport 22 -j ACCEPT && iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT && iptables -A INPUT -p tcp -m state --state NEW --dport 80 -j ACCEPT && iptables -P INPUT DROP");
      holdCommands(h, hold);
    }
    /** Ours: the raw rules and the accept, and the ledger; all there (with the ledger's final owners) or none. */
    const notrackUnit = async (h: LabHost) => {
      const rules = inNs(h, "iptables-save").split("\n").filter((l) => l.includes("pulumi-conntrack"));
      const raw = rules.filter((l) => /NOTRACK|CT --notrack/.test(l)).length;
      const accept = rules.filter((l) => l.includes("UNTRACKED")).length;
      const ledger = (await hostExec(h, "cat /var/lib/pulumi-conntrack/ledger.json 2>/dev/null")).stdout;
      if (raw === 0 && accept === 0 && ledger === "") return "before";
      if (raw === 2 && accept === 1 && ledger.includes(`NotrackRule/notrack-${h.name}`)) return "desired";
      return `half: ${raw} raw rules, ${accept} accepts, ledger ${ledger ? "present" : "absent"}`;
    };
    const s = await testStack("notrack-rule", { ...hostsConfig(fleet.map((h) => ({ name: h.name, connection: connection(h) }))), notrack: { value: JSON.stringify({ ports: [80], side: "server", persist: false }) } });
    stacks.push(s);
    // Commands: 1 program read, 2 lock, 3 read, 4 the guarded apply (returns once the rules are
    // in), 5 the disarm over a new connection, 6 wait for the job to persist, 7 verify.
    const schedule = scheduleDrops([{ host: fleet[0], point: { during: 5 } }, { host: fleet[1], point: { during: 6 } }]);
    const first = await boundedRun(s.stack, home(s), "up", boundMs, { continueOnError: true });
    const landed = await schedule.stop();
    const states = await Promise.all(fleet.map(notrackUnit));
    console.log(`[figure] NotrackRule up with cuts: ${first.ms} ms; ${fleet.map((h, i) => `${h.name} cut at command ${landed.find((l) => l.host === h.name)?.atCommand}: ${states[i]}, ${first.errors.has(`notrack-${h.name}`) ? "failed" : "succeeded"}`).join("; ")}`);
    expect(landed.map((l) => l.atCommand).sort()).toEqual([5, 6]);
    // Cut at the disarm: if the disarm ran on the host before its connection went, the change
    // stands and the client, looking after the window, finishes; if not, the host reverted by
    // itself and the error says the disarm's connection broke. Never anything in between.
    const atDisarm = first.errors.get(`notrack-${fleet[0].name}`)?.join("\n");
    if (atDisarm === undefined) expect(states[0]).toBe("desired");
    else {
      expect(states[0]).toBe("before");
      expect(atDisarm).toContain(`root@${fleet[0].host}:22: apply NotrackRule: a new SSH connection got in to disarm the lockout guard but broke before it could (connection to ${fleet[0].host} closed while running "disarm the lockout guard"`);
    }
    // Cut while waiting for the job after the disarm: the host persists the change by itself.
    expect(first.errors.get(`notrack-${fleet[1].name}`)?.join("\n")).toMatch(new RegExp(`root@${fleet[1].host.replace(/\./g, "\\.")}:22: connection to .*closed while running "apply NotrackRule".*the change goes on on the host by itself`));
    expect(states[1]).toBe("desired");
    const again = await boundedRun(s.stack, home(s), "up", boundMs);
    expect(again.ok, again.output).toBe(true);
    expect(((await s.stack.outputs())[fleet[1].name].value as { warnings: string[] }).warnings).toContainEqual(expect.stringContaining('an earlier "apply NotrackRule" lost its SSH connection; it went on on the host by itself and succeeded'));
    await s.destroy();
    expect(await Promise.all(fleet.map(notrackUnit))).toEqual(["before", "before"]);
  });

  it("a client that vanishes without a FIN mid-apply: its sshd and lock holder live on, the next up takes the lock over within the lease, after the documented recovery", async () => {
    const h = hosts[5];
    holdCommands(h, hold);
    const s = await limitsStack([{ name: h.name, connection: connection(h) }]);
    const base = commandCount(h);
    const run = boundedRun(s.stack, home(s), "up", boundMs);
    while (commandCount(h) - base < 4) await sleep(5);
    // At the apply's boundary: cut the client off without a FIN, then SIGKILL it.
    const cutPorts = vanishClients(h);
    const stale = sessionProcesses(h);
    killPulumiRun(home(s));
    const killed = await run;
    expect(killed.ok).toBe(false);
    expect(cutPorts.length).toBeGreaterThan(0);
    await sleep(500);
    expect(sessionProcesses(h).filter((p) => stale.includes(p)).length, "the vanished client's sshd lives on").toBeGreaterThan(0);
    expect(lockFree(h), "its lock holder lives on").toBe(false);
    const started = Date.now();
    const output = await documentedRecovery(s);
    const ms = Date.now() - started;
    console.log(`[figure] recovery after a vanished client: ${ms} ms (lease 30 s)`);
    expect(sessionProcesses(h).filter((p) => stale.includes(p)).length, "the old sshd was still there when the lock was taken over").toBeGreaterThan(0);
    expect(output).toMatch(/created|updated/);
    expect(await unit(h)).toBe("desired");
    expect(lockFree(h)).toBe(true);
    for (const port of cutPorts) {
      inNs(h, "iptables", "-D", "INPUT", "-p", "tcp", "--dport", "22", "--sport", String(port), "-j", "DROP");
      inNs(h, "iptables", "-D", "OUTPUT", "-p", "tcp", "--sport", "22", "--dport", String(port), "-j", "DROP");
    }
    await s.destroy();
    expect(await unit(h)).toBe("before");
  });

  it("pulumi up SIGKILLed while its apply runs: the documented recovery converges, nothing lost, no stale lock", async () => {
    const h = hosts[6];
    holdCommands(h, hold);
    const s = await limitsStack([{ name: h.name, connection: connection(h) }]);
    const base = commandCount(h);
    const run = boundedRun(s.stack, home(s), "up", boundMs);
    // Kill it while the apply's job is pending on the host (the test holds the jobs' lock from the
    // read on), then let the job run on its own.
    while (commandCount(h) - base < 3) await sleep(5);
    const jobLock = await holdLockOnHost(h, "/run/pulumi-conntrack-jobs.lock");
    while (commandCount(h) - base < 4) await sleep(5);
    await sleep(1000);
    killPulumiRun(home(s));
    expect((await run).ok).toBe(false);
    await jobLock.release();
    const pending = ((await s.stack.exportStack()).deployment.pending_operations ?? []) as Array<{ type: string }>;
    console.log(`[figure] pending operations after the kill: ${pending.map((p) => p.type).join(", ") || "none"}`);
    const output = await documentedRecovery(s);
    expect(output).not.toContain("pending operation");
    expect(await unit(h)).toBe("desired");
    expect(lockFree(h)).toBe(true);
    const outputs = (await s.stack.outputs())[h.name].value as { previous: Record<string, string>; warnings: string[] };
    // The originals recorded by the killed run's job are kept: destroy puts them back.
    expect(outputs.previous).toMatchObject({ "net.netfilter.nf_conntrack_udp_timeout": "30", "net.netfilter.nf_conntrack_tcp_timeout_established": "432000" });
    expect(outputs.warnings).toContainEqual(expect.stringContaining("lost its SSH connection; it went on on the host by itself and succeeded"));
    await s.destroy();
    expect(await unit(h)).toBe("before");
    expect(lockFree(h)).toBe(true);
  });

  it("a dead host and a refusing one fail naming themselves within the stated bound, and the other host carries on, with and without --continue-on-error", async () => {
    const [dead, live] = [hosts[7], hosts[8]];
    // Dead: its SYNs get no answer at all. Refused: the live host's address on a port nobody listens on.
    inNs(dead, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "22", "--syn", "-j", "DROP");
    const deadEntry = { name: "dead", connection: connection(dead) };
    const liveEntry = { name: "live", connection: connection(live) };
    const refusedEntry = { name: "refused", connection: connection(live, 2222) };
    const s = await limitsStack([deadEntry, liveEntry], 25);
    // Without --continue-on-error the engine starts nothing new after a first failure, so one
    // failing host per run; with it, every failing host reports.
    for (const [udp, continueOnError, entries] of [[25, false, [deadEntry, liveEntry]], [26, true, [deadEntry, refusedEntry, liveEntry]]] as const) {
      await s.setConfig({ ...hostsConfig([...entries]), settings: { value: JSON.stringify({ timeouts: { tcpEstablished: 3600, udp } }) } });
      const outcome = await boundedRun(s.stack, home(s), "up", boundMs, { continueOnError });
      console.log(`[figure] up with a dead${continueOnError ? " and a refusing" : ""} host (continue-on-error ${continueOnError}): ${outcome.ms} ms; errors ${JSON.stringify([...outcome.errors.keys()])}`);
      expect(outcome.ok).toBe(false);
      // Stated bound: 2 unanswered dials × perDialTimeout (15 s) for the dead host, + 20 s for the run itself.
      expect(outcome.ms).toBeLessThan(2 * 15_000 + 20_000);
      expect(outcome.errors.get("limits-dead")?.join("\n")).toContain(`root@${dead.host}:22: unreachable after 2 tries (no answer from ${dead.host}:22 within 15 s (no TCP connection))`);
      if (continueOnError) expect(outcome.errors.get("limits-refused")?.join("\n")).toMatch(new RegExp(`root@${live.host.replace(/\./g, "\\.")}:2222: unreachable after 10 tries \\(.*ECONNREFUSED`));
      expect(outcome.errors.has("limits-live")).toBe(false);
      expect(sysctl(live, "udp_timeout")).toBe(String(udp));
    }
    inNs(dead, "iptables", "-D", "INPUT", "-p", "tcp", "--dport", "22", "--syn", "-j", "DROP");
  });

  it("two stacks changing one host at once are serialized by the host lock: both stacks' settings, rules, ledger entries and files are there, and both destroys restore it", async () => {
    const h = hosts[9];
    holdCommands(h, hold);
    const raw = () => inNs(h, "iptables-save", "-t", "raw").split("\n").filter((l) => l.startsWith("-A")).join("\n");
    const rawBefore = raw();
    const one = await testStack("conntrack-limits", { ...hostsConfig([{ name: h.name, connection: connection(h) }]), settings: { value: JSON.stringify({ timeouts: { icmp: 25 } }) } }, { stackName: "one" });
    const two = await testStack("notrack-rule", {
      ...hostsConfig([{ name: h.name, connection: connection(h) }]),
      notrack: { value: JSON.stringify({ ports: [80], side: "server", persist: false }) },
      limits: { value: JSON.stringify({ timeouts: { udp: 45 } }) },
    }, { stackName: "two" });
    stacks.push(one, two);
    const [a, b] = await Promise.all([boundedRun(one.stack, home(one), "up", boundMs), boundedRun(two.stack, home(two), "up", boundMs)]);
    expect(a.ok, a.output).toBe(true);
    expect(b.ok, b.output).toBe(true);
    expect([sysctl(h, "icmp_timeout"), sysctl(h, "udp_timeout")]).toEqual(["25", "45"]);
    expect(raw()).toMatch(/--dport 80 .*-j (CT --notrack|NOTRACK)/);
    const items = JSON.parse((await hostExec(h, "cat /var/lib/pulumi-conntrack/ledger.json")).stdout).items as Record<string, { owners: Record<string, { label: string }> }>;
    const ownerOf = (key: string) => Object.values(items[key].owners).map((o) => o.label.split("/")[1]);
    expect(ownerOf("sysctl:net.netfilter.nf_conntrack_icmp_timeout")).toEqual(["one"]);
    expect(ownerOf("sysctl:net.netfilter.nf_conntrack_udp_timeout")).toEqual(["two"]);
    expect(Object.keys(items).filter((k) => !k.startsWith("sysctl:")).length).toBeGreaterThan(0);
    const file = (await hostExec(h, "cat /etc/sysctl.d/90-pulumi-conntrack.conf")).stdout;
    expect(file).toContain("nf_conntrack_icmp_timeout = 25");
    expect(file).toContain("nf_conntrack_udp_timeout = 45");
    const [da, db] = await Promise.all([boundedRun(one.stack, home(one), "destroy", boundMs), boundedRun(two.stack, home(two), "destroy", boundMs)]);
    expect(da.ok, da.output).toBe(true);
    expect(db.ok, db.output).toBe(true);
    expect([sysctl(h, "icmp_timeout"), sysctl(h, "udp_timeout")]).toEqual(["30", "30"]);
    expect(raw()).toBe(rawBefore);
    expect((await hostExec(h, "ls /etc/sysctl.d /var/lib/pulumi-conntrack 2>/dev/null | grep -c pulumi-conntrack")).stdout.trim()).toBe("0");
    expect(lockFree(h)).toBe(true);
  });
});
