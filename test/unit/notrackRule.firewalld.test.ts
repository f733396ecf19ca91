import { describe, expect, it } from "vitest";
import { notrackRuleSettingsSchema } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../../provider/facts/host";
import { directRuleWords, firewalldReader } from "../../provider/facts/firewalld";
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
// firewalld 1.3.3 on the lab VM: default zone public, nothing opened beyond its services.
const fresh = ["zone public", "runtime-ports ", "permanent-ports "];
const want = (s: Record<string, unknown>, f: HostFacts) => wantNotrackRule(notrackRuleSettingsSchema.parse(s), f);
const steps = (f: HostFacts, changes: Array<{ item: string; to: string | null }>) => {
  const byName = changes.map((c) => ({ name: c.item.slice("firewalld:".length), to: c.to }));
  return driverOf("firewalld:x").driver.set(byName, f).map((s) => s.shell);
};

describe("NotrackRule on firewalld", () => {
  it("opens the port in the default zone and adds the notrack as direct rules, runtime and permanent", () => {
    const host = fwHost(fresh);
    expect(backendOf(host)).toBe("firewalld");
    const w = want({ ports: [80], side: "server" }, host);
    expect(w.blockers).toEqual([]);
    expect(Object.keys(w.claims).map(ruleDisplay).sort()).toEqual([
      "firewall-cmd --direct --add-rule ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack",
      "firewall-cmd --direct --add-rule ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack",
      "firewall-cmd --zone=public --add-port=80/tcp",
    ]);
    const plan = planHost({ owner: "o1", claims: claimsOf(w, "notrack-vm"), facts: host, backends: notrackRuleKind.backends });
    const shell = steps(host, plan.changes);
    // the port opens before the notrack goes in, runtime then permanent
    expect(shell[0]).toBe("firewall-cmd --quiet --zone=public --add-port=80/tcp");
    expect(shell[1]).toBe("firewall-cmd --quiet --permanent --zone=public --add-port=80/tcp");
    expect(shell).toContain("firewall-cmd --quiet --permanent --direct --add-rule ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack");
    expect(shell).toHaveLength(6);
  });

  it("a port that was open before stays open after destroy; one that wasn't closes again", () => {
    const open = fwHost(["zone public", "runtime-ports 80/tcp 443/tcp", "permanent-ports 80/tcp 443/tcp"]);
    const plan = planHost({ owner: "o1", claims: claimsOf(want({ ports: [80], side: "server" }, open), "notrack-vm"), facts: open, backends: [] });
    expect(plan.ledger.items["firewalld:port:public:80/tcp"].original).toBe("present");
    expect(plan.changes.some((c) => c.item.includes(":port:"))).toBe(false);
    // after the apply, destroy: the port keeps its state, the direct rules go (after... nothing to close)
    const applied = fwHost(["zone public", "runtime-ports 80/tcp 443/tcp", "permanent-ports 80/tcp 443/tcp",
      "runtime-direct ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack", "permanent-direct ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack",
      "runtime-direct ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack", "permanent-direct ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack"]);
    const withLedger: HostFacts = { ...applied, files: { ...applied.files, "/var/lib/pulumi-conntrack/ledger.json": plan.writeFiles["/var/lib/pulumi-conntrack/ledger.json"] } };
    const gone = planHost({ owner: "o1", claims: {}, facts: withLedger, backends: [] });
    expect(gone.changes.map((c) => `${c.item} → ${c.to}`).sort()).toEqual([
      "firewalld:direct:ipv4 raw OUTPUT 0 -p tcp --sport 80 -j CT --notrack → absent",
      "firewalld:direct:ipv4 raw PREROUTING 0 -p tcp --dport 80 -j CT --notrack → absent",
    ]);
    // a runtime-only port (opened by hand, not saved) is recorded as such and put back so
    const runtimeOnly = fwHost(["zone public", "runtime-ports 80/tcp", "permanent-ports "]);
    const p2 = planHost({ owner: "o1", claims: claimsOf(want({ ports: [80], side: "server" }, runtimeOnly), "notrack-vm"), facts: runtimeOnly, backends: [] });
    expect(p2.ledger.items["firewalld:port:public:80/tcp"].original).toBe("runtime");
    expect(steps(runtimeOnly, p2.changes)[0]).toBe("firewall-cmd --quiet --permanent --zone=public --add-port=80/tcp");
  });

  it("refuses side client/both, whose untracked replies firewalld would reject", () => {
    expect(want({ ports: [80] }, fwHost(fresh)).blockers).toContainEqual(expect.stringContaining('side "both"'));
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
    expect(directRuleWords(`ipv4 filter INPUT 0 -m comment --comment 'it'"'"'s ssh' -j ACCEPT`)).toEqual(["ipv4", "filter", "INPUT", "0", "-m", "comment", "--comment", "it's ssh", "-j", "ACCEPT"]);
  });
});
