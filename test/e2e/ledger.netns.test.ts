import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { disposeStacks, pulumiCli, testStack, type TestStack } from "./harness";

// The host engine's promises on shared hosts, through the real pulumi CLI: owners of one key in
// two stacks, both orders of leaving, two `pulumi up` at once, a rename, a failed write, persist: false.
const prefix = "pcld";
let hosts: LabHost[];
const stacks: TestStack[] = [];

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const sysctl = (h: LabHost, name: string) => inNs(h, "sysctl", "-n", `net.netfilter.nf_conntrack_${name}`);
const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });
/** Our files and the ledger on the host (its /etc and /var/lib are private to its sshd: read over SSH). */
async function ours(h: LabHost): Promise<string> {
  const r = await hostExec(h, "ls /etc/sysctl.d /etc/modprobe.d /etc/udev/rules.d /var/lib 2>/dev/null | grep pulumi-conntrack | sort | tr '\\n' ' '");
  return r.stdout.trim();
}
const ledger = async (h: LabHost) => JSON.parse((await hostExec(h, "cat /var/lib/pulumi-conntrack/ledger.json")).stdout);
/** `pulumi preview --expect-no-changes` exactly as a user types it: exit 0, or the output that says why not. */
async function expectNoChanges(s: TestStack): Promise<void> {
  const { code, output } = await pulumiCli(s, ["preview", "--expect-no-changes", "--diff"]);
  expect(code, output).toBe(0);
}

/** A stack of its own name (project/stack name an owner in the ledger, as in real life). */
async function stackOn(h: LabHost, settings: object, extra: Record<string, string> = {}): Promise<TestStack> {
  const stackName = `s${stacks.length + 1}`;
  const s = await testStack("conntrack-limits", {
    hosts: { value: JSON.stringify([{ name: h.name, connection: connection(h) }]), secret: true },
    settings: { value: JSON.stringify(settings) },
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, { value: v }])),
  }, { stackName });
  stacks.push(s);
  return s;
}

beforeAll(async () => {
  hosts = await startHosts(5, prefix);
});

afterAll(() => disposeStacks(stacks, () => stopHosts(prefix)));

describe("the ownership ledger through pulumi", () => {
  it("two stacks (same resource name) share a key; the original returns after both leave, in either order", async () => {
    const h = hosts[0];
    expect(sysctl(h, "icmp_timeout")).toBe("30");
    for (const order of [[0, 1], [1, 0]]) {
      const pair = [await stackOn(h, { timeouts: { icmp: 25 } }), await stackOn(h, { timeouts: { icmp: 25 } })];
      await pair[0].up();
      await pair[1].up();
      expect(sysctl(h, "icmp_timeout")).toBe("25");
      expect(Object.keys((await ledger(h)).items["sysctl:net.netfilter.nf_conntrack_icmp_timeout"].owners)).toHaveLength(2);
      // Issue 22: owners that agree converge; neither wants to "record owners" again.
      for (const s of pair) await expectNoChanges(s);
      await pair[0].up();
      for (const s of pair) await expectNoChanges(s);
      await pair[order[0]].destroy();
      expect(sysctl(h, "icmp_timeout")).toBe("25");
      expect((await hostExec(h, "cat /etc/sysctl.d/90-pulumi-conntrack.conf")).stdout).toContain("net.netfilter.nf_conntrack_icmp_timeout = 25");
      await pair[order[1]].destroy();
      expect(sysctl(h, "icmp_timeout")).toBe("30");
      expect(await ours(h)).toBe("");
    }
  });

  it("refuses, in preview, a second owner that wants another value, naming the first", async () => {
    const h = hosts[1];
    const a = await stackOn(h, { timeouts: { icmp: 25 } });
    await a.up();
    const b = await stackOn(h, { timeouts: { icmp: 40 } });
    const err = await b.preview().then(() => undefined, (e: Error) => e);
    expect(String(err)).toMatch(/net\.netfilter\.nf_conntrack_icmp_timeout is managed by e2e-conntrack-limits\/s\d+\/ConntrackLimits\/limits-pcld-h2, which wants 25 \(this resource wants 40\)/);
    expect(sysctl(h, "icmp_timeout")).toBe("25");
    await a.destroy();
    expect(sysctl(h, "icmp_timeout")).toBe("30");
  });

  it("two resources of one program share a key: converged after one up; a different value is refused in the preview, naming both", async () => {
    const h = hosts[1];
    const icmpOwners = async () => Object.keys((await ledger(h)).items["sysctl:net.netfilter.nf_conntrack_icmp_timeout"].owners).length;
    const declared = (values: number[]) => ({ value: JSON.stringify(values.map((icmp, i) => ({ type: "ConntrackLimits", name: `shared-${i + 1}`, args: { timeouts: { icmp } } }))) });
    const s = await testStack("declared", { connection: { value: JSON.stringify(connection(h)), secret: true }, declared: declared([25, 25]) }, { stackName: "one-program" });
    stacks.push(s);
    const { changes } = await s.up();
    expect(changes).toEqual({ create: 3 });
    expect(sysctl(h, "icmp_timeout")).toBe("25");
    expect(await icmpOwners()).toBe(2);
    await expectNoChanges(s);
    console.log(`[figure] preview after the first up, two owners of one key:\n${(await pulumiCli(s, ["preview", "--diff"])).output}`);

    await s.setConfig({ declared: declared([25, 40]) });
    const err = String(await s.preview().then(() => undefined, (e: Error) => e));
    // The engine checks the two in either order: the later one is refused by this program's own
    // declarations, or by the host's ledger where the first up recorded shared-1. Either way the
    // refusal names both resources and both values.
    expect(err).toMatch(
      /e2e-declared\/one-program\/ConntrackLimits\/shared-2 wants net\.netfilter\.nf_conntrack_icmp_timeout = 40 and e2e-declared\/one-program\/ConntrackLimits\/shared-1 wants 25|resource 'shared-2': .*nf_conntrack_icmp_timeout is managed by e2e-declared\/one-program\/ConntrackLimits\/shared-1, which wants 25 \(this resource wants 40\)/,
    );

    // One owner leaves: the value stays; the last one leaves: the original is back, no file left.
    await s.setConfig({ declared: declared([25]) });
    expect((await s.up()).changes).toMatchObject({ delete: 1 });
    expect(sysctl(h, "icmp_timeout")).toBe("25");
    expect(await icmpOwners()).toBe(1);
    await expectNoChanges(s);
    await s.destroy();
    expect(sysctl(h, "icmp_timeout")).toBe("30");
    expect(await ours(h)).toBe("");
  });

  it("two `pulumi up` on two stacks at once both succeed, with both settings present", async () => {
    const h = hosts[2];
    const a = await stackOn(h, { timeouts: { icmp: 25 } });
    const b = await stackOn(h, { timeouts: { udp: 45 } });
    await Promise.all([a.up(), b.up()]);
    expect([sysctl(h, "icmp_timeout"), sysctl(h, "udp_timeout")]).toEqual(["25", "45"]);
    const items = (await ledger(h)).items;
    expect(Object.keys(items).sort()).toEqual(["sysctl:net.netfilter.nf_conntrack_icmp_timeout", "sysctl:net.netfilter.nf_conntrack_udp_timeout"]);
    const file = (await hostExec(h, "cat /etc/sysctl.d/90-pulumi-conntrack.conf")).stdout;
    expect(file).toContain("icmp_timeout = 25");
    expect(file).toContain("udp_timeout = 45");
    await Promise.all([a.destroy(), b.destroy()]);
    expect([sysctl(h, "icmp_timeout"), sysctl(h, "udp_timeout")]).toEqual(["30", "30"]);
    expect(await ours(h)).toBe("");
  });

  it("two `pulumi up` at once as a NOPASSWD sudo user with sudo { password } configured: the host lock holds, both stacks' owners are kept", async () => {
    // Issue 23, item 1: sudo didn't read the password, so the lock holder read it as its heartbeat
    // and let the lock go at once; two stacks then planned from one ledger.
    const h = hosts[3];
    const setup = [
      "set -e",
      "id deploy >/dev/null 2>&1 || useradd -M -d /tmp/deploy -s /bin/sh deploy; mkdir -p /tmp/deploy/.ssh; cp /root/.ssh/authorized_keys /tmp/deploy/.ssh/; chown -R deploy /tmp/deploy; chmod 700 /tmp/deploy/.ssh",
      "echo 'deploy:unused-by-sudo' | chpasswd",
      "echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy; chmod 440 /etc/sudoers.d/deploy",
    ].join("\n");
    expect((await hostExec(h, "sh -s", { input: setup })).stderr).toBe("");
    const asDeploy = { ...connection(h), user: "deploy", sudo: { password: "unused-by-sudo" } };
    const stackAs = async (settings: object) => {
      const s = await testStack("conntrack-limits", { hosts: { value: JSON.stringify([{ name: h.name, connection: asDeploy }]), secret: true }, settings: { value: JSON.stringify(settings) } }, { stackName: `sudo${stacks.length + 1}` });
      stacks.push(s);
      return s;
    };
    const a = await stackAs({ timeouts: { icmp: 25 } });
    const b = await stackAs({ timeouts: { udp: 45 } });
    await Promise.all([a.up(), b.up()]);
    expect([sysctl(h, "icmp_timeout"), sysctl(h, "udp_timeout")]).toEqual(["25", "45"]);
    const items = (await ledger(h)).items;
    expect(Object.fromEntries(Object.entries(items).map(([k, v]: [string, any]) => [k, [v.original, Object.keys(v.owners).length]]))).toEqual({
      "sysctl:net.netfilter.nf_conntrack_icmp_timeout": ["30", 1],
      "sysctl:net.netfilter.nf_conntrack_udp_timeout": ["30", 1],
    });
    for (const s of [a, b]) await expectNoChanges(s);
    await Promise.all([a.destroy(), b.destroy()]);
    expect([sysctl(h, "icmp_timeout"), sysctl(h, "udp_timeout")]).toEqual(["30", "30"]);
    expect(await ours(h)).toBe("");
  });

  it("a rename with an alias keeps one owner under the new name and leaves no old file", async () => {
    const h = hosts[3];
    const s = await stackOn(h, { timeouts: { tcpEstablished: 3600 } }, { namePrefix: "old" });
    await s.up();
    const before = await ours(h);
    await s.setConfig({ namePrefix: { value: "new" }, formerPrefix: { value: "old" } });
    const { changes } = await s.up();
    expect(changes).toMatchObject({ update: 1 });
    const owners = Object.values((await ledger(h)).items["sysctl:net.netfilter.nf_conntrack_tcp_timeout_established"].owners) as Array<{ label: string }>;
    expect(owners.map((o) => o.label)).toEqual([expect.stringMatching(new RegExp(`^e2e-conntrack-limits/s\\d+/ConntrackLimits/new-${h.name}$`))]);
    expect(await ours(h)).toBe(before);
    expect((await hostExec(h, "cat /etc/sysctl.d/90-pulumi-conntrack.conf")).stdout).not.toContain("old-");
    await s.destroy();
    expect(sysctl(h, "tcp_timeout_established")).toBe("432000");
    expect(await ours(h)).toBe("");
  });

  it("a failed write names the host, the step and the kernel's message, and leaves nothing half-applied", async () => {
    const h = hosts[4];
    // A read-only bind mount over one sysctl, inside the host's own mount namespace.
    const ro = "mount --bind -o ro /proc/sys/net/netfilter/nf_conntrack_udp_timeout /proc/sys/net/netfilter/nf_conntrack_udp_timeout";
    expect((await hostExec(h, ro)).code).toBe(0);
    const s = await stackOn(h, { timeouts: { tcpEstablished: 3600, udp: 20 } });
    const err = String(await s.up().then(() => undefined, (e: Error) => e));
    expect(err).toContain(`root@${h.host}:22: apply ConntrackLimits: step "set net.netfilter.nf_conntrack_udp_timeout to 20" failed`);
    expect(err).toContain("Read-only file system");
    expect(sysctl(h, "tcp_timeout_established")).toBe("432000");
    expect(await ours(h)).toBe("");
    expect((await hostExec(h, "umount /proc/sys/net/netfilter/nf_conntrack_udp_timeout")).code).toBe(0);
    await s.up();
    expect([sysctl(h, "tcp_timeout_established"), sysctl(h, "udp_timeout")]).toEqual(["3600", "20"]);
    await s.destroy();
  });

  it("a file that can't be written stops the change before any kernel value moves", async () => {
    const h = hosts[4];
    expect((await hostExec(h, "mount -t tmpfs -o ro pct-ro /etc/sysctl.d")).code).toBe(0);
    const s = await stackOn(h, { timeouts: { tcpEstablished: 1800 } });
    const err = String(await s.up().then(() => undefined, (e: Error) => e));
    expect(err).toContain(`root@${h.host}:22: apply ConntrackLimits: step "write /etc/sysctl.d/90-pulumi-conntrack.conf" failed`);
    expect(err).toContain("Read-only file system");
    expect(sysctl(h, "tcp_timeout_established")).toBe("432000");
    expect(await ours(h)).toBe("");
    expect((await hostExec(h, "umount /etc/sysctl.d")).code).toBe(0);
    await s.destroy();
  });

  it("a ledger that isn't ours to read (broken by hand) fails preview and up naming the host and the file, changing nothing", async () => {
    const h = hosts[3];
    const path = "/var/lib/pulumi-conntrack/ledger.json";
    expect((await hostExec(h, `mkdir -p /var/lib/pulumi-conntrack && printf '{"format":' > ${path}`)).code).toBe(0);
    try {
      const s = await stackOn(h, { timeouts: { udp: 22 } });
      const label = `root@${h.host}:22`;
      const previewErr = String(await s.preview().then(() => undefined, (e: Error) => e));
      expect(previewErr).toContain(`${label}: ${path} is not valid JSON`);
      const upErr = String(await s.up().then(() => undefined, (e: Error) => e));
      expect(upErr).toContain(`${label}: ${path} is not valid JSON`);
      expect(upErr).toContain("fix or remove it by hand");
      expect(sysctl(h, "udp_timeout")).toBe("30");
      expect((await hostExec(h, `cat ${path}`)).stdout).toBe('{"format":');
    } finally {
      await hostExec(h, "rm -rf /var/lib/pulumi-conntrack");
    }
  });

  it("a host whose /run can't be written is refused before any change, saying why (no world-writable fallback)", async () => {
    const h = hosts[2];
    expect((await hostExec(h, "mount -o remount,ro /run")).code).toBe(0);
    try {
      const s = await stackOn(h, { timeouts: { udp: 21 } });
      const err = String(await s.up().then(() => undefined, (e: Error) => e));
      expect(err).toContain("/run is not a writable directory on this host: pulumi-conntrack keeps its host lock and job records only there");
      expect(sysctl(h, "udp_timeout")).toBe("30");
      expect(await ours(h)).toBe("");
    } finally {
      await hostExec(h, "mount -o remount,rw /run");
    }
  });

  it("persist: false works on a host with RHEL's iptables-config, and leaves that file as it was", async () => {
    const h = hosts[4];
    const config = '# RHEL-style\nIPTABLES_MODULES_UNLOAD="yes"\n#IPTABLES_SYSCTL_LOAD_LIST=".nf_conntrack .bridge-nf"\n';
    await hostExec(h, "mkdir -p /etc/sysconfig && cat > /etc/sysconfig/iptables-config", { input: config });
    const s = await stackOn(h, { timeouts: { udp: 25 }, persist: false });
    const { outputs } = await s.up();
    expect(sysctl(h, "udp_timeout")).toBe("25");
    expect((outputs[h.name] as { files: string[] }).files).toEqual(["/var/lib/pulumi-conntrack/ledger.json"]);
    expect((await hostExec(h, "cat /etc/sysconfig/iptables-config")).stdout).toBe(config);
    expect((await s.preview()).changes).toEqual({ same: 2 });
    await s.destroy();
    expect(sysctl(h, "udp_timeout")).toBe("30");
    // With persistence the token goes in, and out again on destroy, byte for byte.
    const p = await stackOn(h, { timeouts: { udp: 25 } });
    await p.up();
    expect((await hostExec(h, "cat /etc/sysconfig/iptables-config")).stdout).toContain('IPTABLES_SYSCTL_LOAD_LIST=".nf_conntrack"');
    await p.destroy();
    expect((await hostExec(h, "cat /etc/sysconfig/iptables-config")).stdout).toBe(config);
    expect(await ours(h)).toBe("");
  });
});
