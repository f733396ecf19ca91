import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, startHosts, stopHosts, type LabHost } from "../lab/netns";
import { disposeStacks, testStack, type TestStack } from "./harness";

// Every program under examples/ goes through `pulumi up` and `pulumi destroy` against namespaced
// lab hosts (here, or in the test file testedElsewhere names), as written (copied with its Pulumi.yaml, run by the real CLI), so none of them rots.
// A namespace shares its machine's conntrack table, so max/hashsize are left out through the
// examples' own config (local-host's timeoutsOnly, fleet's optional max/hashsize); the VM suite
// and `bash scripts/demo.sh` cover those on a real kernel.
const repo = resolve(import.meta.dirname, "..", "..");
const examples = join(repo, "examples");
const prefix = "pcex";
const run = ["fleet", "local-host", "notrack-rule"];
const typeCheckedOnly: Record<string, string> = {
  "command-and-limits": "needs the @pulumi/command provider binary, which can't be built or fetched here (tsc -p tsconfig.json type-checks it)",
};
/** Examples with a test file of their own (it needs more than a copy of the program). */
const testedElsewhere: Record<string, string> = {
  "yaml-limits": "test/e2e/yaml.netns.test.ts: Pulumi YAML needs the YAML language host and the provider plugin installed",
};
const keys = {
  est: "net.netfilter.nf_conntrack_tcp_timeout_established",
  tw: "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
  udp: "net.netfilter.nf_conntrack_udp_timeout",
};

let hosts: LabHost[];
const stacks: TestStack[] = [];
const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const timeouts = (h: LabHost) => inNs(h, "sysctl", "-n", keys.est, keys.tw, keys.udp).split("\n");
const ownFiles = async (h: LabHost) => (await hostExec(h, "ls /etc/sysctl.d /etc/udev/rules.d | grep pulumi-conntrack || true")).stdout.trim();

async function example(name: string, config: Parameters<typeof testStack>[1]): Promise<TestStack> {
  const stack = await testStack(name, config, { from: join(examples, name) });
  stacks.push(stack);
  return stack;
}

beforeAll(async () => {
  hosts = await startHosts(4, prefix);
});

afterAll(() => disposeStacks(stacks, () => stopHosts(prefix)));

describe("examples", () => {
  it("each one is run below or listed, with the reason, as type-checked only", () => {
    const all = readdirSync(examples).filter((d) => existsSync(join(examples, d, "Pulumi.yaml")));
    expect(all.sort()).toEqual([...run, ...Object.keys(typeCheckedOnly), ...Object.keys(testedElsewhere)].sort());
  });

  it("local-host: up sets the timeouts on the host, destroy puts back what it found", async () => {
    const h = hosts[0];
    const before = timeouts(h);
    const stack = await example("local-host", {
      host: { value: h.host },
      port: { value: String(h.port) },
      hostKey: { value: h.hostKey },
      privateKey: { value: h.privateKey, secret: true },
      timeoutsOnly: { value: "true" },
    });
    const t = Date.now();
    const { changes, outputs } = await stack.up();
    console.log(`[figure] examples/local-host up: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    expect(timeouts(h)).toEqual(["86400", "30", "20"]);
    expect(outputs.live).toEqual({ [keys.est]: "86400", [keys.tw]: "30", [keys.udp]: "20" });
    expect(outputs.previous).toEqual({ [keys.est]: before[0], [keys.tw]: before[1], [keys.udp]: before[2] });
    expect(await ownFiles(h)).toMatch(/^90-pulumi-conntrack\.conf$/m);
    await stack.destroy();
    expect(timeouts(h)).toEqual(before);
    expect(await ownFiles(h)).toBe("");
  });

  it("notrack-rule: up adds the raw rules and the UNTRACKED accept, destroy takes exactly them out", async () => {
    const h = hosts[3];
    inNs(h, "sh", "-c", "iptables -A INPUT -p tcp --dport 22 -j ACCEPT && iptables -A INPUT -p tcp -m state --state NEW --dport 80 -j ACCEPT && iptables -P INPUT DROP");
    const before = inNs(h, "iptables", "-S");
    const stack = await example("notrack-rule", {
      host: { value: h.host },
      port: { value: String(h.port) },
      hostKey: { value: h.hostKey },
      privateKey: { value: h.privateKey, secret: true },
      ports: { value: JSON.stringify([80]) },
      persist: { value: "false" },
    });
    const { changes, outputs } = await stack.up();
    expect(changes).toMatchObject({ create: 2 });
    expect(Object.keys(outputs.rules as object).sort()).toEqual([
      "iptables -t filter -A INPUT -p tcp --dport 80 -m conntrack --ctstate UNTRACKED -j ACCEPT",
      "iptables -t raw -A OUTPUT -p tcp --sport 80 -j CT --notrack",
      "iptables -t raw -A PREROUTING -p tcp --dport 80 -j CT --notrack",
    ]);
    expect(inNs(h, "iptables", "-t", "raw", "-S")).toContain("--dport 80 -m comment --comment pulumi-conntrack -j CT --notrack");
    await stack.destroy();
    expect(inNs(h, "iptables", "-S")).toBe(before);
    expect(inNs(h, "iptables", "-t", "raw", "-S")).not.toContain("pulumi-conntrack");
  });

  it("fleet: a Fleet over the hosts in stack config, in gated waves, all set by up and restored by destroy", async () => {
    const fleet = hosts.slice(1, 3);
    const before = fleet.map(timeouts);
    const stack = await example("fleet", {
      hosts: { value: JSON.stringify(fleet.map((h, i) => ({ name: `web-${i + 1}`, host: h.host, port: h.port, hostKey: h.hostKey }))) },
      privateKey: { value: fleet[0].privateKey, secret: true },
      soakSeconds: { value: "1" },
    });
    const t = Date.now();
    const { changes, outputs } = await stack.up();
    console.log(`[figure] examples/fleet up on ${fleet.length} hosts: ${Date.now() - t} ms`);
    // Per host a ConntrackLimits; per wave (1, then 25% = 1) a baseline and a gate; the component; the stack.
    expect(changes).toMatchObject({ create: fleet.length + 4 + 2 });
    for (const h of fleet) expect(timeouts(h)).toEqual(["3600", "30", "20"]);
    expect(outputs.waves).toEqual([["web-1"], ["web-2"]]);
    expect((outputs.live as Record<string, { live: Record<string, string> }>)["web-2"].live[keys.est]).toBe("3600");
    expect((outputs.status as string).split("\n")[0]).toMatch(/^host\s+wave\s+usage\s+count\/max\s+drop/);
    expect(outputs.status as string).toMatch(/^web-2\s+2\s+\d+%\s+\d+\/\d+\s+0\s/m);
    await stack.destroy();
    expect(fleet.map(timeouts)).toEqual(before);
    for (const h of fleet) expect(await ownFiles(h)).toBe("");
  });
});
