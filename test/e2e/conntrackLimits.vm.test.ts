import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootVm, destroyVm, rebootVm, vmSh } from "../lab/vm";
import type { LabHost } from "../lab/netns";
import { testStack, type TestStack } from "./harness";

// The whole life of ConntrackLimits on a real Debian 12 kernel, through the real pulumi CLI:
// preview, up, the three events that reset conntrack settings, drift, a no-op up, destroy.
const vmName = "e2e-limits";
// hashsize 16385 is not a whole number of pages of buckets: the kernel makes it 16896.
const desired = { max: 131072, hashsize: 16385, timeouts: { tcpEstablished: 7200, udp: 20 } };
const keys = {
  max: "net.netfilter.nf_conntrack_max",
  est: "net.netfilter.nf_conntrack_tcp_timeout_established",
  udp: "net.netfilter.nf_conntrack_udp_timeout",
};
const wanted = { max: "131072", hashsize: "16896", est: "7200", udp: "20" };

let vm: LabHost;
let stack: TestStack;

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);

/** The live values, after udev has finished anything a module load triggered. */
async function live(): Promise<Record<string, string>> {
  const out = await sh(`udevadm settle; modprobe nf_conntrack; udevadm settle; sysctl -n ${keys.max} ${keys.est} ${keys.udp}; cat /sys/module/nf_conntrack/parameters/hashsize`);
  const [max, est, udp, hashsize] = out.split("\n");
  return { max, est, udp, hashsize };
}

const fileListing = () => sh("ls -la --time-style=+ /etc/sysctl.d /etc/modprobe.d /etc/udev/rules.d /var/lib | sha256sum; cat /etc/sysctl.d/* /etc/modprobe.d/* 2>/dev/null | sha256sum");

let original: Record<string, string>;
let originalFiles: string;

beforeAll(async () => {
  vm = await bootVm(vmName);
  original = await live();
  originalFiles = await fileListing();
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("conntrack-limits", {
    hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true },
    settings: { value: JSON.stringify(desired) },
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

describe("ConntrackLimits on a real kernel", () => {
  it("starts from the kernel's defaults", () => {
    expect(original).toEqual({ max: "4096", hashsize: "4096", est: "432000", udp: "30" });
  });

  it("preview lists live → desired per key and the files to write, and changes nothing", async () => {
    // A tuning file that systemd-sysctl applies after ours would undo max at every boot.
    await sh("printf 'net.netfilter.nf_conntrack_max = 65536\\n' > /etc/sysctl.d/95-tuning.conf");
    const t = Date.now();
    const { stdout, changes } = await stack.preview();
    await sh("rm /etc/sysctl.d/95-tuning.conf");
    console.log(`[figure] VM preview: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    expect(stdout).toMatch(/net\.netfilter\.nf_conntrack_max\s*: "4096 → 131072"/);
    expect(stdout).toMatch(/nf_conntrack\.hashsize\s*: "4096 → 16896"/);
    expect(stdout).toContain("hashsize 16385 becomes 16896: the kernel rounds it up to whole 4096-byte pages of buckets");
    expect(stdout).toMatch(/net\.netfilter\.nf_conntrack_tcp_timeout_established\s*: "432000 → 7200"/);
    expect(stdout).toMatch(/\/etc\/sysctl\.d\/90-pulumi-conntrack\.conf\s*: "write"/);
    expect(stdout).toMatch(/\/etc\/modprobe\.d\/pulumi-conntrack\.conf\s*: "write"/);
    expect(stdout).toMatch(/\/var\/lib\/pulumi-conntrack\/ledger\.json\s*: "record owners and original values"/);
    expect(stdout).toContain("/etc/sysctl.d/95-tuning.conf line 1 sets net.netfilter.nf_conntrack_max = 65536 and is applied after ours at boot");
    expect(stdout).not.toContain(vm.privateKey.split("\n")[1]);
    expect(await live()).toEqual(original);
    expect(await fileListing()).toBe(originalFiles);
  });

  it("up applies the values and persists them", async () => {
    const t = Date.now();
    const { changes, outputs } = await stack.up();
    console.log(`[figure] VM up: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    expect(await live()).toEqual(wanted);
    const out = outputs.vm as { live: Record<string, string>; previous: Record<string, string>; files: string[]; memoryEstimate: { bytes: number } };
    expect(out.live).toMatchObject({ [keys.max]: "131072", "nf_conntrack.hashsize": "16896" });
    expect(out.previous).toMatchObject({ [keys.max]: "4096", "nf_conntrack.hashsize": "4096", [keys.est]: "432000" });
    expect(out.files).toEqual(["/etc/modprobe.d/pulumi-conntrack.conf", "/etc/sysctl.d/90-pulumi-conntrack.conf", "/etc/udev/rules.d/90-pulumi-conntrack.rules", "/var/lib/pulumi-conntrack/ledger.json"]);
    expect(out.memoryEstimate.bytes).toBeGreaterThan(131072 * 200);
  });

  it("keeps no secret in plain state and a small provider stub", async () => {
    const files = stack.backendFiles();
    expect(files.length).toBeGreaterThan(0);
    for (const text of files) expect(text).not.toContain(vm.privateKey.split("\n")[1]);
    const res = (await stack.state()).resources.find((r: { type: string }) => r.type.includes("ConntrackLimits"));
    const stub = res.inputs.__provider as string;
    console.log(`[figure] serialized provider stub: ${stub.length} bytes (stored in inputs and outputs); whole resource in state: ${JSON.stringify(res).length} bytes`);
    expect(stub).toContain('require("pulumi-conntrack/provider")');
    expect(stub.length).toBeLessThan(600);
  });

  it("holds through a netfilter-persistent restart", async () => {
    // Rules that use conntrack, saved so they come back at boot and load nf_conntrack themselves.
    await sh("iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT && netfilter-persistent save");
    await sh("systemctl restart netfilter-persistent");
    expect(await live()).toEqual(wanted);
  });

  it("holds through unloading every module that holds nf_conntrack and loading it again", async () => {
    await sh("iptables -F; for m in $(ls /sys/module/nf_conntrack/holders); do modprobe -r $m; done; modprobe -r nf_conntrack; test ! -d /sys/module/nf_conntrack");
    await sh("modprobe nf_conntrack");
    expect(await live()).toEqual(wanted);
  });

  it("holds through a reboot", async () => {
    await rebootVm(vmName);
    expect(await sh("iptables -S INPUT")).toContain("ESTABLISHED");
    expect(await live()).toEqual(wanted);
  });

  it("a second up changes nothing", async () => {
    const { changes } = await stack.up();
    expect(changes).toEqual({ same: 2 });
  });

  it("after a reboot where nothing loads nf_conntrack, a preview is a no-op and the values apply at the next load", async () => {
    await sh("iptables -F && netfilter-persistent save");
    await rebootVm(vmName);
    expect(await sh("test -d /sys/module/nf_conntrack && echo loaded || echo not-loaded")).toBe("not-loaded");
    const { changes, stdout } = await stack.preview();
    expect(changes).toEqual({ same: 2 });
    expect(await sh("test -d /sys/module/nf_conntrack && echo loaded || echo not-loaded")).toBe("not-loaded");
    expect(stdout).not.toContain("modprobe");
    expect(await live()).toEqual(wanted);
  });

  it("refresh shows a hand-made change and the next up puts it right", async () => {
    expect((await stack.refresh()).drift).toEqual({});
    await sh(`sysctl -w ${keys.max}=5000`);
    const { drift } = await stack.refresh();
    expect(drift).toEqual({ "limits-vm": ["live"] });
    const res = (await stack.state()).resources.find((r: { type: string }) => r.type.includes("ConntrackLimits"));
    expect(res.outputs.live[keys.max]).toBe("5000");
    const { changes } = await stack.up();
    expect(changes).toMatchObject({ update: 1 });
    expect(await live()).toEqual(wanted);
  });

  it("a replacement (same host under another name) never undoes the new value", async () => {
    const connection = { host: "localhost", port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
    await stack.setConfig({ hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true } });
    const { changes } = await stack.up();
    expect(changes).toMatchObject({ replace: 1 });
    expect(await live()).toEqual(wanted);
    expect(await sh("ls /etc/sysctl.d | grep -c pulumi-conntrack")).toBe("1");
  });

  it("destroy restores the values and files it found", async () => {
    await stack.destroy();
    expect(await live()).toEqual(original);
    expect(await fileListing()).toBe(originalFiles);
  });
});
