import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabHost } from "../lab/host";
import { bootVm, destroyVm, type LabImage, rebootVm, vmExec, vmHostJson, vmSh } from "../lab/vm";
import { type Declared, declaredStackOn, disposeStacks, expectNoChanges, type TestStack } from "./harness";
import { installHelloServer, startHelloServer, trackedWhileHeld } from "./port80";

// The firewalls beside netfilter-persistent and firewalld (issue 25), on Debian 12 VMs through the
// real CLI: FirewallState on a host whose firewall is nftables.service, then ufw (the lab's image
// with ufw, which Debian won't install beside netfilter-persistent); then NotrackRule and
// FirewallState on the lab's usual image switched to iptables-legacy with update-alternatives
// (Debian's default is iptables-nft). A server greets on port 80: each firewall drops it until
// FirewallState stops that firewall.
let vmName = "fw-ufw";
let vm: LabHost;
let httpPort: number;
const stacks: TestStack[] = [];

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);
const unitState = async (unit: string) => (await vmExec(vmName, `echo $(systemctl is-active ${unit}) $(systemctl is-enabled ${unit})`)).stdout.trim();
/** The files and ledger of ours a host may hold, by name: empty once everything is destroyed. */
const ours = () => sh("ls /etc/sysctl.d /etc/modprobe.d /etc/udev/rules.d /etc/modules-load.d /var/lib 2>/dev/null | grep pulumi-conntrack || true");

/** Whether a connection from outside the VM to its port 80 is greeted within 4 s (a firewall DROP or REJECT: no). */
function greeted(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port: httpPort });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 4000);
    s.on("data", (d) => d.toString().includes("hello") && done(true));
    s.on("error", () => done(false));
    s.on("close", () => done(false));
  });
}

const stackOf = (name: string, declared: Declared[]) => declaredStackOn(vm, stacks, name, declared);
const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
  const t = Date.now();
  const r = await work();
  console.log(`[figure] ${what}: ${Date.now() - t} ms`);
  return r;
};
const stopAuto = { type: "FirewallState", name: "fw", args: { service: "auto", running: false, enabled: false } };

async function boot(name: string, image: LabImage): Promise<void> {
  vmName = name;
  vm = await timed(`${image} VM boot`, () => bootVm(name, image));
  httpPort = (await vmHostJson(name)).httpPort;
  await sh(`${installHelloServer} && ${startHelloServer}`);
}

beforeAll(() => boot("fw-ufw", "bookworm+ufw"));

afterAll(() => disposeStacks(stacks.reverse(), () => destroyVm(vmName)));

describe("FirewallState on nftables.service", () => {
  const conf = ["#!/usr/sbin/nft -f", "flush ruleset", "table inet filter {", "\tchain input {", "\t\ttype filter hook input priority filter; policy accept;", "\t\ttcp dport 80 drop", "\t}", "}", ""].join("\n");
  let before: string;

  it('"auto" finds nftables.service; up stops and disables it, its tables go and port 80 passes; a preview after it is a no-op', async () => {
    await sh(`echo ${Buffer.from(conf).toString("base64")} | base64 -d > /etc/nftables.conf && systemctl enable --now nftables`);
    before = await sh("nft list ruleset");
    expect(before).toContain("tcp dport 80 drop");
    expect(await greeted()).toBe(false);
    const s = await stackOf("nftables", [stopAuto]);
    const { stdout } = await s.preview();
    expect(stdout).toContain('service \\"auto\\" is nftables on this host: it is the firewall running here');
    await timed("FirewallState up (stop nftables.service)", () => s.up());
    expect(await unitState("nftables")).toBe("inactive disabled");
    expect(await sh("nft list ruleset")).not.toContain("table inet filter");
    expect(await greeted()).toBe(true);
    await expectNoChanges(s, "up");
  });

  it("destroy starts and enables it again with its tables, and leaves no file", async () => {
    await timed("FirewallState destroy (restore nftables.service)", () => stacks.find((s) => s.stack.name === "nftables")!.destroy());
    expect(await unitState("nftables")).toBe("active enabled");
    expect(await sh("nft list ruleset")).toBe(before);
    expect(await greeted()).toBe(false);
    expect(await ours()).toBe("");
    await sh("systemctl disable --now nftables && nft flush ruleset");
  });
});

describe("FirewallState on ufw", () => {
  let before: string;
  const ufwRules = () => sh("iptables-save | grep -v '^#' | sed 's/ \\[[0-9]*:[0-9]*\\]$//'");

  it('"auto" finds ufw; up stops and disables it, its rules go and port 80 passes; so after a reboot (no ufw chain left), the previews no-ops', async () => {
    await sh("ufw allow 22/tcp >/dev/null && ufw deny 80/tcp >/dev/null && ufw --force enable >/dev/null && systemctl enable ufw");
    before = await ufwRules();
    expect(before).toContain("ufw-user-input");
    expect(await greeted()).toBe(false);
    const s = await stackOf("ufw", [stopAuto]);
    const { stdout } = await s.preview();
    expect(stdout).toContain('service \\"auto\\" is ufw on this host: it is the firewall running here');
    await timed("FirewallState up (stop ufw)", () => s.up());
    expect(await unitState("ufw")).toBe("inactive disabled");
    // ufw's own stop empties its chains and keeps the primary ones, and the jumps to them, until
    // the next boot (ufw-init-functions' delete_chains).
    expect(await ufwRules()).not.toMatch(/^-A ufw/m);
    expect(await ufwRules()).toMatch(/^:INPUT ACCEPT$/m);
    expect(await greeted()).toBe(true);
    await expectNoChanges(s, "up");
    await rebootVm(vmName);
    await expectNoChanges(s, "a reboot");
    expect(await ufwRules()).not.toContain("ufw-");
    await sh(startHelloServer);
    expect(await greeted()).toBe(true);
  });

  it("destroy starts and enables ufw again with its chains, and leaves no file", async () => {
    await timed("FirewallState destroy (restore ufw)", () => stacks.find((s) => s.stack.name === "ufw")!.destroy());
    expect(await unitState("ufw")).toBe("active enabled");
    expect(await ufwRules()).toBe(before);
    expect(await greeted()).toBe(false);
    expect(await ours()).toBe("");
    await sh("ufw --force disable >/dev/null && systemctl disable ufw");
  });
});

describe("NotrackRule and FirewallState on iptables-legacy", () => {
  beforeAll(async () => {
    // Every stack so far is destroyed (or left for the teardown to sweep): the ufw VM goes.
    await disposeStacks(stacks.splice(0).reverse(), () => destroyVm(vmName));
    await boot("fw-legacy", "bookworm");
  });

  const rulesV4 = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "-A INPUT -p tcp -m tcp --dport 9 -j DROP", "COMMIT", ""].join("\n");
  const legacyRules = () => sh("iptables-legacy-save | grep -v '^#' | sed 's/ \\[[0-9]*:[0-9]*\\]$//'");
  let savedBefore: string;

  it("NotrackRule: its rules go to the legacy tables and rules.v4, hold through a netfilter-persistent restart and a reboot; the previews are no-ops", async () => {
    await sh(
      [
        "update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null",
        "update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null",
        "nft flush ruleset",
        `echo ${Buffer.from(rulesV4).toString("base64")} | base64 -d > /etc/iptables/rules.v4`,
        "systemctl restart netfilter-persistent",
      ].join(" && "),
    );
    expect(await sh("iptables -V")).toContain("legacy");
    savedBefore = await sh("cat /etc/iptables/rules.v4");
    expect(await legacyRules()).toContain("--dport 9 -j DROP");
    const s = await stackOf("legacy-notrack", [{ type: "NotrackRule", name: "web", args: { ports: [80], side: "server" } }]);
    await timed("NotrackRule up (iptables-legacy)", () => s.up());
    const notrack = "--dport 80 -m comment --comment pulumi-conntrack -j CT --notrack";
    expect(await sh("iptables-legacy-save -t raw")).toContain(notrack);
    expect(await sh("iptables-nft-save -t raw")).not.toContain("--notrack");
    expect(await sh("cat /etc/iptables/rules.v4")).toMatch(/^-A PREROUTING -p tcp --dport 80 -m comment --comment "pulumi-conntrack" -j CT --notrack$/m);
    expect(await trackedWhileHeld(sh, httpPort, 3)).toEqual({ ok: 3, tracked: 0 });
    await expectNoChanges(s, "up");
    await sh("systemctl restart netfilter-persistent");
    await expectNoChanges(s, "a netfilter-persistent restart");
    await rebootVm(vmName);
    await expectNoChanges(s, "a reboot");
    expect(await sh("iptables-legacy-save -t raw")).toContain(notrack);
    await sh(startHelloServer);
    expect(await trackedWhileHeld(sh, httpPort, 3)).toEqual({ ok: 3, tracked: 0 });
    await timed("NotrackRule destroy (iptables-legacy)", () => s.destroy());
    expect(await sh("iptables-legacy-save -t raw")).not.toContain("--notrack");
    expect(await sh("cat /etc/iptables/rules.v4")).toBe(savedBefore);
    expect(await ours()).toBe("");
  });

  it("FirewallState stops and disables netfilter-persistent on legacy, its rules gone, so after a reboot; destroy puts them back", async () => {
    const s = await stackOf("legacy-firewall", [stopAuto]);
    await timed("FirewallState up (iptables-legacy)", () => s.up());
    expect(await unitState("netfilter-persistent")).toBe("inactive disabled");
    expect(await legacyRules()).not.toContain("--dport 9 -j DROP");
    await expectNoChanges(s, "up");
    await rebootVm(vmName);
    await expectNoChanges(s, "a reboot");
    expect(await unitState("netfilter-persistent")).toBe("inactive disabled");
    expect(await legacyRules()).not.toContain("--dport 9 -j DROP");
    await timed("FirewallState destroy (iptables-legacy)", () => s.destroy());
    expect(await unitState("netfilter-persistent")).toBe("active enabled");
    expect(await legacyRules()).toContain("--dport 9 -j DROP");
    expect(await ours()).toBe("");
  });
});
