import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { check } from "../../provider/index";
import { HostError } from "../../provider/transport/errors";
import { closeAll, connectionsOpened, session } from "../../provider/transport/pool";
import { connectionSchema } from "../../sdk/connection";
import { toTarget } from "../../provider/transport/target";
import { hostExec, startHosts, stopHosts, type LabHost } from "./netns";

// Real sshd in network namespaces: authentication, host keys, retries and pooling, measured from
// the host's side where it matters (SYN counters in the namespace, not our own bookkeeping).
let hosts: LabHost[];
const prefix = "pctr";

beforeAll(async () => {
  hosts = await startHosts(2, prefix);
});
afterAll(async () => {
  await closeAll();
  await stopHosts(prefix);
});

const targetFor = (h: LabHost, extra: Record<string, unknown> = {}) =>
  toTarget(connectionSchema.parse({ host: h.host, port: h.port, user: h.user, privateKey: h.privateKey, hostKey: h.hostKey, ...extra }));

const expectHostError = async (p: Promise<unknown>): Promise<HostError> => {
  const err = await p.then(() => undefined, (e) => e);
  expect(err).toBeInstanceOf(HostError);
  return err as HostError;
};

describe("SSH transport against real sshd", () => {
  it("runs a script as root over a verified connection", async () => {
    const s = await session(targetFor(hosts[0]));
    const r = await s.run("id -u; hostname", "whoami");
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout.trim().split("\n")).toEqual(["0", hosts[0].name]);
  });

  it("refuses a changed host key and shows the fingerprint the host presented", async () => {
    const presented = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", "-"], { input: hosts[0].hostKey, encoding: "utf8" }).split(" ")[1];
    const err = await expectHostError(session(targetFor(hosts[0], { hostKey: hosts[1].hostKey })));
    expect(err.layer).toBe("hostkey");
    expect(err.message).toContain(`host key changed: the host presented ${presented}`);
    expect(err.message).toContain(hosts[0].host);
  });

  it("refuses an unknown host when there is no pinned key and known_hosts lacks it", async () => {
    const home = process.env.HOME;
    process.env.HOME = "/nonexistent-pct-home";
    try {
      const t = toTarget(connectionSchema.parse({ host: hosts[1].host, privateKey: hosts[1].privateKey }));
      const err = await expectHostError(session(t));
      expect(err.message).toMatch(/unknown host key SHA256:[A-Za-z0-9+/]{43}/);
      expect(err.message).toContain("connection.hostKey");
    } finally {
      process.env.HOME = home;
    }
  });

  it("gives a clear authentication error for a wrong key", async () => {
    const wrong = execFileSync("sh", ["-c", "d=$(mktemp -d) && ssh-keygen -q -t ed25519 -N '' -f $d/k && cat $d/k && rm -r $d"], { encoding: "utf8" });
    const err = await expectHostError(session(targetFor(hosts[1], { privateKey: wrong })));
    expect(err.layer).toBe("authentication");
    expect(err.message).toBe(`root@${hosts[1].host}:22: authentication failed for user root (tried privateKey). Fix: check connection.user and that the key or password is authorized on the host`);
  });

  it("gives up on a host that drops packets within dialErrorLimit × perDialTimeout", async () => {
    // Port 2222 on a lab host silently drops SYNs, like a firewalled or powered-off machine.
    execFileSync("ip", ["netns", "exec", hosts[1].name, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "DROP"]);
    const started = Date.now();
    const err = await expectHostError(session(targetFor(hosts[1], { port: 2222, dialErrorLimit: 3, perDialTimeout: 1 })));
    const elapsed = (Date.now() - started) / 1000;
    expect(err.message).toContain("unreachable after 3 tries");
    expect(elapsed).toBeGreaterThanOrEqual(2.5);
    expect(elapsed).toBeLessThanOrEqual(3 * 1 + 1);
  });

  it("retries a refused port dialErrorLimit times, then names host and fix", async () => {
    const err = await expectHostError(session(targetFor(hosts[1], { port: 2223, dialErrorLimit: 2, perDialTimeout: 2 })));
    expect(err.layer).toBe("connect");
    expect(err.message).toMatch(new RegExp(`^root@${hosts[1].host.replace(/\./g, "\\.")}:2223: unreachable after 2 tries \\(.*ECONNREFUSED.*\\)\\. Fix: check that the host is up`));
  });

  it("refuses a malformed connection in check, before any connection is opened", async () => {
    const syns = () => Number(/^\s*(\d+)/.exec(execFileSync("ip", ["netns", "exec", hosts[0].name, "iptables", "-nvxL", "PCT-SYN"], { encoding: "utf8" }).split("\n")[2])![1]);
    execFileSync("sh", ["-c", `ip netns exec ${hosts[0].name} sh -c 'iptables -N PCT-SYN; iptables -A PCT-SYN -j RETURN; iptables -I INPUT -p tcp --dport 22 --syn -j PCT-SYN'`]);
    const before = syns();
    const opened = connectionsOpened.size;
    const base = { resourceType: "ConntrackLimits", owner: "bad", timeouts: { udp: 10 } };
    const cases: Array<[Record<string, unknown>, Record<string, unknown> | undefined, string]> = [
      [{ host: hosts[0].host, port: 0 }, undefined, "connection.port"],
      [{ host: "" }, undefined, "connection.host"],
      [{ host: hosts[0].host, user: "root", sudo: true }, undefined, "connection.sudo"],
      [{ host: hosts[0].host, port: "22" }, undefined, "connection.port"],
      [{ host: hosts[0].host, hostKey: "nonsense" }, undefined, "connection.hostKey"],
    ];
    for (const [connection, credentials, property] of cases) {
      const result = (await check({}, { ...base, connection, credentials } as never)) as { failures?: { property: string }[] };
      expect(result.failures?.map((f) => f.property)).toContain(property);
    }
    expect(connectionsOpened.size).toBe(opened);
    expect(syns()).toBe(before);
  });
});

describe("sudo for a non-root user", () => {
  // Users live in the host's private /etc; their home in its private /tmp.
  beforeAll(async () => {
    const h = hosts[0];
    const setup = [
      "set -e",
      "for u in ops nosudo; do id $u >/dev/null 2>&1 || useradd -M -d /tmp/$u -s /bin/sh $u; mkdir -p /tmp/$u/.ssh; cp /root/.ssh/authorized_keys /tmp/$u/.ssh/; chown -R $u /tmp/$u; chmod 700 /tmp/$u/.ssh; done",
      "echo 'ops:s3cret-sudo-pw' | chpasswd; echo 'nosudo:x-unused-x' | chpasswd",
      "echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops; chmod 440 /etc/sudoers.d/ops",
    ].join("\n");
    const r = await hostExec(h, "sh -s", { input: setup });
    expect(r.stderr).toBe("");
  });

  it("runs the script as root through sudo with a password, which stays out of output", async () => {
    const s = await session(targetFor(hosts[0], { user: "ops", sudo: { password: "s3cret-sudo-pw" } }));
    const r = await s.run("id -u; echo done", "whoami via sudo");
    expect(r).toMatchObject({ code: 0, stdout: "0\ndone\n" });
    expect(r.stderr).not.toContain("s3cret");
  });

  it("names the host and the fix when sudo refuses", async () => {
    const wrongPassword = await expectHostError((await session(targetFor(hosts[0], { user: "ops", sudo: { password: "wrong" } }))).run("id -u", "whoami via sudo"));
    expect(wrongPassword.layer).toBe("sudo");
    expect(wrongPassword.message).toContain(`ops@${hosts[0].host}:22: sudo refused to run "whoami via sudo" as root`);
    expect(wrongPassword.message).not.toContain("wrong");
    const notAllowed = await expectHostError((await session(targetFor(hosts[0], { user: "nosudo", sudo: true }))).run("id -u", "whoami via sudo"));
    expect(notAllowed.layer).toBe("sudo");
    expect(notAllowed.message).toContain("Fix: allow the user passwordless sudo, or pass connection.sudo = { password }");
  });
});

describe("bastion", () => {
  it("tunnels through a proxy host (here to the bastion's own loopback sshd)", async () => {
    const bastion = hosts[1];
    const t = toTarget(connectionSchema.parse({
      host: "127.0.0.1", privateKey: bastion.privateKey, hostKey: bastion.hostKey,
      proxy: { host: bastion.host, privateKey: bastion.privateKey, hostKey: bastion.hostKey },
    }));
    const r = await (await session(t)).run("hostname", "hostname");
    expect(r.stdout.trim()).toBe(bastion.name);
  });
  it("verifies the bastion's host key too", async () => {
    const t = toTarget(connectionSchema.parse({
      host: "127.0.0.1", privateKey: hosts[1].privateKey, hostKey: hosts[1].hostKey,
      proxy: { host: hosts[1].host, privateKey: hosts[1].privateKey, hostKey: hosts[0].hostKey },
    }));
    const err = await expectHostError(session(t));
    expect(err.message).toContain("via bastion");
    expect(err.message).toContain("host key changed");
  });
});

describe("credentials stay out of errors", () => {
  it("never echoes a private key or password in an error", async () => {
    const key = hosts[0].privateKey;
    const err = await expectHostError(session(targetFor(hosts[1], { user: "nobody", password: "hunter2-secret" })));
    expect(err.message).not.toContain("hunter2-secret");
    expect(err.message).not.toContain(key.split("\n")[1]);
  });
});
