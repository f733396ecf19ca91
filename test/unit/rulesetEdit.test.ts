import { describe, expect, it } from "vitest";
import { lineKey } from "../../provider/facts/iptablesRules";
import { flushTables, putBack, replaceTables, RulesetEdit, takeOut, type Party } from "../../provider/facts/rulesetEdit";
import { fixture } from "./helpers";

const table = (name: string, chains: string, rules: string) => `*${name}\n${chains}${rules}COMMIT\n`;
const filter = (rules: string, chains = ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n") => table("filter", chains, rules);
const all: Party = { rule: () => true, chain: () => true };
const none: Party = { rule: () => false, chain: () => false };
/** The rules whose text says "mine" (a comment), and chains named MINE*. */
const mine: Party = { rule: (r) => r.text.includes("mine"), chain: (_t, c) => c.startsWith("MINE") };

describe("lineKey: one line, however it is spelt", () => {
  it("a file's spelling and iptables-save's are the same line", () => {
    expect(lineKey("-p tcp --dport 80 -s 10.0.0.1 -j DROP")).toBe(lineKey("-s 10.0.0.1/32 -p tcp -m tcp --dport 80 -j DROP"));
    expect(lineKey("--protocol tcp --destination-port 22 --jump ACCEPT")).toBe(lineKey("-p tcp -m tcp --dport 22 -j ACCEPT"));
    expect(lineKey("-s 2001:db8::7 -j REJECT")).toBe(lineKey("-s 2001:db8::7/128 -j REJECT"));
    expect(lineKey("-p all -s 0.0.0.0/0 -j ACCEPT")).toBe(lineKey("-j ACCEPT"));
  });

  it("negations, comments and targets keep lines apart", () => {
    expect(lineKey("-i docker0 ! -o docker0 -j ACCEPT")).not.toBe(lineKey("! -i docker0 -o docker0 -j ACCEPT"));
    expect(lineKey('-m comment --comment "a b" -j ACCEPT')).not.toBe(lineKey("-j ACCEPT"));
    expect(lineKey("-j NOTRACK")).not.toBe(lineKey("-j CT --notrack"));
    // Options of the target are the target's, even when they look like -s or -d.
    expect(lineKey("-j SNAT --to-source 10.0.0.1 -d 1.2.3.4")).toBe("-j SNAT --to-source 10.0.0.1 -d 1.2.3.4");
  });
});

describe("RulesetEdit: lines and what they leave", () => {
  it("takes out one party's rules by their lines, opens the policies, and drops its chains once empty and unreferenced", () => {
    const edit = new RulesetEdit(filter("-A INPUT -j MINE\n-A INPUT -m comment --comment mine -j DROP\n-A INPUT -j f2b\n-A MINE -m comment --comment mine -j DROP\n-A MINE2 -j f2b\n", ":INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:MINE - [0:0]\n:MINE2 - [0:0]\n:f2b - [0:0]\n"));
    takeOut(edit, { rule: (r) => r.text.includes("mine") || r.text === "-j MINE", chain: mine.chain });
    // MINE2 holds another party's rule: it stays, as does f2b.
    expect(edit.input()).toBe("*filter\n-D INPUT -j MINE\n-D INPUT -m comment --comment mine -j DROP\n-D MINE -m comment --comment mine -j DROP\n:INPUT ACCEPT [0:0]\n-X MINE\nCOMMIT\n");
    expect(edit.save()).toBe(filter("-A INPUT -j f2b\n-A MINE2 -j f2b\n", ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:MINE2 - [0:0]\n:f2b - [0:0]\n"));
  });

  it("puts each missing rule right after the nearest one before it that the chain holds, at the top when none", () => {
    const reference = filter("-A INPUT -j A\n-A INPUT -m comment --comment mine -j X\n-A INPUT -j B\n-A INPUT -m comment --comment mine -j Y\n");
    const edit = new RulesetEdit(filter("-A INPUT -j B\n-A INPUT -j Z\n"));
    putBack(edit, reference, mine);
    // A is another party's and missing: X, after it, goes on top; Y right after B (Z, unknown to the reference, stays below).
    expect(edit.input()).toBe("*filter\n-I INPUT 1 -m comment --comment mine -j X\n-I INPUT 3 -m comment --comment mine -j Y\nCOMMIT\n");
    expect(edit.save()).toContain("-A INPUT -m comment --comment mine -j X\n-A INPUT -j B\n-A INPUT -m comment --comment mine -j Y\n-A INPUT -j Z\n");
  });

  it("creates the chains first, also one a rule put back jumps to, and never adds a line twice (duplicates counted)", () => {
    const reference = filter("-A INPUT -j f2b-sshd\n-A INPUT -j ACCEPT\n-A INPUT -j ACCEPT\n-A f2b-sshd -j RETURN\n", ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n");
    const edit = new RulesetEdit(filter("-A INPUT -j ACCEPT\n"));
    putBack(edit, reference, { rule: () => true, chain: () => false });
    expect(edit.input()).toBe("*filter\n-N f2b-sshd\n-I INPUT 1 -j f2b-sshd\n-I INPUT 3 -j ACCEPT\n-I f2b-sshd 1 -j RETURN\nCOMMIT\n");
  });

  it("sets policies as the reference has them, and creates a table the host lacks with its built-in chains", () => {
    const edit = new RulesetEdit(filter(""));
    putBack(edit, table("nat", ":PREROUTING ACCEPT [0:0]\n:POSTROUTING DROP [0:0]\n", "-A POSTROUTING -o eth0 -j MASQUERADE\n") + filter("", ":INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"), all, { policies: true });
    expect(edit.input()).toBe("*nat\n:POSTROUTING DROP [0:0]\n-I POSTROUTING 1 -o eth0 -j MASQUERADE\nCOMMIT\n*filter\n:INPUT DROP [0:0]\nCOMMIT\n");
  });

  it("no changes: putting back a ruleset onto itself writes nothing, nor does taking out nobody's rules", () => {
    const busy = fixture("neighbours/busy.v4");
    const edit = new RulesetEdit(busy);
    putBack(edit, busy, all, { policies: true });
    const open = new RulesetEdit(busy.replace(/ DROP \[/g, " ACCEPT ["));
    takeOut(open, none);
    expect([edit.input(), open.input()]).toEqual(["", ""]);
  });

  it("a rule that the host spells differently is there already: not added again", () => {
    const edit = new RulesetEdit(filter("-A INPUT -s 10.0.0.1/32 -p tcp -m tcp --dport 80 -j DROP\n"));
    putBack(edit, filter("-A INPUT -p tcp --dport 80 -s 10.0.0.1 -j DROP\n"), all);
    expect(edit.input()).toBe("");
  });
});

describe("what the host's own reload and flush leave", () => {
  const busy = fixture("neighbours/busy.v4");
  it("a plain iptables-restore of a file replaces the tables it names and no other", () => {
    const after = replaceTables(busy, fixture("neighbours/rules.v4"));
    expect(after).toContain("-A INPUT -p tcp -m tcp --dport 80 -j LOGDROP");
    expect(after.slice(after.indexOf("*filter"))).not.toMatch(/^-A (FORWARD|INPUT -p tcp -m multiport|f2b-sshd|DOCKER)/m); // filter: the file's
    expect(after).toContain("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"); // nat: untouched
    expect(after).toContain("--comment pulumi-conntrack -j CT --notrack"); // raw: untouched
  });

  it("iptables.init's stop: every listed table's policies ACCEPT, its rules and user chains gone", () => {
    expect(flushTables(busy, ["filter"])).toMatch(/\*filter\n:INPUT ACCEPT \[0:0\]\n:FORWARD ACCEPT \[0:0\]\n:OUTPUT ACCEPT \[0:0\]\nCOMMIT\n/);
    expect(flushTables(busy, ["filter"])).toContain("-A DOCKER -i docker0 -j RETURN"); // nat's DOCKER
  });
});
