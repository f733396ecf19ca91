import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootVm, destroyVm, rebootVm, vmExec } from "../lab/vm";
import type { LabHost } from "../lab/netns";
import { testStack, type TestStack } from "./harness";

// Issue 11: a host reboots between `pulumi preview` and `pulumi up`. The up re-reads the host
// under its lock, so it plans from what the host booted into (the persisted values, nf_conntrack
// maybe not loaded yet), not from what the preview saw. One short case on the real kernel.
const vmName = "e2e-faults-reboot";
const udpKey = "net.netfilter.nf_conntrack_udp_timeout";
let vm: LabHost;
let stack: TestStack;

async function sh(command: string): Promise<string> {
  const r = await vmExec(vmName, command);
  if (r.code !== 0) throw new Error(`${command} → exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}
const settings = (udp: number) => ({ settings: { value: JSON.stringify({ timeouts: { udp } }) } });
const liveUdp = () => sh(`udevadm settle; modprobe nf_conntrack; udevadm settle; sysctl -n ${udpKey}`);

beforeAll(async () => {
  vm = await bootVm(vmName);
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("conntrack-limits", { hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true }, ...settings(25) });
});

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    await destroyVm(vmName);
  }
});

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
