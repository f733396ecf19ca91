import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootVm, destroyVm, rebootVm, vmSh } from "../lab/vm";
import type { LabHost } from "../lab/netns";
import { disposeStacks, pulumiCli, testStack, type TestStack } from "./harness";

// Issue 11: a host reboots between `pulumi preview` and `pulumi up`. The up re-reads the host
// under its lock, so it plans from what the host booted into (the persisted values, nf_conntrack
// maybe not loaded yet), not from what the preview saw. One short case on the real kernel.
const vmName = "e2e-faults-reboot";
const udpKey = "net.netfilter.nf_conntrack_udp_timeout";
let vm: LabHost;
let stack: TestStack;
const others: TestStack[] = [];

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);
const icmpKey = "net.netfilter.nf_conntrack_icmp_timeout";
const settings = (udp: number) => ({ settings: { value: JSON.stringify({ timeouts: { udp } }) } });
const liveUdp = () => sh(`udevadm settle; modprobe nf_conntrack; udevadm settle; sysctl -n ${udpKey}`);

beforeAll(async () => {
  vm = await bootVm(vmName);
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("conntrack-limits", { hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true }, ...settings(25) });
});

afterAll(() => disposeStacks([stack, ...others], () => destroyVm(vmName)));

describe("a host that reboots between preview and up", () => {
  it("up plans from what the host booted into, converges, and a preview after it is a no-op", async () => {
    const original = await liveUdp();
    await stack.up();
    expect(await liveUdp()).toBe("25");
    await stack.setConfig(settings(35));
    const preview = await stack.preview();
    expect(preview.stdout).toMatch(/nf_conntrack_udp_timeout\s*:\s*"25 → 35"/);
    await rebootVm(vmName);
    // Booted into what was persisted; the lock and any job records under /run are gone with the boot.
    expect(await liveUdp()).toBe("25");
    expect(await sh("ls /run/pulumi-conntrack.lock /run/pulumi-conntrack-jobs 2>/dev/null | wc -l")).toBe("0");
    const { changes } = await stack.up();
    expect(changes).toMatchObject({ update: 1 });
    expect(await liveUdp()).toBe("35");
    expect(await sh("cat /etc/sysctl.d/90-pulumi-conntrack.conf")).toContain(`${udpKey} = 35`);
    expect((await stack.preview()).changes).toEqual({ same: 2 });
    await stack.destroy();
    expect(await liveUdp()).toBe(original);
  });
});

describe("owners of one key that agree, across a reboot (issue 22)", () => {
  it("two resources of one program and a second stack: every preview after up and after a reboot is a no-op; the original returns with the last owner", async () => {
    const original = await sh(`udevadm settle; modprobe nf_conntrack; udevadm settle; sysctl -n ${icmpKey}`);
    const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
    const declared = (names: string[]) => ({ value: JSON.stringify(names.map((name) => ({ type: "ConntrackLimits", name, args: { timeouts: { icmp: 25 } } }))) });
    const program = await testStack("declared", { connection: { value: JSON.stringify(connection), secret: true }, declared: declared(["icmp-a", "icmp-b"]) }, { stackName: "one-program" });
    const second = await testStack("declared", { connection: { value: JSON.stringify(connection), secret: true }, declared: declared(["icmp-a"]) }, { stackName: "second-stack" });
    others.push(program, second);
    const noChanges = async (stacks = [program, second]) => {
      for (const s of stacks) {
        const { code, output } = await pulumiCli(s, ["preview", "--expect-no-changes", "--diff"]);
        expect(code, `${s.stack.name}: ${output}`).toBe(0);
      }
    };
    await program.up();
    await second.up();
    const icmp = () => sh(`udevadm settle; modprobe nf_conntrack; udevadm settle; sysctl -n ${icmpKey}`);
    expect(await icmp()).toBe("25");
    const ledger = JSON.parse(await sh("cat /var/lib/pulumi-conntrack/ledger.json"));
    expect(Object.keys(ledger.items[`sysctl:${icmpKey}`].owners)).toHaveLength(3);
    await noChanges();
    await rebootVm(vmName);
    await noChanges();
    expect(await icmp()).toBe("25");

    // Owners leave one by one: the value stays until the last one goes, then the original is back.
    await program.setConfig({ declared: declared(["icmp-b"]) });
    expect((await program.up()).changes).toMatchObject({ delete: 1 });
    await second.destroy();
    expect(await icmp()).toBe("25");
    await noChanges([program]);
    await program.destroy();
    expect(await icmp()).toBe(original);
    expect(await sh("ls /etc/sysctl.d /etc/modprobe.d /etc/udev/rules.d /var/lib | grep -c pulumi-conntrack || true")).toBe("0");
  });
});
