import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabHost } from "../lab/host";
import { bootVm, destroyVm, rebootVm, vmHostJson, vmSh } from "../lab/vm";
import { testStack, type TestStack } from "./harness";
import { holdConnections, installHelloServer, startHelloServer, trackedWhileHeld } from "./port80";

// NotrackRule on a host whose firewall is firewalld (Debian's package, nftables backend), through
// the real pulumi CLI: the default zone (public) rejects what it doesn't know and allows SSH;
// port 80 is not open. The rule adds the notrack as direct rules and opens nothing: port 80 stays
// closed until the zone opens it, and then answers untracked (firewalld accepts what it opens in
// any conntrack state).
const vmName = "nft-firewalld";
let vm: LabHost;
let httpPort: number;
let stack: TestStack;

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);

/** What firewalld holds, runtime and permanent, and its saved files, byte for byte. */
const firewalldState = () =>
  sh([
    "firewall-cmd --list-all", "firewall-cmd --permanent --list-all",
    "firewall-cmd --direct --get-all-rules", "firewall-cmd --permanent --direct --get-all-rules",
    "for f in $(find /etc/firewalld -type f | sort); do echo \"$f $(sha256sum < $f)\"; done",
  ].join("; echo ---; "));
const rawRules = () => sh("iptables -t raw -S | grep -c -- '--dport 80 .*-j CT --notrack' || true");
/** After a firewalld (re)start its direct rules appear only after a few seconds. */
async function pollRawRules(want: string): Promise<string> {
  let got = "";
  for (let i = 0; i < 40 && got !== want; i++) {
    got = await rawRules();
    if (got !== want) await new Promise((r) => setTimeout(r, 500));
  }
  return got;
}

const startServer = () => sh(startHelloServer);

let original: string;

beforeAll(async () => {
  vm = await bootVm(vmName);
  httpPort = (await vmHostJson(vmName)).httpPort;
  // firewalld conflicts with netfilter-persistent (iptables.service is its alias on Debian).
  await sh([
    "systemctl disable --now netfilter-persistent >/dev/null 2>&1",
    "systemctl enable --now firewalld >/dev/null 2>&1",
    "firewall-cmd --state",
    installHelloServer,
  ].join(" && "));
  await startServer();
  original = await firewalldState();
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("notrack-rule", {
    hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true },
    notrack: { value: JSON.stringify({ ports: [80], side: "server" }) },
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

const serverSide = { ports: [80], side: "server" };
/** The zone, runtime and permanent (firewalldState's first two parts: `--list-all`). */
const zoneOf = (state: string) => state.split("---").slice(0, 2);

describe("NotrackRule on a firewalld host", () => {
  it("without the rule, port 80 is closed by the zone", async () => {
    const held = await holdConnections(httpPort, 2);
    held.close();
    expect(held.ok).toBe(0);
  });

  it("acceptUntracked: false is refused in preview while the zone doesn't open port 80, naming the zone", async () => {
    await stack.setConfig({ notrack: { value: JSON.stringify({ ...serverSide, acceptUntracked: false }) } });
    const error = await stack.preview().then(() => undefined, (err: Error) => err.message);
    await stack.setConfig({ notrack: { value: JSON.stringify(serverSide) } });
    expect(error).toMatch(/untracked ipv4 packets of port 80\/tcp would be rejected in zone public/);
    expect(await firewalldState()).toBe(original);
  });

  it("preview shows the direct rules only, and says that port 80 stays closed, changing nothing", async () => {
    const t = Date.now();
    const { stdout, changes } = await stack.preview();
    console.log(`[figure] NotrackRule firewalld preview: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    expect(stdout).toMatch(/firewall-cmd --direct --add-rule ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack\s*: "absent → present"/);
    expect(stdout).not.toContain("--add-port");
    expect(stdout).toContain("port 80/tcp isn't open to ipv4 in zone public");
    expect(await firewalldState()).toBe(original);
  });

  it("up adds the notrack, runtime and permanent, and nothing else: the zone is as found and port 80 stays closed", async () => {
    const t = Date.now();
    const { changes } = await stack.up();
    console.log(`[figure] NotrackRule firewalld up: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    expect(await sh("firewall-cmd --permanent --direct --get-all-rules")).toContain("ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack");
    expect(await rawRules()).toBe("1");
    expect(zoneOf(await firewalldState())).toEqual(zoneOf(original));
    const held = await holdConnections(httpPort, 2);
    held.close();
    expect(held.ok).toBe(0);
  });

  it("once the zone opens port 80 (by hand), it answers and nothing is tracked: firewalld accepts its untracked packets; up changes nothing", async () => {
    await sh("firewall-cmd --quiet --zone=public --add-port=80/tcp && firewall-cmd --quiet --permanent --zone=public --add-port=80/tcp");
    const held = await trackedWhileHeld(sh, httpPort, 5);
    console.log(`[figure] firewalld host with NotrackRule: ${held.ok}/5 greeted from outside, ${held.tracked} tracked`);
    expect(held).toEqual({ ok: 5, tracked: 0 });
    expect((await stack.up()).changes).toEqual({ same: 2 });
  });

  it("the rules come back after `systemctl restart firewalld` and after a reboot, and a preview is a no-op", async () => {
    await sh("systemctl restart firewalld");
    expect(await pollRawRules("1")).toBe("1");
    await rebootVm(vmName);
    expect(await pollRawRules("1")).toBe("1");
    expect((await stack.preview()).changes).toEqual({ same: 2 });
    await startServer();
    expect(await trackedWhileHeld(sh, httpPort, 3)).toEqual({ ok: 3, tracked: 0 });
  });

  it("destroy removes exactly its direct rules; the port opened by hand stays open", async () => {
    await stack.destroy();
    expect(await rawRules()).toBe("0");
    expect(await firewalldState()).toContain("ports: 80/tcp");
    await sh("firewall-cmd --quiet --zone=public --remove-port=80/tcp && firewall-cmd --quiet --permanent --zone=public --remove-port=80/tcp");
    const afterHand = await firewalldState();
    console.log(`[figure] firewalld files after destroy:\n${afterHand.split("---").pop()}\nbefore:\n${original.split("---").pop()}`);
    expect(afterHand.split("---").slice(0, 4)).toEqual(original.split("---").slice(0, 4));
  });
});
