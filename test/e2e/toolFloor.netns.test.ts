import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { conntrackStatusReader } from "../../provider/facts/conntrackStatus";
import { readerList, readers, type FactName, type HostFacts } from "../../provider/facts/host";
import { batchScript, parseBatch } from "../../provider/facts/reader";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { disposeStacks, testStack, type TestStack } from "./harness";

// The host tool floor (issue 25, docs/api.md "What a managed host needs"). One host's SSH
// sessions find busybox's applets first on PATH (sh is busybox's ash; timeout, base64, sleep,
// sysctl, grep, sed, awk... are busybox's), so a GNU-only flag in a host-side script fails here:
// every fact reader prints what it prints with the GNU tools, and a ConntrackLimits and a
// NotrackRule (the changes a namespaced host can take: the other two need systemd and a kernel
// that loads modules) go through up, an update, a no-op preview and destroy. Another host's
// flock lacks -w and -o, as busybox's own does: the preview refuses it, naming the tool, and
// nothing reaches the host.
const bbPrefix = "pcfb";
const lackPrefix = "pcfl";
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
let bb: LabHost;
let lacking: LabHost;
const stacks: TestStack[] = [];

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const sysctl = (h: LabHost, name: string) => inNs(h, "sysctl", "-n", `net.netfilter.nf_conntrack_${name}`);
const rules = (h: LabHost) => inNs(h, "iptables-save").split("\n").filter((l) => l.startsWith("-A ")).join("\n");
const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });
async function run(h: LabHost, command: string, input?: string): Promise<string> {
  const r = await hostExec(h, command, { input });
  if (r.code !== 0) throw new Error(`${h.name}: ${command} failed (exit ${r.code}): ${r.stderr}`);
  return r.stdout;
}
/** What pulumi-conntrack keeps on a host: its files and the ledger; with `run`, the host lock and job records too (a change leaves those in /run). */
const leftOn = async (h: LabHost, where: "persisted" | "run" = "persisted") =>
  (await run(h, `ls -d /etc/sysctl.d/* /etc/modprobe.d/* /etc/udev/rules.d/* /var/lib/pulumi-conntrack ${where === "run" ? "/run/pulumi-conntrack*" : ""} 2>/dev/null | grep pulumi-conntrack; true`)).trim();

beforeAll(async () => {
  execFileSync("busybox", ["true"]); // Debian's busybox package (scripts/setup.sh installs it)
  [[bb], [lacking]] = await Promise.all([
    startHosts(1, bbPrefix, { sessionPath: `/root/busybox:${systemPath}` }),
    startHosts(1, lackPrefix, { sessionPath: `/root/fake:${systemPath}` }),
  ]);
  // The PATH dirs live in each host's own /root (it sees its own /tmp, /root, /run and /etc).
  await run(bb, "mkdir /root/busybox && for a in $(busybox --list); do ln -s \"$(command -v busybox)\" /root/busybox/$a; done");
  const fakeFlock = [
    "#!/bin/sh",
    "# flock without -w and -o, as busybox's flock is",
    "for a in \"$@\"; do case $a in -w|-o|--timeout|--close) echo \"flock: invalid option -- '${a#-}'\" >&2; exit 1;; esac; done",
    "exec /usr/bin/flock \"$@\"",
  ].join("\n");
  await run(lacking, "mkdir /root/fake && cat > /root/fake/flock && chmod 755 /root/fake/flock", `${fakeFlock}\n`);
});

afterAll(() => disposeStacks(stacks, () => Promise.all([stopHosts(bbPrefix), stopHosts(lackPrefix)]).then(() => undefined)));

describe("the host tool floor", () => {
  it("busybox's applets come first in the SSH session of the busybox host", async () => {
    // sh, and the tools our scripts run: a PATH that didn't take would test GNU's tools again.
    const said = await run(bb, "sh -c 'readlink /proc/$$/exe'; for t in timeout base64 sleep sysctl grep sed awk tr tail head cat mv cp chmod; do command -v $t; done");
    const [shell, ...tools] = said.trim().split("\n");
    expect(shell).toMatch(/busybox$/);
    expect(tools).toEqual(["timeout", "base64", "sleep", "sysctl", "grep", "sed", "awk", "tr", "tail", "head", "cat", "mv", "cp", "chmod"].map((t) => `/root/busybox/${t}`));
  });

  it("every fact reader reads the same facts under busybox's tools as under the GNU ones, and the floor is met", async () => {
    const all = [...readerList(Object.keys(readers) as FactName[]), conntrackStatusReader];
    const script = batchScript(all);
    const read = async (command: string) => {
      const r = await hostExec(bb, command, { input: script });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const facts = parseBatch(r.stdout, all) as HostFacts & { "conntrack-status": Record<string, unknown> };
      // Counters that move between two reads (our own SSH connections are tracked here).
      delete facts.conntrackSysctl.values["net.netfilter.nf_conntrack_count"];
      for (const k of ["count", "drop", "earlyDrop", "insertFailed", "tableFull"]) delete facts["conntrack-status"][k];
      return facts;
    };
    const withBusybox = await read("sh -s");
    const withGnu = await read(`PATH=${systemPath}; export PATH; exec sh -s`);
    expect(withGnu.system.sysctlPath).toBe("/usr/sbin/sysctl");
    expect(withBusybox.system.sysctlPath).toBe("/root/busybox/sysctl");
    expect(withBusybox).toEqual({ ...withGnu, system: { ...withGnu.system, sysctlPath: "/root/busybox/sysctl" } });
    // The same host facts a namespace shows with any tools: max is the machine's, read-only here.
    expect(withBusybox.conntrackSysctl.readOnly).toEqual(["net.netfilter.nf_conntrack_max"]);
    expect(withBusybox.tools).toEqual({ missing: [], lacking: [] });
  });

  it("ConntrackLimits and NotrackRule: up (the lockout guard armed and disarmed), an update, a no-op preview and destroy, with busybox's tools", async () => {
    const before = { udp: sysctl(bb, "udp_timeout"), icmp: sysctl(bb, "icmp_timeout") };
    const declared = (udp: number) => ({
      value: JSON.stringify([
        { type: "ConntrackLimits", name: "limits", args: { timeouts: { udp, icmp: 27 } } },
        { type: "NotrackRule", name: "notrack", args: { ports: [8080], side: "server", persist: false } },
      ]),
    });
    const s = await testStack("declared", { connection: { value: JSON.stringify(connection(bb)), secret: true }, declared: declared(41) });
    stacks.push(s);
    // The record of a change cut from its connection, as hostJobs.ts leaves it: the next change
    // reports it (grep -v, tail -n, tr under busybox) and removes it.
    await run(bb, "mkdir -p /run/pulumi-conntrack-jobs/0123456789ab && cd /run/pulumi-conntrack-jobs/0123456789ab && echo 'apply KernelModuleSet' > what && echo 2 > exit && printf '@@pulumi-conntrack-step x\\nrmmod: ERROR: Module xt_foo is in use\\n' > err");
    await s.up();
    const warnings = ((await s.state()).resources as Array<{ outputs?: { warnings?: string[] } }>).flatMap((r) => r.outputs?.warnings ?? []);
    expect(warnings).toContain(`an earlier "apply KernelModuleSet" lost its SSH connection; it went on on the host by itself and failed (exit 2): rmmod: ERROR: Module xt_foo is in use; this run read the host as that left it`);
    expect(await run(bb, "ls /run/pulumi-conntrack-jobs")).toBe("");
    expect([sysctl(bb, "udp_timeout"), sysctl(bb, "icmp_timeout")]).toEqual(["41", "27"]);
    expect(rules(bb)).toMatch(/^-A PREROUTING -p tcp -m tcp --dport 8080 -m comment --comment "?pulumi-conntrack"? -j CT --notrack$/m);
    // The rules went in under the lockout guard (its timer detached with setsid, then disarmed).
    await run(bb, "test -d /run/pulumi-conntrack-guard");
    // A file rewritten keeps the mode it has (cp -p; busybox's chmod has no --reference).
    const conf = "/etc/sysctl.d/90-pulumi-conntrack.conf";
    await run(bb, `chmod 0640 ${conf}`);
    await s.setConfig({ declared: declared(42) });
    await s.up();
    expect(sysctl(bb, "udp_timeout")).toBe("42");
    expect(await run(bb, `grep -c 'udp_timeout = 42' ${conf}; ls -l ${conf} | cut -c1-10`)).toBe("1\n-rw-r-----\n");
    expect((await s.preview()).changes).toEqual({ same: 3 });
    await s.destroy();
    expect({ udp: sysctl(bb, "udp_timeout"), icmp: sysctl(bb, "icmp_timeout") }).toEqual(before);
    expect(rules(bb)).toBe("");
    expect(await leftOn(bb)).toBe("");
  });

  it("a host whose flock lacks -w and -o is refused by the preview, naming the tool and where to get it, and nothing reaches it", async () => {
    const before = sysctl(lacking, "udp_timeout");
    const s = await testStack("declared", {
      connection: { value: JSON.stringify(connection(lacking)), secret: true },
      declared: { value: JSON.stringify([{ type: "ConntrackLimits", name: "limits", args: { timeouts: { udp: 43 } } }]) },
    });
    stacks.push(s);
    const refused = await s.preview().then(() => "the preview succeeded", (err: Error) => err.message);
    expect(refused).toContain(`${lacking.host}:22: needs flock with -w and -o (util-linux's flock; busybox's has neither flag), and the host's flock (the first on the PATH the scripts run with) lacks that`);
    expect(sysctl(lacking, "udp_timeout")).toBe(before);
    expect(rules(lacking)).toBe("");
    expect(await leftOn(lacking, "run")).toBe("");
  });
});
