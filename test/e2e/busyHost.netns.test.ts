import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { quote } from "../../provider/transport/shell";
import { comparableRuleset, disposeStacks, inBackground, testStack, type TestStack } from "./harness";

// A busy host (issue 23): another tool (fail2ban, kube-proxy) holds the xtables lock while we
// change rules (item 3), and a ruleset of 20,000 rules read and changed through sudo with a
// password (item 5). The host runs iptables-legacy (the lock is legacy's; iptables-nft takes
// none): an apply and a lockout revert wait for the lock, explicitly and bounded, instead of
// depending on the iptables version's default.
const prefix = "pcxl";
let host: LabHost;
const stacks: TestStack[] = [];

async function sh(command: string): Promise<string> {
  const r = await hostExec(host, command);
  if (r.code !== 0) throw new Error(`${command} → exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}
/** The host's legacy ruleset, as rulesets are compared. */
const ruleset = async () => comparableRuleset(await sh("iptables-save"));
/** Holds /run/xtables.lock (this host's own /run) for `seconds` once `when` succeeds, in the background. */
const holdLock = (seconds: number, when = "true") => sh(inBackground(`until ${when}; do sleep 0.1; done; exec flock /run/xtables.lock sleep ${seconds}`));
const lockHeld = () => sh("flock -n /run/xtables.lock true && echo free || echo held");

async function stackWith(notrack: object, login: object = {}): Promise<TestStack> {
  const connection = { host: host.host, port: host.port, user: host.user, privateKey: host.privateKey, hostKey: host.hostKey, ...login };
  const s = await testStack("notrack-rule", { hosts: { value: JSON.stringify([{ name: host.name, connection }]), secret: true }, notrack: { value: JSON.stringify(notrack) } }, { stackName: `x${stacks.length + 1}` });
  stacks.push(s);
  return s;
}

beforeAll(async () => {
  [host] = await startHosts(1, prefix);
  // The alternatives live in the host's private /etc and /var/lib: only this host changes backend.
  await sh("update-alternatives --quiet --set iptables /usr/sbin/iptables-legacy && update-alternatives --quiet --set ip6tables /usr/sbin/ip6tables-legacy");
  expect(await sh("iptables -V")).toContain("legacy");
  await sh([
    "iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT",
    "iptables -N SSHIN && iptables -A SSHIN -p tcp --dport 22 -m state --state NEW -j ACCEPT && iptables -A INPUT -j SSHIN",
    "iptables -A INPUT -p tcp -m state --state NEW --dport 80 -j ACCEPT",
    "iptables -P INPUT DROP",
  ].join(" && "));
});

afterAll(() => disposeStacks(stacks, () => stopHosts(prefix)));

describe("the xtables lock held by another tool, on iptables-legacy", () => {
  it("an apply waits for it and goes through; destroy too", async () => {
    const before = await ruleset();
    const s = await stackWith({ ports: [80], side: "server", persist: false });
    await holdLock(20);
    expect(await lockHeld()).toBe("held");
    const started = Date.now();
    await s.up();
    const rules = await ruleset();
    expect(rules).toContain("-A PREROUTING -p tcp -m tcp --dport 80 -m comment --comment pulumi-conntrack -j CT --notrack");
    expect(rules).toMatch(/-A INPUT -p tcp -m tcp --dport 80 -m conntrack --ctstate UNTRACKED -m comment --comment "?pulumi-conntrack[^\n]*-j ACCEPT/);
    console.log(`[figure] xtables lock: up finished ${Date.now() - started} ms after a 20 s hold began`);
    await holdLock(10);
    await s.destroy();
    expect(await ruleset()).toBe(before);
  });

  it("a lockout revert waits for it too, and puts back exactly what the apply changed", async () => {
    // SSH is accepted only through a chain of the host's own, by state: untracked SSH packets
    // meet the DROP policy, new connections can't get in, and the guard reverts by itself,
    // while another tool holds the lock from the moment the apply's rules appear.
    const before = await ruleset();
    const s = await stackWith({ ports: [22], side: "server", persist: false });
    await holdLock(40, "iptables-save -t raw | grep -q -- --notrack");
    const error = await s.up().then(() => undefined, (err: Error) => err.message);
    expect(error).toMatch(/cut new SSH connections to the host .*put back its rules and files by itself 30 s after the apply \(all \d+ steps of the revert succeeded\), and SSH answers again/);
    expect(await ruleset()).toBe(before);
    expect(await sh("cat /run/pulumi-conntrack-guard/*/revert.log")).not.toMatch(/failed|Another app is currently holding the xtables lock/);
  });
});

describe("a disarm the host refuses (issue 23, item 4)", () => {
  it("is reported as the refusal it is, not as a lockout, with what the host's revert did", async () => {
    // From the moment the guard is armed until just after it fired, the host takes no new login
    // with the lab's key: the disarm's fresh connection fails authentication, though SSH was
    // never cut, and the look at the guard afterwards gets in and reads the revert's record.
    const before = await ruleset();
    const guard = "/run/pulumi-conntrack-guard";
    await sh(inBackground(`until ls ${guard}/*/armed >/dev/null 2>&1; do sleep 0.02; done; mv /root/.ssh/authorized_keys /root/.ssh/away; until ls ${guard}/*/fired >/dev/null 2>&1; do sleep 0.2; done; sleep 1; mv /root/.ssh/away /root/.ssh/authorized_keys`));
    const s = await stackWith({ ports: [80], side: "server", persist: false });
    const error = await s.up().then(() => undefined, (err: Error) => err.message);
    expect(error).toMatch(/apply NotrackRule: the host refused the new SSH connection that was to disarm the lockout guard \(authentication failed for user root \(tried [^)]+\)\); the host put back its rules and files by itself 30 s after the apply \(all \d+ steps of the revert succeeded\), as it does when nobody disarms it/);
    expect(error).not.toContain("cut new SSH connections");
    expect(await ruleset()).toBe(before);
    expect(await sh("ls /var/lib/pulumi-conntrack 2>/dev/null | wc -l")).toBe("0");
  });
});

describe("a rollback after a slow apply (issue 23, item 6)", () => {
  it("waits for the apply still running on the host, then plans from what it left: nothing of ours stays", async () => {
    // The apply's iptables-restore waits for the xtables lock, which is let go 8 s after the apply
    // job started: its waiter gives up after commandTimeout (6 s), and the rollback must wait for
    // the job's end before it reads the host.
    const before = await ruleset();
    const newJob = "find /run/pulumi-conntrack-jobs -name script -newer /tmp/pct-mark 2>/dev/null | grep -q .";
    await sh(`touch /tmp/pct-mark && ${inBackground(`exec flock /run/xtables.lock sh -c ${quote(`until ${newJob}; do sleep 0.1; done; sleep 8`)}`)}`);
    expect(await lockHeld()).toBe("held");
    const s = await stackWith({ ports: [80], side: "server", persist: false }, { commandTimeout: 6 });
    const error = await s.up().then(() => undefined, (err: Error) => err.message);
    expect(error).toContain('"apply NotrackRule" did not finish within 6 s');
    expect(error).not.toContain("rolling back also failed");
    expect(await ruleset()).toBe(before);
    expect(await sh("ls /var/lib/pulumi-conntrack 2>/dev/null | wc -l")).toBe("0");
  });
});

describe("a big ruleset through sudo with a password", () => {
  it("20,000 rules (iptables-save over 1 MiB): preview, up and destroy work and change only our lines", async () => {
    await sh([
      "set -e",
      "id ops >/dev/null 2>&1 || useradd -M -d /tmp/ops -s /bin/sh ops; mkdir -p /tmp/ops/.ssh; cp /root/.ssh/authorized_keys /tmp/ops/.ssh/; chown -R ops /tmp/ops; chmod 700 /tmp/ops/.ssh",
      "echo 'ops:big-ruleset-pw' | chpasswd",
      "echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops; chmod 440 /etc/sudoers.d/ops",
      `{ echo '*filter'; echo ':BIG - [0:0]'; seq 1 20000 | sed 's/.*/-A BIG -s 10.99.0.0\\/16 -p tcp -m tcp --dport & -m comment --comment "a neighbour rule of the busy host, number &" -j ACCEPT/'; echo COMMIT; } | iptables-restore --noflush`,
    ].join("\n"));
    expect(Number(await sh("iptables-save | wc -c"))).toBeGreaterThan(1 << 20);
    const before = await ruleset();
    const s = await stackWith({ ports: [80], side: "server", persist: false }, { user: "ops", sudo: { password: "big-ruleset-pw" } });
    const { changes } = await s.preview();
    expect(changes).toMatchObject({ create: 2 });
    await s.up();
    const during = await ruleset();
    expect(during).toContain("-A PREROUTING -p tcp -m tcp --dport 80 -m comment --comment pulumi-conntrack -j CT --notrack");
    expect(during.split("\n").filter((l) => l.startsWith("-A BIG "))).toHaveLength(20000);
    expect((await s.preview()).changes).toEqual({ same: 2 });
    await s.destroy();
    expect(await ruleset()).toBe(before);
  });
});

