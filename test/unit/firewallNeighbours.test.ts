import { describe, expect, it } from "vitest";
import { firewallStateSettingsSchema } from "../../sdk/firewallState.schema";
import { firewallsReader } from "../../provider/facts/firewalls";
import type { HostFacts } from "../../provider/facts/host";
import { revertSteps } from "../../provider/engine/lockoutGuard";
import { planHost } from "../../provider/engine/plan";
import { serviceRunning } from "../../provider/engine/serviceItems";
import { claimsOf } from "../../provider/engine/transaction";
import { wantFirewallState } from "../../provider/firewallState/plan";
import { facts, fixture } from "./helpers";

// FirewallState on a busy host: netfilter-persistent's own rules beside Docker 20.10's, fail2ban's
// and kube-proxy's, and a NotrackRule's (test/fixtures/neighbours: iptables-save output captured
// from the commands each tool runs). A stop takes out the service's lines only; a start puts back
// what is missing at its place, also what the unit's own reload wiped; nothing replaces a table.
// The inputs below were also fed to real iptables (nft and legacy) in a throwaway namespace: the
// stop left every neighbour rule, the start and both lockout reverts gave back the ruleset found.

const busy = { v4: fixture("neighbours/busy.v4"), v6: fixture("neighbours/busy.v6") };
const rulesFiles = { "/etc/iptables/rules.v4": fixture("neighbours/rules.v4"), "/etc/iptables/rules.v6": fixture("neighbours/rules.v6") };
const copyPath = (f: string) => `/var/lib/pulumi-conntrack/firewall-netfilter-persistent.${f}`;

/** The busy host's rulesets after a stop, as iptables prints them: the service's lines gone, policies ACCEPT. */
const service = /^(-A (INPUT -i lo |INPUT -m conntrack |INPUT -p tcp -m tcp --dport (22|80|8080) |INPUT -p ipv6-icmp |LOGDROP )|:LOGDROP )/;
const stoppedText = (save: string) => save.split("\n").filter((l) => !service.test(l)).join("\n").replace(":INPUT DROP", ":INPUT ACCEPT").replace(":FORWARD DROP", ":FORWARD ACCEPT");
/** fail2ban banned one more address after the stop. */
const newBan = "-A f2b-sshd -s 198.51.100.9/32 -j REJECT --reject-with icmp-port-unreachable";
const stopped = { v4: stoppedText(busy.v4).replace("-A f2b-sshd -s 203.0.113.7/32", `${newBan}\n-A f2b-sshd -s 203.0.113.7/32`), v6: stoppedText(busy.v6) };

const firewalls = firewallsReader.parse(fixture("firewalls/debian12-default.txt").split("\n").filter((l) => l.trim() !== ""));

/** The lab VM's facts with netfilter-persistent (active or not) holding these rulesets, and its rules files. */
function host(rules: { v4: string; v6: string }, active: boolean, files: Record<string, string> = {}): HostFacts {
  const base = facts("debian12-vm-loaded");
  const unit = { ...firewalls.units["netfilter-persistent"]!, active: active ? "active" : "inactive" };
  return { ...base, firewalls: { ...firewalls, units: { ...firewalls.units, "netfilter-persistent": unit } }, iptables: { ...base.iptables, ...rules }, files: { ...base.files, ...rulesFiles, ...files } };
}
const settings = (s: Record<string, unknown>) => firewallStateSettingsSchema.parse({ service: "netfilter-persistent", ...s });
const stop = { running: false, enabled: false };

/** The iptables-restore calls among `steps`: the command and the input it is fed. */
function restores(steps: Array<{ shell: string }>): Array<{ command: string; input: string }> {
  return steps.flatMap((s) => {
    const m = /^printf %s '?([A-Za-z0-9+/=]+)'? \| base64 -d \| (\S*-restore .*)$/.exec(s.shell);
    return m ? [{ command: m[2], input: Buffer.from(m[1], "base64").toString("utf8") }] : [];
  });
}

/** What the stop takes out: the service's lines exactly as iptables-save printed them. */
const takeOutV4 = `*filter
-D INPUT -i lo -j ACCEPT
-D INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-D INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-D INPUT -p tcp -m tcp --dport 80 -j LOGDROP
-D INPUT -p tcp -m tcp --dport 8080 -j ACCEPT
-D LOGDROP -m limit --limit 5/min -j LOG --log-prefix "fw drop: "
-D LOGDROP -j DROP
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
-X LOGDROP
COMMIT
`;
const takeOutV6 = `*filter
-D INPUT -i lo -j ACCEPT
-D INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-D INPUT -p ipv6-icmp -j ACCEPT
-D INPUT -p tcp -m tcp --dport 22 -j ACCEPT
:INPUT ACCEPT [0:0]
COMMIT
`;

/**
 * After netfilter-persistent's own start replaced the filter table with rules.v4's: the service's
 * rule rules.v4 lacks (8080, added by hand) and the FORWARD policy as the copy had them, then the
 * neighbours' chains and rules the reload took, at their places (Docker's and kube-proxy's above
 * the service's FORWARD and INPUT rules, as they were), and the ban added since on top of its chain.
 */
const neighboursChainsAndRules = `-N DOCKER
-N DOCKER-ISOLATION-STAGE-1
-N DOCKER-ISOLATION-STAGE-2
-N DOCKER-USER
-N KUBE-FORWARD
-N KUBE-SERVICES
-N f2b-sshd
-I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd
-I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-I FORWARD 2 -j DOCKER-USER
-I FORWARD 3 -j DOCKER-ISOLATION-STAGE-1
-I FORWARD 4 -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-I FORWARD 5 -o docker0 -j DOCKER
-I FORWARD 6 -i docker0 ! -o docker0 -j ACCEPT
-I FORWARD 7 -i docker0 -o docker0 -j ACCEPT
-I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I DOCKER 1 -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-I DOCKER-ISOLATION-STAGE-1 1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-I DOCKER-ISOLATION-STAGE-1 2 -j RETURN
-I DOCKER-ISOLATION-STAGE-2 1 -o docker0 -j DROP
-I DOCKER-ISOLATION-STAGE-2 2 -j RETURN
-I DOCKER-USER 1 -j RETURN
-I KUBE-FORWARD 1 -m conntrack --ctstate INVALID -j DROP
-I KUBE-FORWARD 2 -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-I KUBE-FORWARD 3 -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-I f2b-sshd 1 -s 203.0.113.7/32 -j REJECT --reject-with icmp-port-unreachable
-I f2b-sshd 2 -j RETURN
`;
const putBackV4 = (extra: string) => `*filter
-I INPUT 5 -p tcp -m tcp --dport 8080 -j ACCEPT
:FORWARD DROP [0:0]
${neighboursChainsAndRules}${extra}COMMIT
`;
const putBackV6 = `*filter
-N f2b-sshd
-I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd
-I f2b-sshd 1 -s 2001:db8::7/128 -j REJECT --reject-with icmp6-port-unreachable
-I f2b-sshd 2 -j RETURN
COMMIT
`;
const noflush = (tool: string) => `${tool} -w 30 --noflush`;

describe("FirewallState beside Docker, fail2ban and kube-proxy", () => {
  it("other tools' rules don't block a stop; the service's own NAT still does", () => {
    const f = host(busy, true);
    expect(wantFirewallState(settings(stop), f).blockers).toEqual([]);
    const nat = busy.v4.replace("-A POSTROUTING -m comment", "-A POSTROUTING -s 10.99.0.0/24 -o eth0 -j MASQUERADE\n-A POSTROUTING -m comment");
    expect(wantFirewallState(settings(stop), host({ ...busy, v4: nat }, true)).blockers).toEqual([
      "stopping netfilter-persistent would remove rules this host may rely on:\n  iptables -t nat -A POSTROUTING -s 10.99.0.0/24 -o eth0 -j MASQUERADE (NAT)\nremove or move them first, or set force: true",
    ]);
  });

  it("a stop takes out exactly the service's lines, one --noflush transaction per family, before stopping the unit", () => {
    const steps = serviceRunning.set([{ name: "netfilter-persistent", to: "stopped" }], host(busy, true));
    expect(restores(steps)).toEqual([
      { command: noflush("iptables-restore"), input: takeOutV4 },
      { command: noflush("ip6tables-restore"), input: takeOutV6 },
    ]);
    expect(steps.map((s) => s.name).slice(-3)).toEqual([
      "take out the iptables rules of netfilter-persistent line by line, other tools' rules left in place",
      "take out the ip6tables rules of netfilter-persistent line by line, other tools' rules left in place",
      "stop netfilter-persistent.service",
    ]);
    // The copy keeps everything live, neighbours included: destroy restores the service's part of it.
    expect(steps.find((s) => s.name === `write ${copyPath("v4")}` && s.shell.includes("base64 -d"))?.shell).toContain(Buffer.from(busy.v4).toString("base64"));
  });

  it("destroy after the stop: netfilter-persistent's reload wipes the neighbours' chains, which go back at their places with the service's unsaved rule; a ban added since stays on top", () => {
    const f = host(stopped, false, { [copyPath("v4")]: busy.v4, [copyPath("v6")]: busy.v6 });
    const steps = serviceRunning.set([{ name: "netfilter-persistent", to: "running" }], f);
    expect(steps.map((s) => s.name)).toEqual([
      "start netfilter-persistent.service",
      "put back line by line the iptables rules netfilter-persistent had and other tools' rules its start removed",
      "put back line by line the ip6tables rules netfilter-persistent had and other tools' rules its start removed",
      `remove ${copyPath("v4")}`,
      `remove ${copyPath("v6")}`,
    ]);
    expect(restores(steps)).toEqual([
      { command: noflush("iptables-restore"), input: putBackV4(`-I f2b-sshd 1 ${newBan.slice("-A f2b-sshd ".length)}\n`) },
      { command: noflush("ip6tables-restore"), input: putBackV6 },
    ]);
  });

  it("the preview of a start names the other tools' chains netfilter-persistent's own reload would wipe", () => {
    const f = host(stopped, false, { [copyPath("v4")]: busy.v4, [copyPath("v6")]: busy.v6 });
    expect(wantFirewallState(settings({ running: true, enabled: true }), f).warnings).toContain(
      "starting netfilter-persistent reloads /etc/iptables/rules.v4 and /etc/iptables/rules.v6 with a plain iptables-restore, which replaces every table they name, and with it the rules of other tools in these chains (Docker: DOCKER, DOCKER-ISOLATION-STAGE-1, DOCKER-ISOLATION-STAGE-2, DOCKER-USER, FORWARD; fail2ban: INPUT, f2b-sshd; kube-proxy: FORWARD, KUBE-FORWARD, KUBE-SERVICES, OUTPUT); pulumi-conntrack puts them back right after, line by line, as they were just before (a systemctl start by hand would leave them gone)",
    );
    // Without a file to reload, the start wipes nothing: no warning.
    const noFiles = { ...f, files: { ...f.files, "/etc/iptables/rules.v4": undefined, "/etc/iptables/rules.v6": undefined } } as unknown as HostFacts;
    expect(wantFirewallState(settings({ running: true, enabled: true }), noFiles).warnings.filter((w) => w.includes("other tools"))).toEqual([]);
  });

  it("the lockout guard's revert of the stop starts the unit and puts back, by lines, what the stop and the reload took", () => {
    const f = host(busy, true);
    const plan = planHost({ owner: "o", claims: claimsOf(wantFirewallState(settings(stop), f), "p/s/FirewallState/fw"), facts: f, backends: [] });
    const steps = revertSteps(f, plan) ?? [];
    expect(restores(steps)).toEqual([
      { command: noflush("iptables-restore"), input: putBackV4("") },
      { command: noflush("ip6tables-restore"), input: putBackV6 },
    ]);
    expect(steps.map((s) => s.name)).toContain("start netfilter-persistent.service");
  });

  it("the lockout guard's revert of a start stops the unit and takes out, by lines, the service's rules it brought", () => {
    const f = host(stopped, false, { [copyPath("v4")]: busy.v4, [copyPath("v6")]: busy.v6 });
    const steps = serviceRunning.revert(f, ["netfilter-persistent"]);
    expect(restores(steps)).toEqual([
      { command: noflush("iptables-restore"), input: takeOutV4 },
      { command: noflush("ip6tables-restore"), input: takeOutV6 },
    ]);
    expect(steps.map((s) => s.name)).toContain("stop netfilter-persistent.service");
  });

  it("no input ever declares a user chain (under --noflush, `:CHAIN -` empties an existing one) or runs a restore without --noflush", () => {
    const all = [
      ...serviceRunning.set([{ name: "netfilter-persistent", to: "stopped" }], host(busy, true)),
      ...serviceRunning.set([{ name: "netfilter-persistent", to: "running" }], host(stopped, false, { [copyPath("v4")]: busy.v4 })),
      ...serviceRunning.revert(host(busy, true), ["netfilter-persistent"]),
    ];
    for (const r of restores(all)) {
      expect(r.command).toContain("--noflush");
      expect(r.input).not.toMatch(/^:\S+ - /m);
    }
  });
});

describe("RHEL's iptables.service beside Docker and fail2ban", () => {
  // Its own stop (iptables.init) sets every policy to ACCEPT and flushes and deletes every chain of
  // the tables /proc/net/ip_tables_names lists; its start is a plain iptables-restore of /etc/sysconfig/iptables.
  function rhel(active: boolean, legacyTables: string[]): HostFacts {
    const f = host(busy, active, { "/etc/sysconfig/iptables": fixture("neighbours/rules.v4") });
    const units = { ...f.firewalls.units, iptables: { id: "iptables.service", exists: true, active: active ? "active" : "inactive", enabled: "enabled" }, "netfilter-persistent": { id: "netfilter-persistent.service", exists: false, active: "inactive", enabled: "" } };
    return { ...f, firewalls: { ...f.firewalls, units }, iptables: { ...f.iptables, legacyTables: { v4: legacyTables, v6: [] } } };
  }

  it("a stop runs the unit's stop first (it may save the rules), then puts back the neighbours its flush took, in one transaction", () => {
    const steps = serviceRunning.set([{ name: "iptables", to: "stopped" }], rhel(true, ["raw", "nat", "filter"]));
    const names = steps.map((s) => s.name);
    expect(names.indexOf("stop iptables.service")).toBeLessThan(names.indexOf("take out the iptables rules of iptables line by line, other tools' rules left in place"));
    const [{ input }] = restores(steps);
    expect(input).not.toContain("-D ");
    expect(input).toContain("-I PREROUTING 1 -p tcp -m tcp --dport 443 -m comment --comment pulumi-conntrack -j CT --notrack");
    expect(input).toContain(neighboursChainsAndRules);
    expect(input).toContain("-I POSTROUTING 2 -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE");
    expect(input).not.toMatch(/LOGDROP|--dport 8080 -j ACCEPT/);
  });

  it("where its stop flushes nothing (no legacy tables listed: the nft backend), the stop takes out the service's lines itself", () => {
    expect(restores(serviceRunning.set([{ name: "iptables", to: "stopped" }], rhel(true, [])))).toEqual([{ command: noflush("iptables-restore"), input: takeOutV4 }]);
  });

  it("the preview of that stop names what its own flush takes", () => {
    const w = wantFirewallState(firewallStateSettingsSchema.parse({ service: "iptables", ...stop }), rhel(true, ["raw", "nat", "filter"]));
    expect(w.blockers).toEqual([]);
    expect(w.warnings.join("\n")).toContain("stopping iptables runs iptables.init's stop, which flushes every table, and with it the rules of other tools in these chains (Docker: DOCKER, ");
  });
});
