import { describe, expect, it } from "vitest";
import { firewallStateSettingsSchema } from "../../sdk/firewallState.schema";
import { firewallsReader, parseNftTables } from "../../provider/facts/firewalls";
import type { HostFacts } from "../../provider/facts/host";
import { declareIntents } from "../../provider/engine/hostIntents";
import { liveValue } from "../../provider/engine/items";
import { revertSteps } from "../../provider/engine/lockoutGuard";
import { ledgerPath, renderLedger } from "../../provider/engine/ledger";
import { planHost } from "../../provider/engine/plan";
import { nftReplaceInput, serviceEnabled, serviceRunning } from "../../provider/engine/serviceItems";
import { claimsOf } from "../../provider/engine/transaction";
import { firewallItemDisplay, firewallStateKind } from "../../provider/firewallState/provider";
import { firewallStateIntents, resolveAuto, wantFirewallState } from "../../provider/firewallState/plan";
import { facts, fixture } from "./helpers";

/** The firewalls section captured on the lab VM in one state (test/fixtures/firewalls/README.md). */
const firewalls = (name: string) => firewallsReader.parse(fixture(`firewalls/${name}.txt`).split("\n").filter((l) => l.trim() !== ""));

/** The lab VM's facts with these firewall units and this IPv4 ruleset. */
function host(state: string, v4: string, files: Record<string, string> = {}): HostFacts {
  const base = facts("debian12-vm-loaded");
  return { ...base, firewalls: firewalls(state), iptables: { ...base.iptables, v4, v6: "" }, files: { ...base.files, ...files } };
}
const settings = (s: Record<string, unknown>) => firewallStateSettingsSchema.parse(s);
const want = (s: Record<string, unknown>, f: HostFacts) => wantFirewallState(settings(s), f);
const stop = { service: "netfilter-persistent", running: false, enabled: false };

const dropPort80 = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 80 -j DROP
COMMIT
`;
const emptied = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
`;
const withNat = `${dropPort80}*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.99.0.0/24 -j MASQUERADE
COMMIT
`;
// Docker's chains as `iptables-save` prints them on a host running one published container.
const docker = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
`;

describe("firewalls facts", () => {
  it("reads every unit from one systemctl show, Debian's iptables.service as the alias it is", () => {
    const f = firewalls("debian12-default");
    expect(f.systemd).toBe(true);
    expect(f.units["netfilter-persistent"]).toEqual({ id: "netfilter-persistent.service", exists: true, active: "active", enabled: "enabled", file: "" });
    expect(f.units.firewalld).toMatchObject({ exists: true, active: "inactive", enabled: "disabled" });
    expect(f.units.ufw).toMatchObject({ exists: false });
    expect(f.units.iptables?.id).toBe("netfilter-persistent.service");
  });

  it("reads the nftables tables when nf_tables is loaded", () => {
    const f = firewalls("debian12-firewalld");
    expect(f.units.firewalld).toMatchObject({ active: "active", enabled: "enabled" });
    expect(f.nft?.map((t) => `${t.family} ${t.name}`)).toContain("inet firewalld");
    expect(parseNftTables("table inet x {\n\tchain c {\n\t}\n}\n")).toEqual([{ family: "inet", name: "x", text: "table inet x {\n\tchain c {\n\t}\n}\n" }]);
  });
});

describe("FirewallState planner", () => {
  it("stopping netfilter-persistent: live → desired for running and enabled", () => {
    const f = host("debian12-default", dropPort80);
    const w = want(stop, f);
    expect(w.blockers).toEqual([]);
    expect(w.claims).toEqual({ "service-running:netfilter-persistent": { value: "stopped", persist: false }, "service-enabled:netfilter-persistent": { value: "disabled", persist: false } });
    const plan = planHost({ owner: "o", claims: claimsOf(w, "p/s/FirewallState/fw"), facts: f, backends: firewallStateKind.backends });
    expect(plan.changes.map((c) => `${firewallItemDisplay(c.item)}: ${c.from} → ${c.to}`)).toEqual(["netfilter-persistent at boot: enabled → disabled", "netfilter-persistent running: running → stopped"]);
  });

  it("an inactive unit whose rules are still loaded is running (netfilter-persistent stop with FLUSH_ON_STOP=0)", () => {
    const f = host("debian12-default", dropPort80);
    const inactive = { ...f, firewalls: { ...f.firewalls, units: { ...f.firewalls.units, "netfilter-persistent": { ...f.firewalls.units["netfilter-persistent"]!, active: "inactive" } } } };
    expect(liveValue("service-running:netfilter-persistent", inactive)).toBe("running");
    expect(liveValue("service-running:netfilter-persistent", { ...inactive, iptables: { ...inactive.iptables, v4: emptied } })).toBe("stopped");
  });

  it("plans nothing once stopped and disabled", () => {
    const f = host("debian12-default", emptied);
    const stopped = { ...f, firewalls: { ...f.firewalls, units: { ...f.firewalls.units, "netfilter-persistent": { id: "netfilter-persistent.service", exists: true, active: "inactive", enabled: "disabled" } } } };
    const w = want(stop, stopped);
    const plan = planHost({ owner: "o", claims: claimsOf(w, "p/s/FirewallState/fw"), facts: stopped, backends: [] });
    expect(plan.changes).toEqual([]);
  });

  it("refuses to stop a firewall that NATs, naming the rule; force goes ahead with a warning", () => {
    const f = host("debian12-default", withNat);
    expect(want(stop, f).blockers).toEqual([
      "stopping netfilter-persistent would remove rules this host may rely on:\n  iptables -t nat -A POSTROUTING -s 10.99.0.0/24 -j MASQUERADE (NAT)\nremove or move them first, or set force: true",
    ]);
    const forced = want({ ...stop, force: true }, f);
    expect(forced.blockers).toEqual([]);
    expect(forced.warnings).toContainEqual(expect.stringContaining("-j MASQUERADE (NAT)"));
    // Starting it, or leaving it running, loses nothing: no refusal.
    expect(want({ ...stop, running: true }, f).blockers).toEqual([]);
  });

  it("Docker's rules and forwarding don't block a stop: it takes out the service's own lines only (firewallNeighbours.test.ts)", () => {
    expect(want(stop, host("debian12-default", docker)).blockers).toEqual([]);
    // A forwarding rule of the service's own still does.
    const forwarding = docker.replace("-A DOCKER-USER -j RETURN", "-A DOCKER-USER -j RETURN\n-A FORWARD -s 10.99.0.0/24 -j ACCEPT");
    expect(want(stop, host("debian12-default", forwarding)).blockers).toEqual([
      "stopping netfilter-persistent would remove rules this host may rely on:\n  iptables -t filter -A FORWARD -s 10.99.0.0/24 -j ACCEPT (forwarding)\nremove or move them first, or set force: true",
    ]);
  });

  it('"auto" on Debian 11 (systemd 247 loads iptables.service, an alias through update-alternatives, under its own name): one firewall, netfilter-persistent', () => {
    // Captured on the lab's Debian 11 VM with one rule live (test/fixtures/firewalls/README.md).
    const f = host("debian11-default", dropPort80);
    expect(f.firewalls.units.iptables).toMatchObject({ id: "iptables.service", enabled: "alias", file: "/usr/lib/systemd/system/netfilter-persistent.service" });
    expect(resolveAuto(f)).toEqual({ unit: "netfilter-persistent", why: "it is the firewall running here" });
    expect(want({ ...stop, service: "auto" }, f).blockers).toEqual([]);
    expect(Object.keys(want({ ...stop, service: "iptables" }, f).claims)).toEqual(["service-running:netfilter-persistent", "service-enabled:netfilter-persistent"]);
  });

  it('"auto" finds the firewall that runs, says so, and asks to name one when it can\'t tell', () => {
    expect(resolveAuto(host("debian12-default", dropPort80)).unit).toBe("netfilter-persistent");
    const fd = host("debian12-firewalld", emptied);
    expect(resolveAuto(fd).unit).toBe("firewalld");
    expect(want({ ...stop, service: "auto" }, fd).warnings).toContain('service "auto" is firewalld on this host: it is the firewall running here');
    // firewalld running beside a netfilter-persistent that still holds rules: two candidates.
    expect(want({ ...stop, service: "auto" }, host("debian12-firewalld", dropPort80)).blockers).toEqual([
      'service "auto": several firewalls run here (firewalld, netfilter-persistent): name one in service',
    ]);
  });

  it('"auto" stays on the firewall it stopped (the ledger remembers), so the next preview is a no-op', () => {
    const f = host("debian12-firewalld", emptied);
    const stopped = { ...f, firewalls: { ...f.firewalls, nft: [], units: { ...f.firewalls.units, firewalld: { id: "firewalld.service", exists: true, active: "inactive", enabled: "disabled" } } } };
    const ledger = { format: 1 as const, items: { "service-running:firewalld": { original: "running", owners: { o: { value: "stopped", persist: false, label: "p/s/FirewallState/fw" } } } } };
    expect(resolveAuto(stopped).unit).toBeUndefined();
    expect(resolveAuto({ ...stopped, files: { [ledgerPath]: renderLedger(ledger) } })).toEqual({ unit: "firewalld", why: "pulumi-conntrack stopped it here" });
  });

  it("a firewall that isn't installed: nothing to stop, and refused when asked to run", () => {
    const f = host("debian12-default", emptied);
    expect(want({ service: "ufw", running: false, enabled: false }, f)).toMatchObject({ claims: {}, blockers: [], warnings: ["ufw.service is not installed on this host: nothing to stop"] });
    expect(want({ service: "ufw", running: true, enabled: true }, f).blockers).toEqual(["ufw.service is not installed on this host: install it, or set running and enabled to false"]);
  });

  it("refuses to disable the firewall another stack's NotrackRule persists its rules through, naming it; a stop alone leaves them", () => {
    const rule = "rule:v4:raw:PREROUTING:-p tcp --dport 80 -j CT --notrack";
    const ledger = { format: 1 as const, items: { [rule]: { original: null, owners: { x: { value: "present", persist: true, label: "web/prod/NotrackRule/http" } } } } };
    const f = host("debian12-default", dropPort80, { [ledgerPath]: renderLedger(ledger) });
    const refusal = "web/prod/NotrackRule/http keeps its rules in netfilter-persistent, which this FirewallState disables: destroy it first, or set force: true";
    expect(want(stop, f).blockers).toContain(refusal);
    expect(want({ ...stop, running: true }, f).blockers).toEqual([refusal]);
    expect(want({ ...stop, enabled: true }, f).blockers).not.toContain(refusal);
  });

  it("declares the service it stops, which clashes with a NotrackRule persisting through it", () => {
    const f = host("debian12-default", dropPort80);
    const intents = firewallStateIntents(settings({ ...stop, service: "iptables" }), f);
    expect(intents).toEqual({ needs: [], removes: ["service netfilter-persistent"] });
    expect(declareIntents("fw-unit:22", "p/s/NotrackRule/http", { needs: ["module nf_conntrack", "service netfilter-persistent"], removes: [] })).toEqual([]);
    expect(declareIntents("fw-unit:22", "p/s/FirewallState/fw", intents)).toEqual(["p/s/FirewallState/fw removes service netfilter-persistent, which p/s/NotrackRule/http needs"]);
    expect(firewallStateIntents(settings({ ...stop, running: true, enabled: true }), f).removes).toEqual([]);
  });

  it("refuses bad settings naming the field", () => {
    const r = firewallStateSettingsSchema.safeParse({ service: "pf", running: "no", enabled: false });
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => i.path.join("."))).toEqual(["service", "running"]);
    expect(firewallStateSettingsSchema.safeParse({ service: "ufw", running: false }).error!.issues[0].path).toEqual(["enabled"]);
  });
});

describe("service items", () => {
  const f = host("debian12-default", dropPort80);
  const names = (steps: Array<{ name: string }>) => steps.map((s) => s.name);

  it("a stop saves the live rules, takes out the service's own lines and stops the unit", () => {
    const steps = serviceRunning.set([{ name: "netfilter-persistent", to: "stopped" }], host("debian12-default", withNat));
    expect(names(steps)).toEqual([
      "create /var/lib/pulumi-conntrack", "write /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4", "chmod /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4",
      "flush /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4 to disk", "write /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4", "flush /var/lib/pulumi-conntrack to disk",
      "take out the iptables rules of netfilter-persistent line by line, other tools' rules left in place",
      "stop netfilter-persistent.service",
    ]);
    const input = "*filter\n-D INPUT -p tcp -m tcp --dport 80 -j DROP\nCOMMIT\n*nat\n-D POSTROUTING -s 10.99.0.0/24 -j MASQUERADE\nCOMMIT\n";
    expect(steps[6].shell).toBe(`printf %s ${Buffer.from(input).toString("base64")} | base64 -d | iptables-restore -w 30 --noflush`);
  });

  it("ufw's rules loaded by `ufw enable` with its unit inactive: its unit is started first, so that its own stop takes them out", () => {
    const ufwLive = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:ufw-user-input - [0:0]\n-A INPUT -j ufw-user-input\n-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    const base = host("debian12-default", ufwLive);
    const ufw = (active: string) => ({ ...base, firewalls: { ...base.firewalls, units: { ...base.firewalls.units, ufw: { id: "ufw.service", exists: true, active, enabled: "enabled", file: "/usr/lib/systemd/system/ufw.service" } } } });
    expect(names(serviceRunning.set([{ name: "ufw", to: "stopped" }], ufw("inactive")))).toEqual(["start ufw.service, so that its stop takes out the rules `ufw enable` loaded", "stop ufw.service"]);
    expect(names(serviceRunning.set([{ name: "ufw", to: "stopped" }], ufw("active")))).toEqual(["stop ufw.service"]);
  });

  it("a start puts back the rules a stop saved that aren't live, then forgets them", () => {
    const saved = { ...f, iptables: { ...f.iptables, v4: emptied }, files: { ...f.files, "/var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4": dropPort80 } };
    const steps = serviceRunning.set([{ name: "netfilter-persistent", to: "running" }], saved);
    expect(names(steps)).toEqual(["start netfilter-persistent.service", "put back line by line the iptables rules netfilter-persistent had and other tools' rules its start removed", "remove /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4"]);
    expect(steps[1].shell).toContain(Buffer.from("*filter\n-I INPUT 1 -p tcp -m tcp --dport 80 -j DROP\nCOMMIT\n").toString("base64"));
    // Already live (someone started it by hand): nothing to put back.
    expect(names(serviceRunning.set([{ name: "netfilter-persistent", to: "running" }], { ...saved, iptables: f.iptables }))).not.toContain("put back line by line the iptables rules netfilter-persistent had and other tools' rules its start removed");
  });

  it("the lockout guard puts each changed unit back as found: netfilter-persistent running with its rules, firewalld stopped", () => {
    expect(names(serviceRunning.revert(f, ["netfilter-persistent", "firewalld"]))).toEqual([
      "start netfilter-persistent.service", "put back line by line the iptables rules netfilter-persistent had and other tools' rules its start removed",
      "remove /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4", "remove /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v6", "remove /var/lib/pulumi-conntrack/firewall-netfilter-persistent.nft",
      "stop firewalld.service", "remove /var/lib/pulumi-conntrack/firewall-firewalld.nft",
    ]);
    expect(names(serviceEnabled.revert(f, ["firewalld", "netfilter-persistent"]))).toEqual([
      "disable firewalld.service", "flush firewalld.service's links to disk", "enable netfilter-persistent.service", "flush netfilter-persistent.service's links to disk",
    ]);
    expect(names(serviceEnabled.set([{ name: "firewalld", to: "enabled" }], f))).toEqual(["enable firewalld.service", "flush firewalld.service's links to disk"]);
  });

  it("every FirewallState change runs under the lockout guard, whose revert starts the firewall and puts its rules back", () => {
    const plan = planHost({ owner: "o", claims: claimsOf(want(stop, f), "p/s/FirewallState/fw"), facts: f, backends: [] });
    const revert = names(revertSteps(f, plan) ?? []);
    expect(revert).toContain("enable netfilter-persistent.service");
    expect(revert).toContain("start netfilter-persistent.service");
    expect(revert).toContain("put back line by line the iptables rules netfilter-persistent had and other tools' rules its start removed");
    expect(revert).toContain(`remove ${ledgerPath}`);
  });

  it("nft tables come back whole: each replaced in one nft -f", () => {
    const t = { family: "inet", name: "filter", text: "table inet filter {\n}\n" };
    expect(nftReplaceInput([t])).toBe("table inet filter\ndelete table inet filter\ntable inet filter {\n}\n");
  });
});

describe("the copy a stop keeps", () => {
  const path = "/var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4";
  const names = (steps: Array<{ name: string }>) => steps.map((s) => s.name);
  const stale = host("debian12-default", dropPort80, { [path]: "*filter\n-A INPUT -j DROP\nCOMMIT\n" });

  it("the first stop replaces a copy a failed run left behind", () => {
    expect(names(serviceRunning.set([{ name: "netfilter-persistent", to: "stopped" }], stale))).toContain(`write ${path}`);
    const empty = { ...stale, iptables: { ...stale.iptables, v4: "" } };
    expect(names(serviceRunning.set([{ name: "netfilter-persistent", to: "stopped" }], empty))).toContain(`remove ${path}`);
  });

  it("a later stop (started by hand since) keeps the first copy: destroy restores what was there before the first owner", () => {
    const ledger = { format: 1 as const, items: { "service-running:netfilter-persistent": { original: "running", owners: { o: { value: "stopped", persist: false, label: "p/s/FirewallState/fw" } } } } };
    const again = { ...stale, files: { ...stale.files, [ledgerPath]: renderLedger(ledger) } };
    expect(names(serviceRunning.set([{ name: "netfilter-persistent", to: "stopped" }], again))).toEqual(["take out the iptables rules of netfilter-persistent line by line, other tools' rules left in place", "stop netfilter-persistent.service"]);
  });
});
