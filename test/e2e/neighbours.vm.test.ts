import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabHost } from "../lab/host";
import { bootVm, destroyVm, vmSh } from "../lab/vm";
import { type Declared, declaredStackOn, disposeStacks, type TestStack } from "./harness";

// Issue 23, item 2, with the real neighbours: Debian's docker.io and fail2ban (the lab's
// bookworm+neighbours image) running on a host whose own firewall (netfilter-persistent) drops
// what it doesn't know. During and after each operation of ours (a NotrackRule's apply, a
// transaction rollback, a forced lockout revert, FirewallState's stop, and the destroys with a
// ban added in between), every rule of Docker's and fail2ban's is still in iptables-save. A
// watcher on the host saves the ruleset five times a second while each operation runs.
const vmName = "neighbours";
let vm: LabHost;
const stacks: TestStack[] = [];

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);
/** Docker's and fail2ban's rules (-A lines of iptables-save), as the tools made them. */
const neighbourRules = async () => (await sh("iptables-save")).split("\n").filter((l) => l.startsWith("-A ") && /DOCKER|docker0|br-|f2b-/.test(l));
const ban = (ip: string) => sh(`fail2ban-client set sshd banip ${ip} >/dev/null`);
const banLine = (ip: string) => `-A f2b-sshd -s ${ip}/32 -j REJECT --reject-with icmp-port-unreachable`;

/**
 * Runs `operation` while the host saves its ruleset every 0.2 s; then says in how many of the
 * saves some rule of `expected` was missing, and how many saves there were.
 */
async function watched<T>(expected: string[], operation: () => Promise<T>): Promise<{ result: T | Error; missing: number; saves: number }> {
  await sh(`rm -rf /run/nb && mkdir /run/nb && echo ${Buffer.from(`${expected.join("\n")}\n`).toString("base64")} | base64 -d > /run/nb/expected`);
  // Each save lands whole (written aside, then renamed): stopping the watcher can't leave half a one.
  await sh("mkdir /run/nb/saves && systemd-run --quiet --unit pct-nb-watch sh -c 'i=0; while :; do iptables-save > /run/nb/save && mv /run/nb/save /run/nb/saves/$i; i=$((i+1)); sleep 0.2; done'");
  const result = await operation().catch((e: Error) => e);
  await sh("systemctl stop pct-nb-watch");
  const [missing, saves] = (await sh("n=$(wc -l < /run/nb/expected); m=0; s=0; for f in /run/nb/saves/*; do s=$((s+1)); [ $(grep -cxFf /run/nb/expected $f) -ge $n ] || m=$((m+1)); done; echo $m $s")).split(" ").map(Number);
  return { result, missing, saves };
}

const stackOf = (name: string, declared: Declared[]) => declaredStackOn(vm, stacks, name, declared);
const notrack = (port: number) => ({ type: "NotrackRule", name: `port-${port}`, args: { ports: [port], side: "server" } });

beforeAll(async () => {
  vm = await bootVm(vmName, "bookworm+neighbours");
  // The host's own firewall: drops what it doesn't know; SSH accepted through a chain of its
  // own, by state (the lockout case below needs that; the others don't mind).
  await sh([
    "iptables -A INPUT -i lo -j ACCEPT",
    "iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT",
    "iptables -N SSHIN",
    "iptables -A SSHIN -p tcp --dport 22 -m state --state NEW -j ACCEPT",
    "iptables -A INPUT -j SSHIN",
    "iptables -A INPUT -p tcp --dport 80 -j ACCEPT",
    "iptables -P INPUT DROP",
    "netfilter-persistent save >/dev/null 2>&1",
    "systemctl start docker fail2ban",
    "docker network create --subnet 10.77.0.0/24 lab >/dev/null",
    "for i in $(seq 50); do fail2ban-client status sshd >/dev/null 2>&1 && break; sleep 0.5; done",
  ].join(" && "));
  await ban("203.0.113.7");
});

afterAll(() => disposeStacks(stacks.reverse(), () => destroyVm(vmName)));

describe("real Docker and fail2ban beside our rules", () => {
  let before: string[];

  it("the neighbours are there: Docker's chains, its bridges' rules and NAT, fail2ban's jail with a ban", async () => {
    before = await neighbourRules();
    expect(before).toContain("-A FORWARD -j DOCKER-USER");
    expect(before).toContain("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE");
    expect(before.some((l) => l.includes("10.77.0.0/24"))).toBe(true);
    expect(before).toContain(banLine("203.0.113.7"));
  });

  it("a NotrackRule's apply keeps every neighbour rule, during and after", async () => {
    const s = await stackOf("web", [notrack(80)]);
    const { result, missing, saves } = await watched(before, () => s.up());
    expect(result).not.toBeInstanceOf(Error);
    expect({ missing, saves: saves > 5 }).toEqual({ missing: 0, saves: true });
    expect(await neighbourRules()).toEqual(before);
    expect(await sh("iptables-save -t raw")).toContain("--dport 80 -m comment --comment pulumi-conntrack -j CT --notrack");
  });

  it("a transaction rollback (its rules file can't be written) takes out only its own lines", async () => {
    await sh("mount --bind /etc/iptables /etc/iptables && mount -o remount,bind,ro /etc/iptables");
    try {
      const s = await stackOf("alt", [notrack(8080)]);
      const { result, missing } = await watched(before, () => s.up());
      expect(String(result)).toContain("Read-only file system");
      expect(missing).toBe(0);
      expect(await neighbourRules()).toEqual(before);
      expect(await sh("iptables-save")).not.toContain("--dport 8080");
    } finally {
      await sh("umount /etc/iptables");
    }
  });

  it("a forced lockout revert puts back only what the apply changed: a ban fail2ban adds meanwhile stays", async () => {
    // The planner doesn't follow SSHIN, so it adds no accept for untracked SSH: new connections
    // meet the DROP policy and the guard reverts by itself.
    await sh(`systemd-run --quiet --unit pct-ban-later sh -c 'until iptables-save -t raw | grep -q -- "--dport 22 .*--notrack"; do sleep 0.2; done; fail2ban-client set sshd banip 198.51.100.9'`);
    const s = await stackOf("ssh", [notrack(22)]);
    const { result, missing } = await watched(before, () => s.up());
    expect(String(result)).toMatch(/cut new SSH connections to the host .*put back its rules and files by itself/);
    expect(missing).toBe(0);
    const after = await neighbourRules();
    expect(after).toContain(banLine("198.51.100.9"));
    expect(after.filter((l) => l !== banLine("198.51.100.9"))).toEqual(before);
    before = after;
    expect(await sh("iptables-save -t raw")).not.toContain("--dport 22 ");
  });

  it("the NotrackRule's destroy, with a ban added since its apply, keeps every neighbour rule", async () => {
    await ban("192.0.2.44");
    before = await neighbourRules();
    const { result, missing } = await watched(before, () => stacks.find((s) => s.stack.name === "web")!.destroy());
    expect(result).not.toBeInstanceOf(Error);
    expect(missing).toBe(0);
    expect(await neighbourRules()).toEqual(before);
    expect(await sh("iptables-save -t raw")).not.toContain("--notrack");
  });

  it("FirewallState stops netfilter-persistent: its own rules go, every neighbour rule stays, during and after", async () => {
    const s = await stackOf("firewall", [{ type: "FirewallState", name: "fw", args: { service: "netfilter-persistent", running: false, enabled: false } }]);
    const { result, missing } = await watched(before, () => s.up());
    expect(result).not.toBeInstanceOf(Error);
    expect(missing).toBe(0);
    expect(await neighbourRules()).toEqual(before);
    expect(await sh("iptables -S INPUT")).not.toContain("-j SSHIN");
  });

  it("its destroy, with a ban added while it was stopped, starts it again: its rules back, every neighbour rule there after (its own reload wipes them for a moment: the preview said so)", async () => {
    await ban("192.0.2.45");
    before = await neighbourRules();
    const s = stacks.find((x) => x.stack.name === "firewall")!;
    await s.setConfig({ declared: { value: JSON.stringify([{ type: "FirewallState", name: "fw", args: { service: "netfilter-persistent", running: true, enabled: true } }]) } });
    const { stdout } = await s.preview();
    expect(stdout).toContain("starting netfilter-persistent reloads /etc/iptables/rules.v4");
    await s.destroy();
    expect(await neighbourRules()).toEqual(before);
    expect(await sh("iptables -S INPUT")).toContain("-j SSHIN");
  });
});
