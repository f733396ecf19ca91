import type { EngineEvent } from "@pulumi/pulumi/automation";
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, type LabHost } from "../lab/netns";
import { pulumiCli, testStack, type TestStack } from "./harness";
import { checkSchema, installPlugin, startPluginLab, type PluginLab } from "./plugin";

// Pulumi YAML for real (issue 27): examples/yaml-limits through the real pulumi CLI, the real YAML
// language host (scripts/pulumi-yaml.sh) and the provider plugin installed from its tarball as
// the README says, against a namespaced lab host. A namespace has its own conntrack timeouts
// (max and hashsize are the machine's: not writable there).
const repo = resolve(import.meta.dirname, "..", "..");
const prefix = "pcym";
const icmpKey = "net.netfilter.nf_conntrack_icmp_timeout";
const udpKey = "net.netfilter.nf_conntrack_udp_timeout";
let lab: PluginLab;
const stacks: TestStack[] = [];

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const timeouts = (h: LabHost) => inNs(h, "sysctl", "-n", icmpKey, udpKey).split("\n");
const ours = async (h: LabHost) => (await hostExec(h, "ls /etc/sysctl.d /etc/udev/rules.d /var/lib 2>/dev/null | grep pulumi-conntrack || true")).stdout.trim();

beforeAll(async () => {
  lab = await startPluginLab(2, prefix);
});

afterAll(() => lab?.end(stacks));

describe("Pulumi YAML through the provider plugin", () => {
  it("examples/yaml-limits: preview, up, a drifted host's per-key diff and warning diagnostic, refresh, up, destroy", async () => {
    const h = lab.hosts[0];
    const before = timeouts(h);
    const s = await testStack("yaml-limits", { host: { value: h.host }, port: { value: String(h.port) }, hostKey: { value: h.hostKey }, privateKey: { value: h.privateKey, secret: true } }, { from: join(repo, "examples", "yaml-limits") });
    stacks.push(s);
    await installPlugin(s, lab.tarball);
    // The schema the installed plugin serves passes the CLI's own check (run() rejects on a non-zero exit).
    await checkSchema(s);
    const keyLine = h.privateKey.split("\n")[1];

    const preview = await s.preview();
    expect(preview.changes).toMatchObject({ create: 2 });
    expect(preview.stdout).toContain("+ conntrack:index:ConntrackLimits: (create)");
    expect(preview.stdout).toMatch(new RegExp(`${icmpKey.replace(/\./g, "\\.")}\\s*: "${before[0]} → 10"`));
    expect(preview.stdout).toContain("privateKey: [secret]");
    expect(preview.stdout).not.toContain(keyLine);

    const up = await s.up();
    expect(up.changes).toMatchObject({ create: 2 });
    expect(timeouts(h)).toEqual(["10", "20"]);
    expect(up.outputs.live).toEqual({ [icmpKey]: "10", [udpKey]: "20" });
    expect(up.outputs.previous).toEqual({ [icmpKey]: before[0], [udpKey]: before[1] });
    // The export shows secrets decrypted (the Automation API exports with --show-secrets); what
    // counts is that the key is marked secret there, and encrypted in every file the backend wrote.
    const limits = (await s.state()).resources.find((r: { type: string }) => r.type === "conntrack:index:ConntrackLimits");
    for (const side of [limits.inputs, limits.outputs]) expect(side.connection.privateKey).toHaveProperty(["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270");
    expect(s.backendFiles().join("\n")).not.toContain(keyLine);
    const converged = await pulumiCli(s, ["preview", "--expect-no-changes", "--diff"]);
    expect(converged.code, converged.output).toBe(0);

    // Someone sets the value by hand and leaves a sysctl.d file that would set it again at boot.
    const drift = await hostExec(h, `printf '${icmpKey} = 33\\n' > /etc/sysctl.d/99-local.conf && sysctl -q -w ${icmpKey}=33`);
    expect(drift.code, drift.stderr).toBe(0);
    const events: EngineEvent[] = [];
    const drifted = await s.stack.preview({ diff: true, color: "never", onEvent: (e) => events.push(e) });
    expect(drifted.stdout).toMatch(new RegExp(`~ ${icmpKey.replace(/\./g, "\\.")}\\s*: "33" => "10"`));
    expect(drifted.stdout).not.toMatch(new RegExp(`${udpKey.replace(/\./g, "\\.")}\\s*: "20" =>`));
    const message = `/etc/sysctl.d/99-local.conf line 1 sets ${icmpKey} = 33 and is applied after ours at boot`;
    const warning = events.map((e) => e.diagnosticEvent).find((d) => d?.severity === "warning" && d.message.includes(message));
    expect(warning?.urn, JSON.stringify(events.map((e) => e.diagnosticEvent).filter(Boolean))).toMatch(/::conntrack:index:ConntrackLimits::limits$/);
    // The CLI's --diff display leaves diagnostics out; its default display shows the warning under
    // the resource, as it does any provider's, and again in its Diagnostics section.
    const shown = await pulumiCli(s, ["preview"]);
    expect(shown.output).toMatch(new RegExp(`conntrack:index:ConntrackLimits \\(limits\\):\\n\\s+warning: ${message.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`));
    console.log(`[figure] drifted host, pulumi preview:\n${shown.output}`);
    console.log(`[figure] drifted host, pulumi preview --diff:\n${drifted.stdout}`);

    const refreshed = await s.refresh();
    expect(refreshed.drift.limits).toContain("live");
    await s.up();
    expect(timeouts(h)).toEqual(["10", "20"]);

    expect((await hostExec(h, "rm /etc/sysctl.d/99-local.conf")).code).toBe(0);
    await s.destroy();
    expect(timeouts(h)).toEqual(before);
    expect(await ours(h)).toBe("");
  });

  it("docs/api.md's example with the plugin found on PATH (a clone's bin/, nothing installed): NotrackRule, ConntrackLimits and getConntrackStatus by fn::invoke; converged after up; destroy restores", async () => {
    const h = lab.hosts[1];
    const rules = () => inNs(h, "iptables-save", "-t", "raw").split("\n").filter((l) => l.startsWith("-A ")).join("\n");
    const rawBefore = rules();
    const udpBefore = inNs(h, "sysctl", "-n", udpKey);
    const path = process.env.PATH;
    // The CLI finds pulumi-resource-conntrack on PATH (an "ambient" plugin): bin/ runs dist/ of this
    // clone. Nothing is installed in the stack's fresh PULUMI_HOME and downloads are off, so the up
    // going through is the proof.
    process.env.PATH = `${join(repo, "bin")}:${path}`;
    try {
      const s = await testStack("yaml-notrack", { host: { value: h.host }, port: { value: String(h.port) }, hostKey: { value: h.hostKey }, privateKey: { value: h.privateKey, secret: true } }, { stackName: "notrack" });
      stacks.push(s);
      const up = await s.up();
      expect(up.changes).toMatchObject({ create: 3 });
      expect(rules()).toMatch(/-A PREROUTING -p tcp -m tcp --dport 80 -m comment --comment "?pulumi-conntrack"? -j CT --notrack/);
      expect(rules()).toMatch(/-A PREROUTING -p tcp -m tcp --dport 443 -m comment --comment "?pulumi-conntrack"? -j CT --notrack/);
      expect(inNs(h, "sysctl", "-n", udpKey)).toBe("20");
      // getConntrackStatus read the host through the plugin's Invoke: its own table's figures.
      expect(up.outputs.max).toBe(Number(inNs(h, "sysctl", "-n", "net.netfilter.nf_conntrack_max")));
      expect(typeof up.outputs.usage).toBe("number");
      const converged = await pulumiCli(s, ["preview", "--expect-no-changes", "--diff"]);
      expect(converged.code, converged.output).toBe(0);
      await s.destroy();
      expect(rules()).toBe(rawBefore);
      expect(inNs(h, "sysctl", "-n", udpKey)).toBe(udpBefore);
      expect(await ours(h)).toBe("");
    } finally {
      process.env.PATH = path;
    }
  });
});
