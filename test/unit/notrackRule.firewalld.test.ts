import { describe, expect, it } from "vitest";
import { notrackRuleSettingsSchema } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../../provider/facts/host";
import { firewalldReader } from "../../provider/facts/firewalld";
import { words } from "../../provider/facts/iptablesRules";
import { ledgerPath } from "../../provider/engine/ledger";
import { planHost } from "../../provider/engine/plan";
import { claimsOf } from "../../provider/engine/transaction";
import { driverOf } from "../../provider/engine/items";
import { notrackRuleKind, ruleDisplay } from "../../provider/notrackRule/provider";
import { backendOf, wantNotrackRule } from "../../provider/notrackRule/plan";
import { facts } from "./helpers";

/** The lab VM's facts with firewalld running and this firewalld section (as the reader prints it). */
function fwHost(section: string[]): HostFacts {
  const base = facts("debian12-vm-loaded");
  return { ...base, iptables: { ...base.iptables, firewalld: true }, firewalld: firewalldReader.parse(section) };
}

/** `firewall-cmd --info-zone` of a zone, as the reader prefixes it (firewalld 1.3's layout). */
const zoneInfo = (zone: string, fields: { target?: string; services?: string; ports?: string; forwardPorts?: string[]; richRules?: string[] }) => [
  `zone-info ${zone} ${zone} (active)`,
  `zone-info ${zone}   target: ${fields.target ?? "default"}`,
  `zone-info ${zone}   icmp-block-inversion: no`,
  `zone-info ${zone}   interfaces: `,
  `zone-info ${zone}   services: ${fields.services ?? ""}`,
  `zone-info ${zone}   ports: ${fields.ports ?? ""}`,
  `zone-info ${zone}   forward-ports: `,
  ...(fields.forwardPorts ?? []).map((f) => `zone-info ${zone} \t${f}`),
  `zone-info ${zone}   rich rules: `,
  ...(fields.richRules ?? []).map((r) => `zone-info ${zone} \t${r}`),
];
const services = ["service-ports dhcpv6-client 546/udp", "service-ports http 80/tcp", "service-ports ssh 22/tcp"];
// firewalld 1.3.3 on the lab VM: default zone public, opening only its services ssh and dhcpv6-client.
const fresh = ["zone public", "runtime-ports ", "permanent-ports ", ...zoneInfo("public", { services: "dhcpv6-client ssh" }), ...services];
/** The lab VM's public zone with more opened in it. */
const withPublic = (fields: Parameters<typeof zoneInfo>[1], ports = "") => fwHost(["zone public", `runtime-ports ${ports}`, `permanent-ports ${ports}`, ...zoneInfo("public", { services: "dhcpv6-client ssh", ports, ...fields }), ...services]);

const want = (s: Record<string, unknown>, f: HostFacts, label?: string) => wantNotrackRule(notrackRuleSettingsSchema.parse(s), f, label ? { label } : undefined);
const steps = (f: HostFacts, changes: Array<{ item: string; to: string | null }>) => {
  const byName = changes.map((c) => ({ name: c.item.slice("firewalld:".length), to: c.to }));
  return driverOf("firewalld:x").driver.set(byName, f).map((s) => s.shell);
};
const directRules = [
  "firewall-cmd --direct --add-rule ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack",
  "firewall-cmd --direct --add-rule ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack",
];

describe("firewalld facts", () => {
  it("reads what each zone opens, rich rules and forward ports on lines of their own or inline", () => {
    const fw = firewalldReader.parse([
      ...fresh.slice(0, 3),
      ...zoneInfo("public", { services: "ssh", ports: "8080/tcp 8000-8100/udp", forwardPorts: ["port=443:proto=tcp:toport=8443:toaddr="], richRules: ['rule family="ipv4" source address="10.0.0.0/8" port port="80" protocol="tcp" accept'] }),
      "zone-info internal   target: ACCEPT",
      "zone-info internal   forward-ports: port=25:proto=tcp:toport=2525:toaddr=",
      ...services,
    ]);
    expect(fw.zones.public).toEqual({
      target: "default",
      services: ["ssh"],
      ports: ["8080/tcp", "8000-8100/udp"],
      richRules: ['rule family="ipv4" source address="10.0.0.0/8" port port="80" protocol="tcp" accept'],
      forwardPorts: ["port=443:proto=tcp:toport=8443:toaddr="],
    });
    expect(fw.zones.internal).toMatchObject({ target: "ACCEPT", forwardPorts: ["port=25:proto=tcp:toport=2525:toaddr="] });
    expect(fw.servicePorts.ssh).toEqual(["22/tcp"]);
  });
});

describe("NotrackRule on firewalld", () => {
  it("adds only the notrack direct rules, runtime and permanent: a closed port stays closed, and the preview says so", () => {
    const host = fwHost(fresh);
    expect(backendOf(host)).toBe("firewalld");
    const w = want({ ports: [80], side: "server" }, host);
    expect(w.blockers).toEqual([]);
    expect(Object.keys(w.claims).map(ruleDisplay).sort()).toEqual(directRules);
    expect(w.warnings).toEqual([
      "firewalld: port 80/tcp isn't open to ipv4 in zone public (not in its ports, services or rich rules); its untracked packets are rejected there, as its new connections are now: open it in that zone (firewall-cmd --zone=public --add-port=80/tcp) if it should answer",
    ]);
    const plan = planHost({ owner: "o1", claims: claimsOf(w, "notrack-vm"), facts: host, backends: notrackRuleKind.backends });
    const shell = steps(host, plan.changes);
    expect(shell.some((s) => s.includes("--add-port"))).toBe(false);
    expect(shell).toContain("firewall-cmd --quiet --permanent --direct --add-rule ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack");
    expect(shell).toHaveLength(4);
  });

  it("acceptUntracked: false refuses a port the zone would reject, as on iptables hosts", () => {
    expect(want({ ports: [80], side: "server", acceptUntracked: false }, fwHost(fresh)).blockers).toEqual([
      "firewalld: untracked ipv4 packets of port 80/tcp would be rejected in zone public (not in its ports, services or rich rules): set acceptUntracked: true (the port then stays as open as it is now), or open the port in that zone",
    ]);
  });

  it("a port the zone opens (a port, a service, a rich rule, target ACCEPT) keeps answering: firewalld accepts its untracked packets", () => {
    const open = [
      withPublic({}, "80/tcp"),
      withPublic({ services: "dhcpv6-client ssh http" }),
      withPublic({ richRules: ['rule family="ipv4" port port="80" protocol="tcp" accept'] }),
      withPublic({ richRules: ['rule service name="http" log prefix="web" level="info" accept limit value="100/s"'] }),
      withPublic({ target: "ACCEPT" }),
    ];
    for (const host of open) {
      const w = want({ ports: [80], side: "server", acceptUntracked: false }, host);
      expect(w.blockers).toEqual([]);
      expect(w.warnings).toEqual([]);
      expect(Object.keys(w.claims).map(ruleDisplay).sort()).toEqual(directRules);
    }
    // SSH itself: open through the ssh service
    expect(want({ ports: [22], side: "server", acceptUntracked: false }, fwHost(fresh)).blockers).toEqual([]);
  });

  it("a range is open only when the zone opens all of it; a rich rule of the other family doesn't count", () => {
    expect(want({ ports: ["8000:8100"], side: "server" }, withPublic({}, "8000-8100/tcp")).warnings).toEqual([]);
    expect(want({ ports: ["8000:8200"], side: "server" }, withPublic({}, "8000-8100/tcp")).warnings).toContainEqual(expect.stringContaining("port 8000-8200/tcp isn't open"));
    const v6only = withPublic({ richRules: ['rule family="ipv6" port port="80" protocol="tcp" accept'] });
    expect(want({ ports: [80], side: "server", ipVersions: [4, 6] }, v6only).warnings).toEqual([expect.stringContaining("isn't open to ipv4 in zone public")]);
  });

  it("a port open only to some sources stays so; acceptUntracked: false refuses it, as iptables does a scoped accept", () => {
    const scoped = withPublic({ richRules: ['rule family="ipv4" source address="10.0.0.0/8" port port="80" protocol="tcp" accept'] });
    expect(want({ ports: [80], side: "server" }, scoped)).toMatchObject({ blockers: [], warnings: [] });
    expect(want({ ports: [80], side: "server", acceptUntracked: false }, scoped).blockers).toEqual([
      `firewalld: untracked ipv4 packets of port 80/tcp would be rejected in zone public (accepted only as its rich rule 'rule family="ipv4" source address="10.0.0.0/8" port port="80" protocol="tcp" accept' says): set acceptUntracked: true (the port then stays as open as it is now), or open the port in that zone`,
    ]);
  });

  it("judges every active zone: a port open in public but closed in internal is said to stay closed there", () => {
    const host = fwHost([...fresh.slice(0, 3), ...zoneInfo("public", { ports: "80/tcp" }), ...zoneInfo("internal", { services: "ssh" }), ...services]);
    expect(want({ ports: [80], side: "server" }, host).warnings).toEqual([expect.stringContaining("isn't open to ipv4 in zone internal")]);
  });

  it("refuses a port firewalld forwards (its DNAT, which untracked packets skip) unless force", () => {
    const forwarded = withPublic({ forwardPorts: ["port=80:proto=tcp:toport=8080:toaddr="] }, "80/tcp");
    expect(want({ ports: [80], side: "server" }, forwarded).blockers).toEqual([
      'firewalld: forward port "port=80:proto=tcp:toport=8080:toaddr=" of zone public rewrites port 80/tcp, and untracked packets skip NAT: drop that port from the forward, or set force: true',
    ]);
    const forced = want({ ports: [80], side: "server", force: true }, forwarded);
    expect(forced.blockers).toEqual([]);
    expect(forced.warnings).toContainEqual(expect.stringContaining("(going ahead: force is set)"));
    expect(want({ ports: ["70:90"], side: "server", force: false }, forwarded).blockers).toHaveLength(1);
  });

  it("a port an earlier version opened for this resource is released (closed again, as found) and the preview says so", () => {
    const label = "p/s/NotrackRule/web";
    const ledger = {
      format: 1,
      items: {
        "firewalld:port:public:80/tcp": { original: "absent", owners: { "web#1": { value: "present", persist: true, label } } },
        "firewalld:direct:ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack": { original: "absent", owners: { "web#1": { value: "present", persist: true, label } } },
        "firewalld:direct:ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack": { original: "absent", owners: { "web#1": { value: "present", persist: true, label } } },
      },
    };
    const opened = withPublic({}, "80/tcp");
    const host: HostFacts = {
      ...opened,
      firewalld: {
        ...opened.firewalld,
        runtimeDirect: ["ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack", "ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack"],
        permanentDirect: ["ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack", "ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack"],
      },
      files: { ...opened.files, [ledgerPath]: JSON.stringify(ledger) },
    };
    const w = want({ ports: [80], side: "server" }, host, label);
    expect(w.warnings).toContainEqual(expect.stringContaining("firewalld: port 80/tcp was opened in zone public for this resource by an earlier version of pulumi-conntrack and closes again now"));
    const plan = planHost({ owner: "web#1", labels: [label], claims: claimsOf(w, label), facts: host, backends: notrackRuleKind.backends });
    expect(plan.changes).toEqual([{ item: "firewalld:port:public:80/tcp", from: "present", to: "absent" }]);
    expect(steps(host, plan.changes)).toEqual(["firewall-cmd --quiet --zone=public --remove-port=80/tcp", "firewall-cmd --quiet --permanent --zone=public --remove-port=80/tcp"]);
    // Another resource's port, or one that was open before, is left alone and not mentioned.
    expect(want({ ports: [80], side: "server" }, host, "p/s/NotrackRule/other").warnings).toEqual([]);
  });

  it("destroy removes exactly its direct rules and leaves the zone as found", () => {
    const host = withPublic({}, "80/tcp 443/tcp");
    const plan = planHost({ owner: "o1", claims: claimsOf(want({ ports: [80], side: "server" }, host), "notrack-vm"), facts: host, backends: [] });
    const applied = withPublic({}, "80/tcp 443/tcp");
    applied.firewalld.runtimeDirect = ["ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack", "ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack"];
    applied.firewalld.permanentDirect = [...applied.firewalld.runtimeDirect];
    const withLedger: HostFacts = { ...applied, files: { ...applied.files, [ledgerPath]: plan.writeFiles[ledgerPath] } };
    const gone = planHost({ owner: "o1", claims: {}, facts: withLedger, backends: [] });
    expect(gone.changes.map((c) => `${c.item} → ${c.to}`).sort()).toEqual([
      "firewalld:direct:ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack → absent",
      "firewalld:direct:ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack → absent",
    ]);
  });

  it("refuses side client/both, whose untracked replies firewalld would reject", () => {
    expect(want({ ports: [80] }, fwHost(fresh)).blockers).toContainEqual(expect.stringContaining('side "both"'));
  });

  it("refuses when what the default zone opens couldn't be read", () => {
    expect(want({ ports: [80], side: "server" }, fwHost(["zone public", "runtime-ports ", "permanent-ports "])).blockers).toEqual([
      "firewalld: `firewall-cmd --info-zone=public` printed nothing, so what the default zone opens is unknown: check firewalld",
    ]);
  });

  it("the revert puts back, runtime only, exactly the items the apply changed; other direct rules stay", () => {
    const neighbour = "ipv4 raw PREROUTING 0 -p udp --dport 53 -j CT --notrack";
    const quoted = "ipv4 raw PREROUTING 0 -p tcp --dport 22 -m comment --comment 'ssh in' -j CT --notrack";
    const host = fwHost([...fresh, `runtime-direct ${neighbour}`, `runtime-direct ${quoted}`, `permanent-direct ${quoted}`]);
    const added = "direct:ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack";
    const revert = driverOf("firewalld:x").driver.revert!(host, [added, `direct:${quoted}`, "port:public:80/tcp"]).map((s) => s.shell);
    expect(revert).toEqual([
      "firewall-cmd --quiet --direct --remove-rule ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack",
      "firewall-cmd --quiet --direct --add-rule ipv4 raw PREROUTING 0 -p tcp --dport 22 -m comment --comment 'ssh in' -j CT --notrack",
      "firewall-cmd --quiet --zone=public --remove-port=80/tcp",
    ]);
    expect(revert.join("\n")).not.toContain("--remove-rules");
  });

  it("splits a direct rule as firewall-cmd prints it (shlex quoting) into its arguments", () => {
    expect(words(`ipv4 filter INPUT 0 -m comment --comment 'it'"'"'s ssh' -j ACCEPT`)).toEqual(["ipv4", "filter", "INPUT", "0", "-m", "comment", "--comment", "it's ssh", "-j", "ACCEPT"]);
  });
});
