import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sshArgs, type LabHost } from "../lab/host";
import { bootVm, destroyVm, rebootVm, vmExec, vmHostJson, vmSh } from "../lab/vm";
import { testStack, type TestStack } from "./harness";

// Logins other than root, hostile values that are legal, and a host whose conntrack table is
// full, on one real Debian 12 VM through the real pulumi CLI. Two stacks declare all four
// resource types on the host, one through passwordless sudo and one through sudo with a
// password, under resource names, user names and a sudo password that try to run commands
// wherever they land (shell, iptables-restore input, sysctl.d, modprobe.d, udev rules, ledger):
// each would create its own canary file; none may exist after the apply, a module reload or a
// reboot. (Values refused in check are test/e2e/badInput.netns.test.ts's corpus.)
const vmName = "e2e-privilege";
let vm: LabHost;

/** A command as root on the VM: its trimmed stdout, or an error with its exit code and stderr. */
const sh = (command: string) => vmSh(vmName, command);
const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
  const t = Date.now();
  try {
    return await work();
  } finally {
    console.log(`[figure] ${what}: ${Date.now() - t} ms`);
  }
};

/** A hostile value: it would create /var/tmp/pwned-<n> (not /tmp: it is emptied at boot) if it ever ran. */
let canaries = 0;
const canary = () => `/var/tmp/pwned-${++canaries}`;
const touch = (path = canary()) => `/usr/bin/touch ${path}`;

// Legal login names with every character the schema lets through ('.', '-', '_', a final '$').
const users = { noPassword: "_pct.sudo-nopw$", withPassword: "pct-sudo.pw", noSudo: "pct_nosudo" };
// A real sudo password, sent on stdin: quotes, substitutions, a separator, a comment, a backslash.
const sudoPassword = `p'w"$(${touch()})\`${touch()}\`;${touch()} #\\`;
const wrongPassword = `'$(${touch()})'`;

/** Resource names: each breaks out of a different kind of line if it is written unquoted. */
const names = () => [
  `'$(${touch()})'`,
  `"$(${touch()})"`,
  `\`${touch()}\``,
  `;${touch()};#`,
  `x\ninstall nf_conntrack ${touch()}`,
  `x\r\ninstall nf_conntrack_ftp ${touch()}\r\noptions nf_conntrack hashsize=1`,
  `x\nACTION=="add", SUBSYSTEM=="module", RUN+="${touch()}"`,
  `x\nnet.netfilter.nf_conntrack_max = 3\n-A INPUT -j DROP\nCOMMIT\n*raw\n-A PREROUTING -j CT --notrack`,
  `x\u2028install nf_conntrack ${touch()}\u0085`,
  `x\u0000install nf_conntrack ${touch()}`,
  `x $(${touch()}) \\`,
  `x" -m comment --comment "$(${touch()})`,
  `x' && ${touch()} && echo '`,
  `x\n#include /var/tmp/evil\n$(${touch()})`,
];

const limits = { max: 131072, hashsize: 16385, timeouts: { tcpEstablished: 7200 } };
const modules = { modules: ["nf_conntrack_ftp"] };
const notrack = { ports: [8081], side: "server" };
const firewall = { service: "netfilter-persistent", running: true, enabled: true };

/** All four types, `perType` of each (they agree, so each is an owner of the same items), named from `pool`. */
function declared(pool: string[], perType: Record<string, number>) {
  const args: Record<string, unknown> = { ConntrackLimits: limits, KernelModuleSet: modules, NotrackRule: notrack, FirewallState: firewall };
  return Object.entries(perType).flatMap(([type, n]) => Array.from({ length: n }, () => ({ type, name: `${type}${pool.shift()!}`, args: args[type] })));
}

const hostileNames = names();
const resourceCount = hostileNames.length;
/** Every resource of both stacks. */
const resources: Array<{ type: string; name: string }> = [];
let noPassword: TestStack;
let withPassword: TestStack;

const connectionAs = (user: string, sudo: unknown, extra: Record<string, unknown> = {}) =>
  ({ host: vm.host, port: vm.port, user, privateKey: vm.privateKey, hostKey: vm.hostKey, sudo, ...extra });
const stackFor = (name: string, connection: object, resources: object[]) =>
  testStack("declared", { connection: { value: JSON.stringify(connection), secret: true }, declared: { value: JSON.stringify(resources) } }, { stackName: name });

/** Every canary file anywhere on the root filesystem (a relative path would land in a command's working directory). */
const canariesFound = () => sh("find / -xdev -name 'pwned-*' 2>/dev/null; true");

const ourFiles = ["/etc/sysctl.d/90-pulumi-conntrack.conf", "/etc/modprobe.d/pulumi-conntrack.conf", "/etc/modprobe.d/00-pulumi-conntrack-modules.conf", "/etc/udev/rules.d/90-pulumi-conntrack.rules"];
/** Each line of our persisted files that isn't a comment: only what the settings ask for may be there. */
const directives = async () => {
  const out: Record<string, string[]> = {};
  for (const f of ourFiles) out[f] = (await sh(`cat ${f}`)).split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#"));
  return out;
};
const expectedDirectives = {
  "/etc/sysctl.d/90-pulumi-conntrack.conf": ["net.netfilter.nf_conntrack_max = 131072", "net.netfilter.nf_conntrack_tcp_timeout_established = 7200"],
  "/etc/modprobe.d/pulumi-conntrack.conf": ["options nf_conntrack hashsize=16896"],
  "/etc/modprobe.d/00-pulumi-conntrack-modules.conf": ["blacklist nf_conntrack_ftp", "install nf_conntrack_ftp /bin/false"],
  "/etc/udev/rules.d/90-pulumi-conntrack.rules": ['ACTION=="add", SUBSYSTEM=="module", KERNEL=="nf_conntrack", RUN+="/lib/systemd/systemd-sysctl --prefix=/net/netfilter"'],
};

/** What the host's own parsers make of the files: kmod's merged configuration and the saved ruleset. */
const parsedByTheHost = async () => ({
  kmodInstallLines: (await sh("modprobe -c | grep -E '^(install|remove) ' || true")).split("\n").filter(Boolean),
  hashsizeOptions: (await sh("modprobe -c | grep -E '^options nf_conntrack ' || true")).split("\n").filter(Boolean),
  savedRulesLoad: (await vmExec(vmName, "iptables-restore --test < /etc/iptables/rules.v4")).code,
});

beforeAll(async () => {
  vm = await timed("privilege VM boot", () => bootVm(vmName));
  // Three logins with the lab's key: passwordless sudo (by group: sudoers needs no user name),
  // sudo that asks for the password (Debian's %sudo), and no sudo at all. netfilter-persistent
  // is disabled (its rules stay loaded) so that the FirewallState that keeps it on has something
  // to change.
  const login = (user: string) => `useradd -m -s /bin/sh '${user}' && install -d -o '${user}' -m 700 '/home/${user}/.ssh' && install -o '${user}' -m 600 /root/.ssh/authorized_keys '/home/${user}/.ssh/'`;
  const passwords = `${users.withPassword}:${sudoPassword}\n${users.noSudo}:${sudoPassword}\n`;
  await sh([
    login(users.noPassword), login(users.withPassword), login(users.noSudo),
    "groupadd pct-nopasswd", `usermod -aG pct-nopasswd '${users.noPassword}'`,
    "echo '%pct-nopasswd ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/pct-nopasswd", "chmod 440 /etc/sudoers.d/pct-nopasswd",
    `usermod -aG sudo ${users.withPassword}`,
    `echo ${Buffer.from(passwords).toString("base64")} | base64 -d | chpasswd`,
    "systemctl disable netfilter-persistent 2>/dev/null",
    // The image names itself conntrack-lab in /etc/hosts, the VM $(hostname): sudo would look the
    // name up in DNS (which qemu forwards) on every call, and warn.
    'echo "127.0.1.1 $(hostname)" >> /etc/hosts',
  ].join(" && "));
  const pool = [...hostileNames];
  resources.push(...declared(pool, { ConntrackLimits: 3, KernelModuleSet: 2, NotrackRule: 2, FirewallState: 1 }));
  noPassword = await stackFor("nopasswd", connectionAs(users.noPassword, true), resources);
  // A pinned key line's comment is free text; the key is checked by its blob alone.
  const pinned = { hostKey: `${vm.hostKey} $(${touch()}) \`${touch()}\`` };
  const withPasswordResources = declared(pool, { ConntrackLimits: 2, KernelModuleSet: 2, NotrackRule: 1, FirewallState: 1 });
  withPassword = await stackFor("password", connectionAs(users.withPassword, { password: sudoPassword }, pinned), withPasswordResources);
  resources.push(...withPasswordResources);
});

afterAll(async () => {
  try {
    for (const s of [withPassword, noPassword]) {
      await s?.destroy().catch(() => undefined);
      await s?.dispose();
    }
  } finally {
    await destroyVm(vmName);
  }
});

describe("a login other than root", () => {
  it("without sudo rights, preview fails naming the host, the login, what sudo said and the fix", async () => {
    const refusedBy = (user: string) => `sudo refused to run "read host facts" as root for ${user}: `;
    const cases = [
      { user: users.noSudo, sudo: false, says: `user ${users.noSudo} isn't root and connection.sudo isn't set`, fix: "set connection.sudo = true if" },
      { user: users.noSudo, sudo: true, says: `${refusedBy(users.noSudo)}sudo: a password is required`, fix: "allow the user passwordless sudo" },
      { user: users.noSudo, sudo: { password: sudoPassword }, says: `${refusedBy(users.noSudo)}`, fix: `give ${users.noSudo} sudo rights on the host` },
      { user: users.withPassword, sudo: { password: wrongPassword }, says: `${refusedBy(users.withPassword)}`, fix: `check connection.sudo.password: it must be ${users.withPassword}'s password` },
    ];
    const errors = await timed("4 refused previews", () => Promise.all(cases.map(async (c, i) => {
      const s = await stackFor(`refused${i}`, connectionAs(c.user, c.sudo), [{ type: "ConntrackLimits", name: "limits", args: limits }]);
      try {
        return await s.preview().then((r) => `previewed: ${r.stdout}`, (err: Error) => err.message);
      } finally {
        await s.dispose();
      }
    })));
    cases.forEach((c, i) => {
      console.log(`[figure] refused ${JSON.stringify(c.sudo === false || c.sudo === true ? c.sudo : "password")} as ${c.user}: ${errors[i].split("\n").find((l) => l.includes("Fix:"))}`);
      expect(errors[i]).toContain(`${c.user}@${vm.host}:${vm.port}: ${c.says}`);
      expect(errors[i]).toContain(`Fix: ${c.fix}`);
      expect(errors[i]).not.toContain(wrongPassword);
      expect(errors[i]).not.toContain(sudoPassword);
    });
  });

  it(`up through passwordless sudo and through sudo with a password applies all four types, ${resourceCount} hostile names, and no canary appears`, async () => {
    const a = await timed(`up via passwordless sudo (${8} resources)`, () => noPassword.up());
    expect(a.changes).toMatchObject({ create: 9 });
    const b = await timed(`up via sudo with a password (${6} resources)`, () => withPassword.up());
    expect(b.changes).toMatchObject({ create: 7 });
    expect(await sh("sysctl -n net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established")).toBe("131072\n7200");
    expect(await sh("iptables-save -t raw")).toMatch(/-A PREROUTING -p tcp -m tcp --dport 8081 .*-j CT --notrack/);
    expect(await sh("systemctl is-enabled netfilter-persistent || true")).toBe("enabled");
    expect(await directives()).toEqual(expectedDirectives);
    // Every owner is named in the headers, each on the one comment line.
    const headers = await sh(`for f in ${ourFiles.join(" ")}; do grep '^# Managed by' $f; done`);
    expect(headers.split("\n")).toHaveLength(ourFiles.length);
    // Every owner, each with its line breaks made spaces, the NUL included.
    const oneLine = (name: string) => name.replace(/[\x00-\x1f\x7f\u0085\u2028\u2029]/g, " ");
    const header = (file: string) => headers.split("\n")[ourFiles.indexOf(file)];
    for (const r of resources.filter((r) => r.type === "ConntrackLimits")) expect(header("/etc/sysctl.d/90-pulumi-conntrack.conf")).toContain(`/ConntrackLimits/${oneLine(r.name)}`);
    for (const r of resources.filter((r) => r.type === "KernelModuleSet")) expect(header("/etc/modprobe.d/00-pulumi-conntrack-modules.conf")).toContain(`/KernelModuleSet/${oneLine(r.name)}`);
    expect(await parsedByTheHost()).toEqual({ kmodInstallLines: ["install nf_conntrack_ftp /bin/false"], hashsizeOptions: ["options nf_conntrack hashsize=16896"], savedRulesLoad: 0 });
    expect(await canariesFound()).toBe("");
  });

  it("after the modules our files configure are unloaded and loaded again, no canary appears", async () => {
    // The rules that hold nf_conntrack go for a moment (kept in a file), as an iptables service restart does.
    const rules = await sh("iptables-save > /root/rules.saved && iptables-save | grep -c '^-A' || true");
    await sh("for t in raw filter; do iptables -t $t -F; done; for m in xt_CT xt_conntrack xt_state nft_ct nf_conntrack_netbios_ns nf_conntrack_broadcast nf_conntrack; do modprobe -r $m 2>/dev/null; done; true");
    expect(await sh("lsmod | grep -c '^nf_conntrack ' || true")).toBe("0");
    await sh("modprobe nf_conntrack && udevadm settle");
    const ftp = await vmExec(vmName, "modprobe nf_conntrack_ftp");
    expect(ftp.stderr).toContain("Error running install command '/bin/false' for module nf_conntrack_ftp");
    expect(await sh("cat /sys/module/nf_conntrack/parameters/hashsize; sysctl -n net.netfilter.nf_conntrack_max")).toBe("16896\n131072");
    await sh("iptables-restore < /root/rules.saved");
    expect(await sh("iptables-save | grep -c '^-A' || true")).toBe(rules);
    expect(await canariesFound()).toBe("");
  });

  it("after a reboot, the values come back from our files and no canary appears", async () => {
    await timed("reboot", () => rebootVm(vmName));
    expect(await sh("modprobe nf_conntrack; udevadm settle; sysctl -n net.netfilter.nf_conntrack_max; cat /sys/module/nf_conntrack/parameters/hashsize")).toBe("131072\n16896");
    expect(await directives()).toEqual(expectedDirectives);
    expect(await canariesFound()).toBe("");
  });

  it("destroy of both stacks, each through its own sudo, removes our files and puts the service back as found; no canary appears", async () => {
    await timed("destroy via sudo with a password", () => withPassword.destroy());
    expect(await directives()).toEqual(expectedDirectives);
    await timed("destroy via passwordless sudo", () => noPassword.destroy());
    expect(await sh(`ls ${ourFiles.join(" ")} /var/lib/pulumi-conntrack 2>/dev/null || true`)).toBe("");
    expect(await sh("systemctl is-enabled netfilter-persistent || true")).toBe("disabled");
    expect(await sh("iptables-save | grep -c 8081 || true")).toBe("0");
    expect(await canariesFound()).toBe("");
    console.log(`[figure] hostile values applied: ${resourceCount} resource names, ${Object.keys(users).length} login names, 2 sudo passwords, 1 host key comment; ${canaries} canary paths, none created`);
  });
});

describe("a host whose conntrack table is full", () => {
  it("preview shows, and up fails saying, that a full table may be why and how to get in", async () => {
    // A stateful rule makes the kernel track; this session is tracked before the table fills, so
    // it lives on while new connections (SYNs) are dropped.
    await sh("iptables -A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT");
    const h = await vmHostJson(vmName);
    const filler = "perl -e 'use IO::Socket::INET; my @c = map { IO::Socket::INET->new(q(127.0.0.1:22)) } 1..24; sleep 600' & f=$!";
    const script = [filler, "sleep 3", "sysctl -qw net.netfilter.nf_conntrack_max=16", "echo ready", "read go", "kill $f", "conntrack -F >/dev/null 2>&1", "sysctl -qw net.netfilter.nf_conntrack_max=131072", "echo done"].join("; ");
    const held = spawn("ssh", sshArgs(h, h.privateKeyPath, script), { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    held.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const saw = async (text: string) => { while (!out.includes(text)) { if (held.exitCode !== null) throw new Error(`held session ended before "${text}": ${out}`); await new Promise((r) => setTimeout(r, 100)); } };
    await saw("ready");
    const root = { host: vm.host, port: vm.port, user: vm.user, privateKey: vm.privateKey, hostKey: vm.hostKey, dialErrorLimit: 2, perDialTimeout: 5 };
    const s = await stackFor("fulltable", root, [{ type: "ConntrackLimits", name: "limits", args: limits }]);
    let shown: string;
    let error: string;
    try {
      // An unreachable host doesn't stop the preview (nor the other hosts of a fleet): a warning
      // says why, whole (the plan's value is cut short); its own resource fails at the apply.
      // (With --diff, the CLI prints warnings on stderr.)
      shown = await timed("preview of a host with a full table", () => s.stack.preview({ diff: true, color: "never" }).then((r) => `${r.stdout}\n${r.stderr}`, (err: Error) => err.message));
      error = await timed("up of a host with a full table", () => s.up().then((r) => `up succeeded: ${r.stdout}`, (err: Error) => err.message));
    } finally {
      held.stdin.write("go\n");
      await saw("done");
      await s.dispose();
    }
    console.log(`[figure] full table, up: ${error.split("\n").find((l) => l.includes("unreachable"))}`);
    expect(shown).toMatch(/^warning: root@.*unreachable after 2 tries/m);
    for (const text of [shown, error]) {
      expect(text).toContain(`root@${vm.host}:${vm.port}: unreachable after 2 tries`);
      expect(text).toMatch(/if its conntrack table is full \(dmesg: \\?"nf_conntrack: table full, dropping packet\\?"\), it drops new connections/);
      expect(text).toContain("a session that is already open still works, as does the console");
      expect(text).toContain("a NotrackRule for port 22 keeps SSH out of the table");
    }
    expect(error).toMatch(/^error: root@127\.0\.0\.1:\d+: unreachable after 2 tries/m);
    expect(Number(await sh("dmesg | grep -c 'nf_conntrack: table full, dropping packet' || true"))).toBeGreaterThan(0);
  });
});
