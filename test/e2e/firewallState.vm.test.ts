import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabHost } from "../lab/host";
import { bootVm, destroyVm, vmExec, vmHostJson, vmSh } from "../lab/vm";
import { testStack, type TestStack } from "./harness";

// The seed's third remedy on a real host, through the real pulumi CLI: a Debian VM whose
// netfilter-persistent drops port 80, beside other tools' chains (Docker-, fail2ban-style, made with
// iptables commands as those tools run them), then the same VM turned into a firewalld host. One boot.
const vmName = "fw-e2e";
let vm: LabHost;
let httpPort: number;
let stack: TestStack;

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);

/**
 * iptables-save and ip6tables-save without timestamps and counters, for comparing rulesets; each
 * family's tables in name order (iptables-nft lists them in the order they were made, and a plain
 * iptables-restore of rules.v4 makes filter again).
 */
async function ruleset(): Promise<string> {
  const family = async (save: string) => (await sh(`${save} | grep -v '^#' | sed 's/ \\[[0-9]*:[0-9]*\\]$//'`)).split(/\n(?=\*)/).sort().join("\n");
  return `${await family("iptables-save")}\n${await family("ip6tables-save")}`;
}
/** The rules alone (-A lines), of both families. */
const rules = async () => (await ruleset()).split("\n").filter((l) => l.startsWith("-A "));
const unitState = async (unit: string) => ({
  active: (await vmExec(vmName, `systemctl is-active ${unit}`)).stdout.trim(),
  enabled: (await vmExec(vmName, `systemctl is-enabled ${unit}`)).stdout.trim(),
});

// One process that greets every connection on port 80 (perl is in the minimal image).
const server = 'use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 16, ReuseAddr => 1) or die "listen: $!"; while (my $c = $s->accept) { syswrite($c, "hello\\n"); close $c; }\n';

/** Whether a connection from outside the VM to its port 80 is greeted within 4 s (a firewall DROP or REJECT: no). */
function greeted(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port: httpPort });
    const done = (ok: boolean) => { clearTimeout(timer); s.destroy(); resolve(ok); };
    const timer = setTimeout(() => done(false), 4000);
    s.on("data", (d) => d.toString().includes("hello") && done(true));
    s.on("error", () => done(false));
    s.on("close", () => done(false));
  });
}

/** The netfilter-persistent host: port 80 dropped by the saved rules, plus a rule added live and never saved. */
const savedRules = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "-A INPUT -p tcp -m tcp --dport 80 -j DROP", "COMMIT", ""].join("\n");
/** The service's own rules, as iptables-save prints them: what a stop takes out. */
const serviceRules = ["-A INPUT -p tcp -m tcp --dport 80 -j DROP", "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT"];

/**
 * Neighbours, made the way the tools make them (test/fixtures/neighbours/capture.sh has the whole
 * of Docker 20.10's): Docker's DOCKER and DOCKER-USER chains with their FORWARD jumps, its FORWARD
 * policy and the MASQUERADE of its bridge network; fail2ban's sshd jail with one ban.
 */
const neighbours = [
  "iptables -N DOCKER",
  "iptables -N DOCKER-USER",
  "iptables -A DOCKER-USER -j RETURN",
  "iptables -I FORWARD -o docker0 -j DOCKER",
  "iptables -I FORWARD -j DOCKER-USER",
  "iptables -P FORWARD DROP",
  "iptables -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
  "iptables -t nat -N DOCKER",
  "iptables -t nat -A DOCKER -i docker0 -j RETURN",
  "iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
  "iptables -t nat -I POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
  "iptables -N f2b-sshd",
  "iptables -A f2b-sshd -j RETURN",
  "iptables -I INPUT -p tcp -m multiport --dports 22 -j f2b-sshd",
  "iptables -I f2b-sshd 1 -s 203.0.113.7 -j REJECT --reject-with icmp-port-unreachable",
];
/** What the neighbours do between the stop and the destroy: fail2ban bans one more, Docker publishes one more port. */
const newBan = "-A f2b-sshd -s 198.51.100.9/32 -j REJECT --reject-with icmp-port-unreachable";
const newDocker = "-A DOCKER -d 172.17.0.3/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 443 -j ACCEPT";

/** Polls `read` until `done` holds for its result (firewalld applies its rules a moment after its unit is up), up to 30 s. */
async function eventually<T>(read: () => Promise<T>, done: (got: T) => boolean): Promise<T> {
  const end = Date.now() + 30_000;
  for (;;) {
    const got = await read();
    if (done(got) || Date.now() > end) return got;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
  const t = Date.now();
  const r = await work();
  console.log(`[figure] ${what}: ${Date.now() - t} ms`);
  return r;
};

beforeAll(async () => {
  vm = await timed("FirewallState VM boot", () => bootVm(vmName));
  httpPort = (await vmHostJson(vmName)).httpPort;
  await sh([
    `echo ${Buffer.from(savedRules).toString("base64")} | base64 -d > /etc/iptables/rules.v4`,
    "systemctl restart netfilter-persistent",
    "iptables -A INPUT -p tcp --dport 8080 -j ACCEPT",
    ...neighbours,
    `echo ${Buffer.from(server).toString("base64")} | base64 -d > /root/hello.pl`,
    "systemd-run --quiet --unit pct-hello80 perl /root/hello.pl",
  ].join(" && "));
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("firewall-state", {
    host: { value: JSON.stringify({ connection }), secret: true },
    firewall: { value: JSON.stringify({ service: "netfilter-persistent", running: false, enabled: false }) },
  });
});

afterAll(async () => {
  try {
    await stack?.destroy().catch(() => undefined);
    await stack?.dispose();
  } finally {
    await destroyVm(vmName);
  }
});

describe("FirewallState on netfilter-persistent", () => {
  let before: { rules: string; unit: { active: string; enabled: string } };

  let neighbourRules: string[];

  it("the host's rules drop port 80, beside Docker's and fail2ban's", async () => {
    before = { rules: await ruleset(), unit: await unitState("netfilter-persistent") };
    expect(before.unit).toEqual({ active: "active", enabled: "enabled" });
    for (const r of serviceRules) expect(before.rules).toContain(r);
    expect(before.rules).toContain("-A FORWARD -j DOCKER-USER");
    expect(before.rules).toContain("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE");
    expect(before.rules).toContain("-A f2b-sshd -s 203.0.113.7/32 -j REJECT --reject-with icmp-port-unreachable");
    neighbourRules = (await rules()).filter((r) => !serviceRules.includes(r));
    expect(neighbourRules.length).toBeGreaterThanOrEqual(10);
    expect(await greeted()).toBe(false);
  });

  it("preview shows live → desired for running and enabled, changing nothing", async () => {
    const { stdout, changes } = await timed("FirewallState preview", () => stack.preview());
    expect(changes).toMatchObject({ create: 2 }); // the stack and the FirewallState
    expect(stdout).toMatch(/netfilter-persistent running\s*: "running → stopped"/);
    expect(stdout).toMatch(/netfilter-persistent at boot\s*: "enabled → disabled"/);
    expect(await ruleset()).toBe(before.rules);
    expect(await unitState("netfilter-persistent")).toEqual(before.unit);
  });

  it("up stops and disables it: its own rules are gone and port 80 passes, Docker's and fail2ban's stay; a second up changes nothing", async () => {
    const { changes } = await timed("FirewallState up (stop netfilter-persistent)", () => stack.up());
    expect(changes).toMatchObject({ create: 2 }); // the stack and the FirewallState
    expect(await unitState("netfilter-persistent")).toEqual({ active: "inactive", enabled: "disabled" });
    expect(await rules()).toEqual(neighbourRules);
    expect(await sh("iptables -S FORWARD | head -1")).toBe("-P FORWARD ACCEPT"); // built-in policies opened
    expect(await greeted()).toBe(true);
    expect(await sh("cat /var/lib/pulumi-conntrack/firewall-netfilter-persistent.v4")).toContain("--dport 8080 -j ACCEPT");
    expect((await stack.up()).changes).toEqual({ same: 2 });
  });

  it("while it is stopped the neighbours act; a preview that starts it names the chains its own reload would wipe, changing nothing", async () => {
    await sh(`iptables -I f2b-sshd 1 -s 198.51.100.9 -j REJECT --reject-with icmp-port-unreachable && iptables -A DOCKER ${newDocker.slice("-A DOCKER ".length)}`);
    const now = await ruleset();
    const firewall = (running: boolean) => stack.setConfig({ firewall: { value: JSON.stringify({ service: "netfilter-persistent", running, enabled: running }) } });
    await firewall(true);
    // The display cuts long strings short ("..."): the whole warning is in the preview's events.
    const warnings: string[] = [];
    const { stdout } = await stack.stack
      .preview({ diff: true, color: "never", onEvent: (e) => warnings.push(...((e.resourcePreEvent?.metadata.new?.inputs?.warnings as string[] | undefined) ?? [])) })
      .finally(() => firewall(false));
    expect(stdout).toContain("starting netfilter-persistent reloads /etc/iptables/rules.v4");
    expect(warnings.join("\n")).toContain("and with it the rules of other tools in these chains (Docker: DOCKER, DOCKER-USER, FORWARD; fail2ban: INPUT, f2b-sshd); pulumi-conntrack puts them back right after");
    expect(await ruleset()).toBe(now);
  });

  it("destroy brings back the service as found and every rule of it, also the one never saved; the neighbours' rules its reload wiped come back at their places, the ban and the port added meanwhile too", async () => {
    await timed("FirewallState destroy (restore netfilter-persistent)", () => stack.destroy());
    expect(await unitState("netfilter-persistent")).toEqual(before.unit);
    const dockerLine = "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT";
    const expected = before.rules
      .replace("-A f2b-sshd -s 203.0.113.7/32", `${newBan}\n-A f2b-sshd -s 203.0.113.7/32`)
      .replace(dockerLine, `${dockerLine}\n${newDocker}`);
    expect(await ruleset()).toBe(expected);
    expect(await greeted()).toBe(false);
    expect(await sh("ls /var/lib/pulumi-conntrack 2>/dev/null || true")).toBe("");
    // Back to the ruleset found, for the tests below.
    await sh(`iptables -D f2b-sshd ${newBan.slice("-A f2b-sshd ".length)} && iptables -D DOCKER ${newDocker.slice("-A DOCKER ".length)}`);
    expect(await ruleset()).toBe(before.rules);
  });

  it("refuses to stop a firewall that NATs, naming the rule, and changes nothing", async () => {
    await sh("iptables -t nat -A POSTROUTING -s 10.99.0.0/24 -j MASQUERADE");
    const withNat = await ruleset();
    const err = await stack.preview().then(() => undefined, (e: Error) => e);
    expect(err?.message).toContain("stopping netfilter-persistent would remove rules this host may rely on");
    expect(err?.message).toContain("iptables -t nat -A POSTROUTING -s 10.99.0.0/24 -j MASQUERADE (NAT)");
    expect(err?.message).not.toContain("172.17.0.0/16"); // Docker's: a stop leaves it
    expect(err?.message).toContain("set force: true");
    expect(await ruleset()).toBe(withNat);
    expect(await unitState("netfilter-persistent")).toEqual(before.unit);
    await sh("iptables -t nat -D POSTROUTING -s 10.99.0.0/24 -j MASQUERADE");
  });

  it("refuses, naming both, to stop the firewall a NotrackRule in the same program persists through", async () => {
    await stack.setConfig({ notrack: { value: JSON.stringify({ ports: [80], side: "server" }) } });
    const rulesNow = await ruleset();
    const err = await stack.preview().then(() => undefined, (e: Error) => e);
    await stack.stack.removeConfig("notrack");
    expect(err?.message).toMatch(/FirewallState\/firewall removes service netfilter-persistent, which \S+\/NotrackRule\/notrack needs/);
    expect(await ruleset()).toBe(rulesNow);
  });
});

describe("FirewallState on firewalld", () => {
  let before: { unit: { active: string; enabled: string }; tables: string };
  const tables = () => sh("nft list tables");

  it("a host turned to firewalld (netfilter-persistent off first: they conflict) drops port 80", async () => {
    await sh("systemctl disable --now netfilter-persistent && iptables -F && iptables -X && iptables -P FORWARD ACCEPT && iptables -t nat -F && iptables -t nat -X && systemctl enable --now firewalld");
    before = { unit: await unitState("firewalld"), tables: "" };
    expect(before.unit).toEqual({ active: "active", enabled: "enabled" });
    before.tables = await eventually(tables, (t) => t.includes("table inet firewalld"));
    expect(before.tables).toContain("table inet firewalld");
    expect(await eventually(greeted, (ok) => !ok)).toBe(false);
  });

  it('"auto" finds firewalld; up stops and disables it, its tables go and port 80 passes', async () => {
    await stack.setConfig({ firewall: { value: JSON.stringify({ service: "auto", running: false, enabled: false }) } });
    const { stdout } = await stack.preview();
    expect(stdout).toContain('service \\"auto\\" is firewalld on this host: it is the firewall running here');
    expect(stdout).toMatch(/firewalld running\s*: "running → stopped"/);
    await timed("FirewallState up (stop firewalld)", () => stack.up());
    expect(await unitState("firewalld")).toEqual({ active: "inactive", enabled: "disabled" });
    expect(await tables()).not.toContain("firewalld");
    expect(await greeted()).toBe(true);
    expect((await stack.up()).changes).toEqual({ same: 2 });
  });

  it("destroy brings firewalld back, running and enabled, with its tables", async () => {
    await timed("FirewallState destroy (restore firewalld)", () => stack.destroy());
    expect(await unitState("firewalld")).toEqual(before.unit);
    expect(await eventually(tables, (t) => t === before.tables)).toBe(before.tables);
    expect(await eventually(greeted, (ok) => !ok)).toBe(false);
  });
});
