import { describe, expect, it } from "vitest";
import { notrackRuleSettingsSchema } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../../provider/facts/host";
import { planHost } from "../../provider/engine/plan";
import { claimsOf } from "../../provider/engine/transaction";
import { notrackRuleKind, ruleDisplay } from "../../provider/notrackRule/provider";
import { backendOf, wantNotrackRule } from "../../provider/notrackRule/plan";
import { fixture, rhel75Facts } from "./helpers";

// iptables-services as RHEL/CentOS 7 ships it (test/fixtures/rhel/SOURCES.md): /etc/sysconfig/iptables
// and ip6tables exactly as iptables-1.4.21-33.el7 installs them. The live ruleset is taken to be
// what iptables.service restored from them (no iptables-save of a named RHEL host was found).
const v4File = fixture("rhel/sysconfig-iptables.el7-1.4.21-33");
const v6File = fixture("rhel/sysconfig-ip6tables.el7-1.4.21-33");

function rhel(): HostFacts {
  const base = rhel75Facts();
  return {
    ...base,
    iptables: { backend: "legacy", otherBackendRules: false, v4: v4File, v6: v6File, netfilterPersistent: false, firewalld: false, nftablesService: false, iptablesServices: true },
    files: { ...base.files, "/etc/sysconfig/iptables": v4File, "/etc/sysconfig/ip6tables": v6File },
  };
}
const want = (s: Record<string, unknown>, f: HostFacts) => wantNotrackRule(notrackRuleSettingsSchema.parse(s), f);
const planFor = (s: Record<string, unknown>, f: HostFacts, owner = "o1") => planHost({ owner, claims: claimsOf(want(s, f), "notrack-rhel"), facts: f, backends: notrackRuleKind.backends });

describe("NotrackRule on iptables-services (RHEL 7 files)", () => {
  it("goes through iptables and persists in /etc/sysconfig/iptables, not /etc/iptables/rules.v4", () => {
    expect(backendOf(rhel())).toBe("iptables-services");
    const w = want({ ports: [22], side: "server", ipVersions: [4, 6] }, rhel());
    expect(w.blockers).toEqual([]);
    expect(Object.keys(w.claims).map(ruleDisplay).sort()).toEqual([
      "ip6tables -t filter -A INPUT -p tcp --dport 22 -m conntrack --ctstate UNTRACKED -j ACCEPT",
      "ip6tables -t raw -A OUTPUT -p tcp --sport 22 -j CT --notrack",
      "ip6tables -t raw -A PREROUTING -p tcp --dport 22 -j CT --notrack",
      "iptables -t filter -A INPUT -p tcp --dport 22 -m conntrack --ctstate UNTRACKED -j ACCEPT",
      "iptables -t raw -A OUTPUT -p tcp --sport 22 -j CT --notrack",
      "iptables -t raw -A PREROUTING -p tcp --dport 22 -j CT --notrack",
    ]);
    expect(w.warnings).toContainEqual(expect.stringContaining('"-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT" matches --state NEW on port 22'));
    const plan = planFor({ ports: [22], side: "server", ipVersions: [4, 6] }, rhel());
    expect(Object.keys(plan.writeFiles).sort()).toEqual(["/etc/sysconfig/ip6tables", "/etc/sysconfig/iptables", "/var/lib/pulumi-conntrack/ledger.json"]);
    expect(plan.writeFiles["/etc/sysconfig/iptables"]).toBe(v4File
      .replace("-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n", '-A INPUT -p tcp --dport 22 -m conntrack --ctstate UNTRACKED -m comment --comment "pulumi-conntrack" -j ACCEPT\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n')
      .concat('*raw\n# pulumi-conntrack: table added\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp --sport 22 -m comment --comment "pulumi-conntrack" -j CT --notrack\n-A PREROUTING -p tcp --dport 22 -m comment --comment "pulumi-conntrack" -j CT --notrack\nCOMMIT\n'));
  });

  it("a port the REJECT at the end of INPUT closes stays closed, and the preview says so", () => {
    const w = want({ ports: [80], side: "server" }, rhel());
    expect(Object.keys(w.claims).some((k) => k.includes(":filter:"))).toBe(false);
    expect(w.warnings).toContainEqual(expect.stringContaining("port 80 isn't accepted in INPUT (-A INPUT -j REJECT --reject-with icmp-host-prohibited)"));
  });

  it("destroy gives back both files byte for byte, and a later hand edit survives", () => {
    const settings = { ports: [22], side: "server", ipVersions: [4, 6] };
    const applied = planFor(settings, rhel());
    const after: HostFacts = { ...rhel(), files: { ...rhel().files, ...applied.writeFiles } };
    // by hand, after the apply: one more accept in the saved file
    after.files["/etc/sysconfig/iptables"] = after.files["/etc/sysconfig/iptables"].replace("-A INPUT -i lo -j ACCEPT\n", "-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp --dport 8080 -j ACCEPT\n");
    const gone = planHost({ owner: "o1", claims: {}, facts: after, backends: notrackRuleKind.backends });
    expect(gone.writeFiles["/etc/sysconfig/ip6tables"]).toBe(v6File);
    expect(gone.writeFiles["/etc/sysconfig/iptables"]).toBe(v4File.replace("-A INPUT -i lo -j ACCEPT\n", "-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp --dport 8080 -j ACCEPT\n"));
    expect(gone.removeFiles).toEqual(["/var/lib/pulumi-conntrack/ledger.json"]);
  });

  it("on a Debian host the sysconfig files are never touched, and on RHEL rules.v4 isn't created", () => {
    const rhelPlan = planFor({ ports: [22] }, rhel());
    expect(Object.keys(rhelPlan.writeFiles).some((p) => p.startsWith("/etc/iptables/"))).toBe(false);
    const debian: HostFacts = { ...rhel(), iptables: { ...rhel().iptables, netfilterPersistent: true, iptablesServices: false } };
    const debianPlan = planFor({ ports: [22] }, debian);
    expect(Object.keys(debianPlan.writeFiles)).toContain("/etc/iptables/rules.v4");
    expect(Object.keys(debianPlan.writeFiles).some((p) => p.startsWith("/etc/sysconfig/"))).toBe(false);
  });

  it("declares that it needs iptables.service", () => {
    expect(notrackRuleKind.intents!(notrackRuleSettingsSchema.parse({ ports: [22] }), rhel()).needs).toContain("service iptables");
  });
});
