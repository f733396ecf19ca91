import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostExec, type LabHost } from "../lab/netns";
import { testStack, type TestStack } from "./harness";
import { installPlugin, startPluginLab, type PluginLab } from "./plugin";

// Two front doors, one engine (issue 27): one host set by the dynamic resource from a Node.js
// program, another by the provider plugin from Pulumi YAML, with the same project, stack,
// resource name and settings. Both hosts must end up alike: the same values, files (whose
// headers name the owners), ledger owners and originals, and the same restore on destroy.
const prefix = "pcdr";
const keys = ["net.netfilter.nf_conntrack_icmp_timeout", "net.netfilter.nf_conntrack_udp_timeout"];
let lab: PluginLab;
const stacks: TestStack[] = [];

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
const values = (h: LabHost) => inNs(h, "sysctl", "-n", ...keys).split("\n");
const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });

/** What pulumi-conntrack left on a host: its files with their contents, and the ledger with owner ids (random per resource) replaced by their labels. */
async function hostState(h: LabHost): Promise<{ files: Record<string, string>; ledger: unknown }> {
  const list = await hostExec(h, "ls -d /etc/sysctl.d/*pulumi-conntrack* /etc/modprobe.d/*pulumi-conntrack* /etc/udev/rules.d/*pulumi-conntrack* 2>/dev/null || true");
  const files: Record<string, string> = {};
  for (const path of list.stdout.trim().split("\n").filter(Boolean)) files[path] = (await hostExec(h, `cat '${path}'`)).stdout;
  const text = (await hostExec(h, "cat /var/lib/pulumi-conntrack/ledger.json 2>/dev/null || true")).stdout;
  if (text.trim() === "") return { files, ledger: null };
  const ledger = JSON.parse(text) as { format: number; items: Record<string, { original: string | null; owners: Record<string, { label: string; value: string; persist: boolean }> }> };
  const items = Object.fromEntries(Object.entries(ledger.items).map(([key, item]) => [key, { original: item.original, owners: Object.values(item.owners) }]));
  return { files, ledger: { format: ledger.format, items } };
}

beforeAll(async () => {
  lab = await startPluginLab(2, prefix);
});

afterAll(() => lab?.end(stacks));

describe("both front doors on one engine", () => {
  it("a dynamic resource and a plugin resource leave their hosts alike, and destroy restores both alike", async () => {
    const [viaDynamic, viaPlugin] = lab.hosts;
    const before = [values(viaDynamic), values(viaPlugin)];
    expect(before[1]).toEqual(before[0]);

    const dynamic = await testStack("conntrack-limits", { hosts: { value: JSON.stringify([{ name: "doors", connection: connection(viaDynamic) }]), secret: true }, settings: { value: JSON.stringify({ timeouts: { icmp: 25, udp: 45 } }) } }, { stackName: "doors" });
    stacks.push(dynamic);
    const plugin = await testStack("yaml-doors", { host: { value: viaPlugin.host }, port: { value: String(viaPlugin.port) }, hostKey: { value: viaPlugin.hostKey }, privateKey: { value: viaPlugin.privateKey, secret: true } }, { stackName: "doors" });
    stacks.push(plugin);
    await installPlugin(plugin, lab.tarball);

    const [dynamicUp, pluginUp] = [await dynamic.up(), await plugin.up()];
    expect(values(viaDynamic)).toEqual(["25", "45"]);
    expect(values(viaPlugin)).toEqual(values(viaDynamic));
    const dynamicOutputs = dynamicUp.outputs.doors as Record<string, unknown>;
    expect(pluginUp.outputs.live).toEqual(dynamicOutputs.live);
    expect(pluginUp.outputs.previous).toEqual(dynamicOutputs.previous);
    expect(pluginUp.outputs.files).toEqual(dynamicOutputs.files);

    const [dynamicHost, pluginHost] = [await hostState(viaDynamic), await hostState(viaPlugin)];
    expect(Object.keys(dynamicHost.files).length).toBeGreaterThan(0);
    expect(pluginHost).toEqual(dynamicHost);
    const owners = (dynamicHost.ledger as { items: Record<string, { owners: Array<{ label: string }> }> }).items[`sysctl:${keys[0]}`].owners;
    expect(owners.map((o) => o.label)).toEqual(["e2e-conntrack-limits/doors/ConntrackLimits/limits-doors"]);

    await dynamic.destroy();
    await plugin.destroy();
    expect(values(viaDynamic)).toEqual(before[0]);
    expect(values(viaPlugin)).toEqual(before[1]);
    expect(await hostState(viaPlugin)).toEqual({ files: {}, ledger: null });
    expect(await hostState(viaDynamic)).toEqual({ files: {}, ledger: null });
  });
});
