import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHosts, stopHosts, type LabHost } from "../lab/netns";
import { comparableRuleset, testStack, type TestStack } from "./harness";

// NotrackRule on several namespaced hosts at once, with ip6tables, beside a ConntrackLimits on
// each host (two resource types: still one connection per host for a preview).
const prefix = "pcnt";
let hosts: LabHost[];
let stack: TestStack;
const servers: ChildProcess[] = [];

const inNs = (h: LabHost, ...argv: string[]) => execFileSync("ip", ["netns", "exec", h.name, ...argv], { encoding: "utf8" }).trim();
/** A host's ruleset (iptables-save, or ip6tables-save), as rulesets are compared. */
const ruleset = (h: LabHost, tool = "iptables-save") => comparableRuleset(inNs(h, tool));
const synCount = (h: LabHost) => Number(inNs(h, "iptables", "-nvxL", "PCT-SYN").split("\n")[2].trim().split(/\s+/)[0]);
const connection = (h: LabHost) => ({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey });

/** Connects to port 80 of a host and resolves whether its server greeted us within 3 s. */
function greeted(h: LabHost): Promise<{ ok: boolean; close(): void }> {
  const s = connect({ host: h.host, port: 80 });
  return new Promise((resolve) => {
    const done = (ok: boolean) => { clearTimeout(timer); resolve({ ok, close: () => s.destroy() }); };
    const timer = setTimeout(() => done(false), 3000);
    s.on("data", (d) => d.toString().includes("hello") && done(true));
    s.on("error", () => done(false));
  });
}

let before: string[];
let before6: string[];

beforeAll(async () => {
  hosts = await startHosts(4, prefix);
  for (const [i, h] of hosts.entries()) {
    // h4 opened port 80 only to 192.0.2.1, not to us: it must stay closed to us.
    const open80 = i === 3 ? "-s 192.0.2.1/32 " : "";
    inNs(h, "sh", "-c", [
      "iptables -N PCT-SYN && iptables -A PCT-SYN -j RETURN && iptables -I INPUT -p tcp --dport 22 --syn -j PCT-SYN",
      "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
      "iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT",
      `iptables -A INPUT ${open80}-p tcp -m state --state NEW --dport 80 -j ACCEPT`,
      "iptables -P INPUT DROP",
      // h2 already has the old spelling of one of the rules, made by hand.
      i === 1 ? "iptables -t raw -A PREROUTING -p tcp --dport 80 -j NOTRACK" : "true",
    ].join(" && "));
    const server = spawn("ip", ["netns", "exec", h.name, "perl", "-e", '$SIG{PIPE} = "IGNORE"; use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 64, ReuseAddr => 1) or die; my @h; while (my $c = $s->accept) { print $c "hello\\n"; $c->flush; push @h, $c; }'], { stdio: "ignore" });
    servers.push(server);
  }
  before = hosts.map((h) => ruleset(h));
  before6 = hosts.map((h) => ruleset(h, "ip6tables-save"));
  stack = await testStack("notrack-rule", {
    hosts: { value: JSON.stringify(hosts.map((h) => ({ name: h.name, connection: connection(h) }))), secret: true },
    notrack: { value: JSON.stringify({ ports: [80], side: "server", ipVersions: [4, 6], persist: false }) },
    limits: { value: JSON.stringify({ timeouts: { udp: 40 } }) },
  });
});

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    for (const s of servers) s.kill();
    await stopHosts(prefix);
  }
});

describe("NotrackRule on namespaced hosts", () => {
  it("preview: one connection per host for two resource types, the rules per host, and nothing changed", async () => {
    const syn = hosts.map(synCount);
    const { stdout, changes } = await stack.preview();
    expect(changes).toMatchObject({ create: 9 });
    expect(hosts.map((h, i) => synCount(h) - syn[i])).toEqual([1, 1, 1, 1]);
    expect(stdout).toMatch(/ip6tables -t raw -A PREROUTING -p tcp --dport 80 -j CT --notrack\s*: "absent → present"/);
    expect(stdout).toContain("matches --state NEW on port 80");
    expect(hosts.map((h) => ruleset(h))).toEqual(before);
    for (const h of hosts) expect(inNs(h, "sh", "-c", "ls /var/lib/pulumi-conntrack 2>/dev/null | wc -l; ls /run/pulumi-conntrack.lock 2>/dev/null | wc -l")).toBe("0\n0");
  });

  it("up: port 80 keeps answering, untracked; a port open only to another source stays closed; no duplicate of a hand-made rule", async () => {
    await stack.up();
    const results = await Promise.all(hosts.map(greeted));
    try {
      expect(results.map((r) => r.ok)).toEqual([true, true, true, false]);
      expect(inNs(hosts[0], "sh", "-c", "conntrack -L -p tcp --dport 80 2>/dev/null | wc -l")).toBe("0");
    } finally {
      results.forEach((r) => r.close());
    }
    expect(ruleset(hosts[3])).toMatch(/^-A INPUT -s 192\.0\.2\.1\/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate UNTRACKED -m comment --comment "?pulumi-conntrack"? -j ACCEPT$/m);
    expect(ruleset(hosts[1]).split("\n").filter((l) => l.startsWith("-A PREROUTING") && l.includes("--dport 80"))).toEqual(["-A PREROUTING -p tcp -m tcp --dport 80 -j NOTRACK"]);
    expect(ruleset(hosts[0], "ip6tables-save")).toMatch(/-A PREROUTING -p tcp -m tcp --dport 80 -m comment --comment "?pulumi-conntrack"? -j CT --notrack/);
    expect(inNs(hosts[0], "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout")).toBe("40");
    expect((await stack.preview()).changes).toEqual({ same: 9 });
  });

  it("refresh shows a rule deleted by hand on one host only, and the next up puts it back", async () => {
    expect((await stack.refresh()).drift).toEqual({});
    inNs(hosts[2], "iptables", "-t", "raw", "-D", "PREROUTING", "-p", "tcp", "-m", "tcp", "--dport", "80", "-m", "comment", "--comment", "pulumi-conntrack", "-j", "CT", "--notrack");
    expect((await stack.refresh()).drift).toEqual({ [`notrack-${hosts[2].name}`]: ["live"] });
    const { stdout } = await stack.preview();
    expect(stdout).toMatch(/iptables -t raw -A PREROUTING -p tcp --dport 80 -j CT --notrack\s*: "absent → present"/);
    await stack.up();
    expect(ruleset(hosts[2])).toMatch(/^-A PREROUTING -p tcp -m tcp --dport 80 -m comment --comment "?pulumi-conntrack"? -j CT --notrack$/m);
    expect((await stack.preview()).changes).toEqual({ same: 9 });
  });

  it("destroy leaves exactly the rules that were there, the hand-made one included", async () => {
    await stack.destroy();
    expect(hosts.map((h) => ruleset(h))).toEqual(before);
    expect(hosts.map((h) => ruleset(h, "ip6tables-save"))).toEqual(before6);
  });
});
