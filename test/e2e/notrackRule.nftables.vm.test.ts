import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabHost } from "../lab/host";
import { bootVm, destroyVm, rebootVm, vmHostJson, vmSh } from "../lab/vm";
import { testStack, type TestStack } from "./harness";
import { installHelloServer, startHelloServer, trackedWhileHeld } from "./port80";

// NotrackRule on a host whose firewall is native nftables (Debian 12's nftables.service loading
// /etc/nftables.conf, whose `flush ruleset` wipes iptables rules at every restart), through the
// real pulumi CLI: INPUT drops by default and accepts SSH and NEW connections to port 80.
const vmName = "nft-notrack";
let vm: LabHost;
let httpPort: number;
let stack: TestStack;

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);

const hostConf = `#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		tcp dport 22 accept
		ct state established,related accept
		tcp dport 80 ct state new accept
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
`;

const ruleset = () => sh("nft list ruleset");
/** nftables.conf byte for byte (sh() trims its output). */
const savedConf = async () => Buffer.from(await sh("base64 -w0 /etc/nftables.conf"), "base64").toString("utf8");
const includeFile = "/etc/nftables.pulumi-conntrack.nft";


/** Starts the port-80 server and waits until it listens (systemd-run returns before perl binds). */
const startServer = () => sh(startHelloServer);

let originalRules: string;
let originalConf: string;

beforeAll(async () => {
  vm = await bootVm(vmName);
  httpPort = (await vmHostJson(vmName)).httpPort;
  // netfilter-persistent would restore iptables rules beside nftables.service: this host has only the latter.
  await sh([
    `echo ${Buffer.from(hostConf).toString("base64")} | base64 -d > /etc/nftables.conf`,
    "systemctl disable --now netfilter-persistent >/dev/null 2>&1",
    "systemctl enable --now nftables >/dev/null 2>&1",
    installHelloServer,
  ].join(" && "));
  await startServer();
  originalRules = await ruleset();
  originalConf = await savedConf();
  const connection = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey };
  stack = await testStack("notrack-rule", {
    hosts: { value: JSON.stringify([{ name: "vm", connection }]), secret: true },
    notrack: { value: JSON.stringify({ ports: [80], side: "server" }) },
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

describe("NotrackRule on a native nftables host", () => {
  it("without the rule, port 80 answers and its connections are tracked", async () => {
    expect(await trackedWhileHeld(sh, httpPort, 5)).toEqual({ ok: 5, tracked: 5 });
  });

  it("preview shows the nft rules to add and names the ct state new rule, changing nothing", async () => {
    const t = Date.now();
    const { stdout, changes } = await stack.preview();
    console.log(`[figure] NotrackRule nftables preview: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    expect(stdout).toMatch(/nft add rule inet pulumi_conntrack prerouting meta nfproto ipv4 tcp dport 80 notrack\s*: "absent → present"/);
    expect(stdout).toMatch(/nft insert rule inet filter input meta nfproto ipv4 tcp dport 80 ct state untracked accept\s*: "absent → present"/);
    expect(stdout).toContain('inet filter input: \\"tcp dport 80 ct state new accept\\" matches ct state new on port 80');
    expect(await ruleset()).toBe(originalRules);
  });

  it("up adds our table and the untracked accept ahead of the host's drop, and includes them from nftables.conf", async () => {
    const t = Date.now();
    const { changes } = await stack.up();
    console.log(`[figure] NotrackRule nftables up: ${Date.now() - t} ms`);
    expect(changes).toMatchObject({ create: 2 });
    const live = await ruleset();
    expect(live).toMatch(/chain prerouting \{\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t\tmeta nfproto ipv4 tcp dport 80 notrack comment "pulumi-conntrack"/);
    expect(live).toMatch(/policy drop;\n\t\tmeta nfproto ipv4 tcp dport 80 ct state untracked accept comment "pulumi-conntrack"\n\t\tiif "lo" accept/);
    expect(await savedConf()).toBe(`${originalConf}include "${includeFile}"\n`);
    expect(await sh(`cat ${includeFile}`)).toContain("insert rule inet filter input meta nfproto ipv4 tcp dport 80 ct state untracked accept");
    expect((await stack.up()).changes).toEqual({ same: 2 });
  });

  it("with the rule, port 80 still answers from outside and none of its connections is tracked", async () => {
    const held = await trackedWhileHeld(sh, httpPort, 5);
    console.log(`[figure] nftables host with NotrackRule: ${held.ok}/5 greeted from outside, ${held.tracked} tracked`);
    expect(held).toEqual({ ok: 5, tracked: 0 });
  });

  it("the rules come back after `systemctl restart nftables` and after a reboot, and a preview is a no-op", async () => {
    const withRules = await ruleset();
    await sh("systemctl restart nftables");
    expect(await ruleset()).toBe(withRules);
    const t = Date.now();
    await rebootVm(vmName);
    console.log(`[figure] nftables VM reboot: ${Date.now() - t} ms`);
    expect(await ruleset()).toBe(withRules);
    expect((await stack.preview()).changes).toEqual({ same: 2 });
    await startServer();
    expect(await trackedWhileHeld(sh, httpPort, 3)).toEqual({ ok: 3, tracked: 0 });
  });

  it("destroy leaves the ruleset and nftables.conf as they were, but for a rule added by hand since", async () => {
    await sh("nft add rule inet filter input tcp dport 8080 accept");
    await stack.destroy();
    const now = await ruleset();
    expect(now.replace("\t\ttcp dport 8080 accept\n", "")).toBe(originalRules);
    expect(now).toContain("tcp dport 8080 accept");
    expect(await savedConf()).toBe(originalConf);
    expect(await sh(`test -e ${includeFile} && echo there || echo gone`)).toBe("gone");
  });
});
