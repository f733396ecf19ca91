import { describe, expect, it } from "vitest";
import { notrackRuleSettingsSchema } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../../provider/facts/host";
import { parseNftRuleset, render, ruleKey } from "../../provider/facts/nftRules";
import { nftablesReader } from "../../provider/facts/nftables";
import { planHost } from "../../provider/engine/plan";
import { claimsOf } from "../../provider/engine/transaction";
import { nftRevertJson, nftScript } from "../../provider/engine/nftItems";
import { driverOf } from "../../provider/engine/items";
import { includeLine, nftIncludePath, renderNftablesConf } from "../../provider/persistence/nftablesInclude";
import { notrackRuleKind, ruleDisplay } from "../../provider/notrackRule/provider";
import { backendOf, wantNotrackRule } from "../../provider/notrackRule/plan";
import { facts, fixture } from "./helpers";

const debianConf = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n";

/** The lab VM's facts with nftables.service enabled and this captured `nft -j list ruleset`. */
function nftHost(json: string, files: Record<string, string> = { "/etc/nftables.conf": debianConf }): HostFacts {
  const base = facts("debian12-vm-loaded");
  const nftables = nftablesReader.parse([`ruleset ${Buffer.from(json).toString("base64")}`]);
  return { ...base, iptables: { ...base.iptables, nftablesService: true }, nftables, files: { ...base.files, ...files } };
}
const want = (s: Record<string, unknown>, f: HostFacts) => wantNotrackRule(notrackRuleSettingsSchema.parse(s), f);
const rules = (w: ReturnType<typeof want>) => Object.keys(w.claims).map(ruleDisplay).sort();
const seed = fixture("nftables/seed.json");
const limits = fixture("nftables/limits.json");

describe("nftables rules", () => {
  it("parses captured rules into what they match, and renders them as nft prints them", () => {
    const rs = parseNftRuleset(seed);
    expect(rs.chains.map((c) => `${c.family} ${c.table} ${c.name} ${c.type} ${c.hook} ${c.policy}`)).toEqual(["inet filter input filter input drop", "inet filter forward filter forward accept", "inet filter output filter output accept"]);
    expect(rs.rules.map(ruleKey)).toEqual(['iif "lo" accept', "tcp dport 22 accept", "ct state established,related accept", "tcp dport 80 ct state new accept"]);
    const more = parseNftRuleset(limits).rules;
    expect(more.map(ruleKey)).toContain('iifname "eth1" ip saddr 10.0.0.0/8 tcp dport 443 ct state new accept');
    expect(more.map(ruleKey)).toContain("tcp dport 8000-8100 ct state new accept");
    // a set of ports is not modelled: no identity, never judged
    expect(more.find((r) => r.other.length > 0)?.other[0]).toContain('"set"');
    expect(nftablesReader.parse([`ruleset ${Buffer.from("Error: JSON support not compiled-in").toString("base64")}`]).readable).toBe(false);
    expect(nftablesReader.parse([]).readable).toBe(false);
    expect(render({ nfproto: "ipv4", proto: "udp", dport: "1000:2000", verdict: "notrack" })).toBe("meta nfproto ipv4 udp dport 1000-2000 notrack");
  });
});

describe("NotrackRule on native nftables", () => {
  it("a host with nftables.service enabled goes through the nft backend", () => {
    expect(backendOf(nftHost(seed))).toBe("nftables");
    expect(backendOf(facts("debian12-vm-loaded"))).toBe("iptables");
  });

  it("the seed: notrack in our raw-priority table, the untracked accept in the host's input chain", () => {
    const w = want({ ports: [80], side: "server" }, nftHost(seed));
    expect(w.blockers).toEqual([]);
    expect(rules(w)).toEqual([
      "nft add rule inet pulumi_conntrack output meta nfproto ipv4 tcp sport 80 notrack",
      "nft add rule inet pulumi_conntrack prerouting meta nfproto ipv4 tcp dport 80 notrack",
      "nft insert rule inet filter input meta nfproto ipv4 tcp dport 80 ct state untracked accept",
    ]);
    expect(w.warnings).toContainEqual(expect.stringContaining('inet filter input: "tcp dport 80 ct state new accept" matches ct state new on port 80'));
  });

  it("keeps the source and interface limits of the accept that opened the port", () => {
    const w = want({ ports: [443], side: "server", ipVersions: [4, 6] }, nftHost(limits));
    expect(rules(w)).toContain('nft insert rule inet filter input iifname "eth1" ip saddr 10.0.0.0/8 tcp dport 443 ct state untracked accept');
    expect(rules(w).filter((r) => r.includes("input") && r.includes("accept"))).toHaveLength(1);
    // a port nothing accepted stays closed, and says so
    const closed = want({ ports: [9999], side: "server" }, nftHost(limits));
    expect(rules(closed).some((r) => r.includes("accept"))).toBe(false);
    expect(closed.warnings).toContainEqual(expect.stringContaining("port 9999 isn't accepted in inet filter input"));
    // a range inside an accepted range
    expect(rules(want({ ports: ["8010:8020"], side: "server" }, nftHost(limits)))).toContain("nft insert rule inet filter input meta nfproto ipv4 tcp dport 8010-8020 ct state untracked accept");
  });

  it("an ip-family chain that drops the port counts too, and ipVersions [6] leaves it alone", () => {
    const w4 = want({ ports: [53], protocol: "udp", side: "server" }, nftHost(limits));
    expect(w4.warnings).toContainEqual(expect.stringContaining("port 53 isn't accepted in ip legacyish INPUT"));
    const w6 = want({ ports: [53], protocol: "udp", side: "server", ipVersions: [6] }, nftHost(limits));
    expect(w6.warnings.some((m) => m.includes("legacyish"))).toBe(false);
  });

  it("refuses with acceptUntracked false where the host drops them, and without nftables.conf to persist through", () => {
    expect(want({ ports: [80], acceptUntracked: false }, nftHost(seed)).blockers).toContainEqual(expect.stringContaining("would be dropped by the policy drop of inet filter input"));
    expect(want({ ports: [80] }, nftHost(seed, {})).blockers).toContainEqual(expect.stringContaining("/etc/nftables.conf is missing"));
    expect(want({ ports: [80], persist: false }, nftHost(seed, {})).blockers).toEqual([]);
  });

  it("plans one transaction, persists through an include, and plans nothing once applied", () => {
    const host = nftHost(seed);
    const w = want({ ports: [80], side: "server" }, host);
    const plan = planHost({ owner: "o1", claims: claimsOf(w, "notrack-vm"), facts: host, backends: notrackRuleKind.backends });
    const script = nftScript(plan.changes.map((c) => ({ name: c.item.slice(4), to: c.to })), host);
    expect(script).toBe([
      "insert rule inet filter input meta nfproto ipv4 tcp dport 80 ct state untracked accept comment \"pulumi-conntrack\"",
      "add table inet pulumi_conntrack",
      "add chain inet pulumi_conntrack output { type filter hook output priority raw; policy accept; }",
      "add rule inet pulumi_conntrack output meta nfproto ipv4 tcp sport 80 notrack comment \"pulumi-conntrack\"",
      "add chain inet pulumi_conntrack prerouting { type filter hook prerouting priority raw; policy accept; }",
      "add rule inet pulumi_conntrack prerouting meta nfproto ipv4 tcp dport 80 notrack comment \"pulumi-conntrack\"",
      "",
    ].join("\n"));
    expect(plan.writeFiles["/etc/nftables.conf"]).toBe(`${debianConf}${includeLine}\n`);
    expect(plan.writeFiles[nftIncludePath]).toContain("\t\tmeta nfproto ipv4 tcp dport 80 notrack comment \"pulumi-conntrack\"");
    expect(plan.writeFiles[nftIncludePath]).toContain('insert rule inet filter input meta nfproto ipv4 tcp dport 80 ct state untracked accept comment "pulumi-conntrack"');
    expect(renderNftablesConf(plan.writeFiles["/etc/nftables.conf"], false)).toBe(debianConf);
  });

  it("recognises its rules after apply (captured from the VM) and takes exactly them out again", () => {
    const after = nftHost(fixture("nftables/applied.json"));
    const w = want({ ports: [80] }, after);
    // its own rules don't count as the host's: it wants the same as before them
    expect(Object.keys(w.claims)).toEqual(Object.keys(want({ ports: [80] }, nftHost(seed)).claims));
    const plan = planHost({ owner: "o1", claims: claimsOf(w, "notrack-vm"), facts: after, backends: [] });
    expect(plan.changes).toEqual([]);
    const removal = nftScript(Object.keys(w.claims).map((k) => ({ name: k.slice(4), to: null })), after);
    expect(removal.split("\n").filter((l) => l.startsWith("delete rule"))).toHaveLength(6);
    expect(removal).toContain("delete table inet pulumi_conntrack");
    // the revert drops our table (it wasn't there) and takes out, from the host's input chain,
    // only the accepts of ours that the facts didn't have: nothing else in that chain is touched
    const revert = JSON.parse(nftRevertJson(nftHost(seed))) as { nftables: Array<Record<string, unknown>> };
    expect(revert.nftables).toEqual([{ add: { table: { family: "inet", name: "pulumi_conntrack" } } }, { delete: { table: { family: "inet", name: "pulumi_conntrack" } } }]);
    const applied = planHost({ owner: "o1", claims: claimsOf(want({ ports: [80] }, nftHost(seed)), "notrack-vm"), facts: nftHost(seed), backends: [] });
    const steps = driverOf("nft:x").driver.revert!(nftHost(seed), applied.changes.map((c) => c.item.slice(4)));
    expect(steps[0].name).toBe("put our nftables table back as it was");
    const inputSteps = steps.filter((st) => st.name.startsWith("take out the nftables inet filter input rule"));
    expect(inputSteps.length).toBeGreaterThan(0);
    expect(inputSteps[0].shell).toMatch(/^for h in \$\(nft -a list chain inet filter input \| grep -F -- '.* comment "pulumi-conntrack" # handle ' \| sed .*\); do case ' \d+ .*' in \*" \$h "\*\) ;; \*\) nft delete rule inet filter input handle "\$h" \|\| exit 1;; esac; done$/);
    expect(steps.map((st) => st.shell).join("\n")).not.toContain("flush");
  });
});
