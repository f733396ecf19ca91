import { describe, expect, it } from "vitest";
import { notrackRuleSettingsSchema } from "../../sdk/notrackRule.schema";
import type { HostFacts } from "../../provider/facts/host";
import { key, parseRule, parseRuleset, words } from "../../provider/facts/iptablesRules";
import { planHost } from "../../provider/engine/plan";
import { revertSteps } from "../../provider/engine/lockoutGuard";
import { claimsOf } from "../../provider/engine/transaction";
import { driverOf } from "../../provider/engine/items";
import { renderRulesFile } from "../../provider/persistence/netfilterPersistent";
import { notrackRuleKind, ruleDisplay } from "../../provider/notrackRule/provider";
import { wantNotrackRule } from "../../provider/notrackRule/plan";
import { facts } from "./helpers";

const settings = (s: Record<string, unknown>) => notrackRuleSettingsSchema.parse(s);
/** The lab VM's facts with this iptables-save output as its IPv4 ruleset. */
function host(v4: string, extra: Partial<HostFacts["iptables"]> = {}): HostFacts {
  const base = facts("debian12-vm-loaded");
  return { ...base, iptables: { ...base.iptables, v4, netfilterPersistent: true, ...extra } };
}
const want = (s: Record<string, unknown>, f: HostFacts) => wantNotrackRule(settings(s), f);
const rules = (w: ReturnType<typeof want>) => Object.keys(w.claims).map(ruleDisplay).sort();

// The seed's host: INPUT policy DROP, SSH and established traffic accepted, port 80 opened with --state NEW.
const seed = `*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 80 -j ACCEPT
COMMIT
`;

describe("iptables rules", () => {
  it("reads iptables-save words, quotes and escapes", () => {
    expect(words('-A INPUT -m comment --comment "a \\"b\\" c" -j ACCEPT')).toEqual(["-A", "INPUT", "-m", "comment", "--comment", 'a "b" c', "-j", "ACCEPT"]);
  });
  it("treats the spellings of one rule as one rule", () => {
    const a = parseRule("raw", "-A PREROUTING -p tcp -m tcp --dport 80 -j NOTRACK")!;
    const b = parseRule("raw", '-A PREROUTING -p tcp --dport 80 -m comment --comment "pulumi-conntrack" -j CT --notrack')!;
    expect(key(a)).toBe(key(b));
    expect(key(parseRule("filter", "-A INPUT -p tcp -m state --state NEW,ESTABLISHED --dport 80 -j ACCEPT")!)).toBe(key(parseRule("filter", "-A INPUT -p tcp -m conntrack --ctstate ESTABLISHED,NEW -m tcp --dport 80 -j ACCEPT")!));
    expect(key(a)).not.toBe(key(parseRule("raw", "-A PREROUTING ! -p tcp --dport 80 -j NOTRACK")!));
    expect(b.text).toBe('-p tcp --dport 80 -m comment --comment "pulumi-conntrack" -j CT --notrack');
  });
});

describe("NotrackRule planner", () => {
  it("the seed: four raw rules and one UNTRACKED accept for the NEW-state accept it stands in for", () => {
    const w = want({ ports: [80], side: "server" }, host(seed));
    expect(w.blockers).toEqual([]);
    expect(rules(w)).toEqual([
      "iptables -t filter -A INPUT -p tcp --dport 80 -m conntrack --ctstate UNTRACKED -j ACCEPT",
      "iptables -t raw -A OUTPUT -p tcp --sport 80 -j CT --notrack",
      "iptables -t raw -A PREROUTING -p tcp --dport 80 -j CT --notrack",
    ]);
    expect(w.warnings).toContainEqual(expect.stringContaining('"-A INPUT -p tcp -m state --state NEW -m tcp --dport 80 -j ACCEPT" matches --state NEW on port 80'));
  });

  it("wants the same once its own rules are in place (they don't count as the host's)", () => {
    const w = want({ ports: [80] }, host(seed));
    const applied = seed.replace("-A INPUT -i lo -j ACCEPT", Object.keys(w.claims).filter((k) => k.includes(":filter:INPUT:")).map((k) => `-A INPUT ${k.slice("rule:v4:filter:INPUT:".length).replace(" -j ", ' -m comment --comment "pulumi-conntrack" -j ')}`).join("\n") + "\n-A INPUT -i lo -j ACCEPT");
    expect(Object.keys(want({ ports: [80] }, host(applied)).claims)).toEqual(Object.keys(w.claims));
    expect(w.warnings).toContainEqual(expect.stringContaining('INPUT now accepts untracked packets from source port 80'));
  });

  it("keeps the source and interface limits of the accept it stands in for: a port open to 10.0.0.0/8 stays closed to others", () => {
    const limited = seed.replace("-A INPUT -p tcp -m state --state NEW -m tcp --dport 80 -j ACCEPT", "-A INPUT -s 10.0.0.0/8 -i eth1 -p tcp -m state --state NEW -m tcp --dport 80 -j ACCEPT");
    const w = want({ ports: [80], side: "server" }, host(limited));
    expect(rules(w)).toContain("iptables -t filter -A INPUT -s 10.0.0.0/8 -i eth1 -p tcp --dport 80 -m conntrack --ctstate UNTRACKED -j ACCEPT");
    expect(rules(w).filter((r) => r.includes("UNTRACKED"))).toHaveLength(1);
  });

  it("opens nothing where the port was closed, and says so", () => {
    const closed = seed.replace("-A INPUT -p tcp -m state --state NEW -m tcp --dport 80 -j ACCEPT\n", "");
    const w = want({ ports: [80], side: "server" }, host(closed));
    expect(rules(w).filter((r) => r.includes("UNTRACKED"))).toEqual([]);
    expect(w.warnings).toContainEqual(expect.stringContaining("port 80 isn't accepted in INPUT (the INPUT policy DROP)"));
  });

  it("refuses acceptUntracked: false where the filter would drop the untracked packets, naming what drops them", () => {
    expect(want({ ports: [80], side: "server", acceptUntracked: false }, host(seed)).blockers).toEqual([expect.stringContaining("would be dropped by the INPUT policy DROP")]);
    const rejecting = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 80 -m state --state NEW -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";
    expect(want({ ports: [80], side: "server", acceptUntracked: false }, host(rejecting)).blockers).toEqual([expect.stringContaining('dropped by -A INPUT -j REJECT --reject-with icmp-port-unreachable')]);
  });

  it("needs no accept where the filter accepts everything", () => {
    const open = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    expect(rules(want({ ports: [80, "8000:8100"], protocol: "udp" }, host(open)))).toEqual([
      "iptables -t raw -A OUTPUT -p udp --dport 8000:8100 -j CT --notrack",
      "iptables -t raw -A OUTPUT -p udp --dport 80 -j CT --notrack",
      "iptables -t raw -A OUTPUT -p udp --sport 8000:8100 -j CT --notrack",
      "iptables -t raw -A OUTPUT -p udp --sport 80 -j CT --notrack",
      "iptables -t raw -A PREROUTING -p udp --dport 8000:8100 -j CT --notrack",
      "iptables -t raw -A PREROUTING -p udp --dport 80 -j CT --notrack",
      "iptables -t raw -A PREROUTING -p udp --sport 8000:8100 -j CT --notrack",
      "iptables -t raw -A PREROUTING -p udp --sport 80 -j CT --notrack",
    ].sort());
  });

  it("refuses ports that DNAT rewrites (untracked packets skip NAT) unless forced", () => {
    const natted = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.17.0.2:8080\nCOMMIT\n";
    expect(want({ ports: [80] }, host(natted)).blockers).toEqual([expect.stringContaining('"-t nat -A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.17.0.2:8080" rewrites port 80')]);
    expect(want({ ports: [80], force: true }, host(natted)).warnings).toContainEqual(expect.stringContaining("going ahead: force is set"));
  });

  it("refuses hosts it can't persist on, and mixed iptables backends, saying what to do", () => {
    expect(want({ ports: [80] }, host("", { netfilterPersistent: false })).blockers).toEqual([expect.stringContaining("install iptables-persistent")]);
    expect(want({ ports: [80], persist: false }, host("", { netfilterPersistent: false })).blockers).toEqual([]);
    expect(want({ ports: [80] }, host("", { otherBackendRules: true })).blockers).toContainEqual(expect.stringContaining("both iptables-legacy and iptables-nft hold rules"));
  });

  it("recognises a hand-made rule in the old spelling: no duplicate, and it stays when the resource goes", () => {
    const handMade = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 80 -j NOTRACK\nCOMMIT\n" + "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    const f = host(handMade);
    const w = want({ ports: [80], side: "server" }, f);
    const plan = planHost({ owner: "o", claims: claimsOf(w, "p/s/NotrackRule/web"), facts: f, backends: notrackRuleKind.backends });
    expect(plan.changes.map((c) => ruleDisplay(c.item))).toEqual(["iptables -t raw -A OUTPUT -p tcp --sport 80 -j CT --notrack"]);
    expect(plan.ledger.items["rule:v4:raw:PREROUTING:-p tcp --dport 80 -j CT --notrack"].original).toBe("present");
    // The saved file gets only the rule we add; the hand-made one is the host's own.
    expect(plan.writeFiles["/etc/iptables/rules.v4"]).not.toContain("--dport 80 -m comment");
  });
});

describe("netfilter-persistent rules files", () => {
  const saved = "# Generated by iptables-save v1.8.9 on Wed\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n# Completed on Wed\n";
  const ours = [
    { table: "raw", chain: "PREROUTING", args: '-p tcp --dport 80 -m comment --comment "pulumi-conntrack" -j CT --notrack', first: false },
    { table: "filter", chain: "INPUT", args: '-p tcp --dport 80 -m conntrack --ctstate UNTRACKED -m comment --comment "pulumi-conntrack" -j ACCEPT', first: true },
  ];
  it("adds our lines (an accept ahead of the chain's rules, a table it lacked) and takes them out byte for byte", () => {
    const added = renderRulesFile(saved, ours)!;
    expect(added.split("\n").indexOf('-A INPUT -p tcp --dport 80 -m conntrack --ctstate UNTRACKED -m comment --comment "pulumi-conntrack" -j ACCEPT')).toBeLessThan(added.split("\n").indexOf("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"));
    expect(added).toContain("*raw\n# pulumi-conntrack: table added\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING");
    expect(parseRuleset(added).rules).toHaveLength(3);
    expect(renderRulesFile(added, [])).toBe(saved);
  });
  it("creates a file that didn't exist and removes it again", () => {
    const created = renderRulesFile(undefined, ours)!;
    expect(created.startsWith("# pulumi-conntrack: created this file")).toBe(true);
    expect(renderRulesFile(created, [])).toBeUndefined();
  });
});

describe("the lockout guard's revert", () => {
  it("takes out exactly the lines the apply adds, replays no table, and puts the files back", () => {
    const f = host(seed);
    const w = want({ ports: [80] }, f);
    const plan = planHost({ owner: "o#1", claims: claimsOf(w, "p/s/NotrackRule/web"), facts: f, backends: notrackRuleKind.backends });
    const steps = revertSteps(f, plan)!;
    const rules = steps.filter((s) => s.name.startsWith("take out the "));
    // Both sides (the default): the port as a server's and as a client's.
    expect(rules.map((s) => s.name)).toEqual([
      "take out the filter INPUT rule the change added (-p tcp --dport 80 -m conntrack --ctstate UNTRACKED -j ACCEPT)",
      "take out the filter INPUT rule the change added (-p tcp --sport 80 -m conntrack --ctstate UNTRACKED -j ACCEPT)",
      "take out the raw OUTPUT rule the change added (-p tcp --dport 80 -j CT --notrack)",
      "take out the raw OUTPUT rule the change added (-p tcp --sport 80 -j CT --notrack)",
      "take out the raw PREROUTING rule the change added (-p tcp --dport 80 -j CT --notrack)",
      "take out the raw PREROUTING rule the change added (-p tcp --sport 80 -j CT --notrack)",
    ]);
    const prerouting = rules.find((s) => s.name.includes("PREROUTING rule the change added (-p tcp --dport"))!;
    expect(prerouting.shell).toBe(
      "{ ! iptables -w 30 -t raw -C PREROUTING -p tcp --dport 80 -m comment --comment pulumi-conntrack -j CT --notrack >/dev/null 2>&1 || " +
        "iptables -w 30 -t raw -D PREROUTING -p tcp --dport 80 -m comment --comment pulumi-conntrack -j CT --notrack; }",
    );
    expect(steps.some((s) => /iptables-restore/.test(s.shell))).toBe(false);
    expect(steps.map((s) => s.name)).toEqual(expect.arrayContaining(["remove /var/lib/pulumi-conntrack/ledger.json", "remove /etc/iptables/rules.v4"]));
    expect(steps.findIndex((s) => s === rules[0])).toBe(0);
  });

  it("puts a removed line of ours back where it was, unless someone already did", () => {
    const ours = '-A INPUT -p tcp -m tcp --dport 80 -m conntrack --ctstate UNTRACKED -m comment --comment "pulumi-conntrack: p/s/NotrackRule/web" -j ACCEPT';
    const f = host(seed.replace("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", `-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n${ours}`));
    const item = "rule:v4:filter:INPUT:-p tcp --dport 80 -m conntrack --ctstate UNTRACKED -j ACCEPT";
    const [step] = driverOf(item).driver.revert!(f, [driverOf(item).name]);
    const at = seed.split("\n").filter((l) => l.startsWith("-A INPUT")).indexOf("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT") + 2;
    const spec = '-p tcp -m tcp --dport 80 -m conntrack --ctstate UNTRACKED -m comment --comment \'pulumi-conntrack: p/s/NotrackRule/web\' -j ACCEPT';
    expect(step.shell).toBe(`{ iptables -w 30 -t filter -C INPUT ${spec} >/dev/null 2>&1 || { iptables -w 30 -t filter -I INPUT ${at} ${spec} || iptables -w 30 -t filter -A INPUT ${spec}; }; }`);
  });

  it("has nothing to guard when no rule changes", () => {
    const f = host(seed);
    const plan = planHost({ owner: "o#1", claims: {}, facts: f, backends: notrackRuleKind.backends });
    expect(revertSteps(f, plan)).toBeUndefined();
  });
});

describe("across stacks", () => {
  it("is refused while a KernelModuleSet keeps nf_conntrack unloaded, naming it", () => {
    const ledger = { format: 1, items: { "module:nf_conntrack": { original: "loaded", owners: { "p/other#1": { value: "absent", persist: true, label: "p/other/KernelModuleSet/bare" } } } } };
    const f = host(seed);
    const w = want({ ports: [80] }, { ...f, files: { ...f.files, "/var/lib/pulumi-conntrack/ledger.json": JSON.stringify(ledger) } });
    expect(w.blockers).toContainEqual('p/other/KernelModuleSet/bare keeps nf_conntrack unloaded on this host, which this NotrackRule needs (notrack rules work in it): destroy that KernelModuleSet (or set its state to "present") first');
  });
});
