import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHosts, stopHosts, type LabHost } from "../lab/netns";
import { testStack } from "./harness";

// Bad and hostile input through the real CLI: each declaration is previewed on its own (the engine
// stops at the first failed check), must be refused naming the field, and nothing may reach the
// host: not the program's fact read, not the provider's (SYNs to port 22 are counted there).
const prefix = "pcbi";
let host: LabHost;
const inNs = (...argv: string[]) => execFileSync("ip", ["netns", "exec", host.name, ...argv], { encoding: "utf8" }).trim();
const synCount = () => Number(inNs("iptables", "-nvxL", "PCT-SYN").split("\n")[2].trim().split(/\s+/)[0]);

type Case = [type: string, args: Record<string, unknown>, property: RegExp];
const limits = (args: Record<string, unknown>, property: RegExp): Case => ["ConntrackLimits", args, property];
const notrack = (args: Record<string, unknown>, property: RegExp): Case => ["NotrackRule", { ports: [80], ...args }, property];
const conn = (connection: Record<string, unknown>, property: RegExp): Case => ["ConntrackLimits", { timeouts: { udp: 30 }, connection }, property];

const hostile = ["80;id", "$(touch /tmp/pwned)", "`touch /tmp/pwned`", "80\n-A INPUT -j ACCEPT", "80' -j ACCEPT '", '80" -j ACCEPT "', "80\u0000", "80 --dport 22", "0x50", "-1"];
const corpus: Case[] = [
  // Connection fields (each other field points at the lab host).
  conn({ host: "" }, /connection\.host.*must not be empty/),
  conn({ host: "a b" }, /connection\.host.*DNS name or an IP address/),
  conn({ host: "-oProxyCommand=touch /tmp/pwned" }, /connection\.host/),
  conn({ host: "h;touch /tmp/pwned" }, /connection\.host/),
  conn({ host: "$(touch /tmp/pwned)" }, /connection\.host/),
  conn({ host: "h\nx" }, /connection\.host/),
  conn({ port: 0 }, /connection\.port.*1-65535/),
  conn({ port: 65536 }, /connection\.port.*1-65535/),
  conn({ port: 22.5 }, /connection\.port.*whole number/),
  conn({ port: "22" }, /connection\.port/),
  conn({ user: "root;touch /tmp/pwned" }, /connection\.user.*plain login name/),
  conn({ user: "$(id)" }, /connection\.user/),
  conn({ user: "-oProxyCommand=x" }, /connection\.user/),
  conn({ user: "" }, /connection\.user/),
  conn({ password: 123 }, /connection\.password/),
  conn({ password: "" }, /connection\.password.*must not be empty/),
  conn({ privateKeyPassword: ["x"] }, /connection\.privateKeyPassword/),
  conn({ hostKey: "not a key" }, /connection\.hostKey.*OpenSSH public key line or a SHA256/),
  conn({ hostKey: "ssh-ed25519 AAAA\ncommand=\"touch /tmp/pwned\" ssh-ed25519 AAAA" }, /connection\.hostKey/),
  conn({ dialErrorLimit: 0 }, /connection\.dialErrorLimit/),
  conn({ dialErrorLimit: 1.5 }, /connection\.dialErrorLimit.*whole number/),
  conn({ perDialTimeout: -1 }, /connection\.perDialTimeout.*positive/),
  conn({ commandTimeout: 0 }, /connection\.commandTimeout.*positive/),
  conn({ sudo: true }, /connection\.sudo.*only for a user other than root/),
  conn({ user: "ops", sudo: { password: "" } }, /connection\.sudo\.password.*must not be empty/),
  conn({ user: "ops", sudo: "yes" }, /connection\.sudo/),
  conn({ insecureSkipHostKeyCheck: true }, /connection\.insecureSkipHostKeyCheck.*either hostKey or insecureSkipHostKeyCheck/),
  conn({ proxy: { host: "" } }, /connection\.proxy\.host.*must not be empty/),
  conn({ proxy: { host: "b;touch /tmp/pwned" } }, /connection\.proxy\.host/),
  conn({ proxy: { host: "b", port: 0 } }, /connection\.proxy\.port/),
  conn({ hots: "typo" }, /connection.*hots/),
  // ConntrackLimits.
  limits({ max: -5 }, /max.*at least 1/),
  limits({ max: 0 }, /max.*at least 1/),
  limits({ max: 1.5 }, /max.*whole number/),
  limits({ max: 1e12 }, /max.*at most 268435456/),
  limits({ max: "262144" }, /max.*must be a number/),
  limits({ max: "1;touch /tmp/pwned" }, /max/),
  limits({ hashsize: 0 }, /hashsize/),
  limits({ hashsize: 2 ** 30 }, /hashsize.*at most/),
  limits({ timeouts: { tcpEstablshed: 10 } }, /timeouts.*unknown timeout name/),
  limits({ timeouts: {} }, /timeouts.*at least one timeout/),
  limits({ timeouts: { udp: 0 } }, /timeouts\.udp.*at least 1/),
  limits({ timeouts: { udp: "30\nnet.ipv4.ip_forward = 1" } }, /timeouts\.udp/),
  limits({ persist: "yes" }, /persist/),
  limits({}, /nothing to manage/),
  // NotrackRule: hostile ports, then the other fields.
  ...hostile.map((p): Case => notrack({ ports: [p] }, /ports/)),
  notrack({ ports: [] }, /ports.*at least one port/),
  notrack({ ports: [0] }, /ports.*1-65535/),
  notrack({ ports: [65536] }, /ports.*1-65535/),
  notrack({ ports: ["80:70"] }, /ports.*from <= to/),
  notrack({ ports: ["1:2:3"] }, /ports/),
  notrack({ ports: 80 }, /ports.*list/),
  notrack({ protocol: "icmp" }, /protocol.*"tcp" or "udp"/),
  notrack({ protocol: "tcp -j ACCEPT" }, /protocol/),
  notrack({ side: "inbound" }, /side/),
  notrack({ ipVersions: [5] }, /ipVersions/),
  notrack({ ipVersions: [] }, /ipVersions/),
  notrack({ acceptUntracked: "true" }, /acceptUntracked/),
  notrack({ force: 1 }, /force/),
  notrack({ comment: "x\" -j ACCEPT" }, /comment/),
  // FirewallState.
  ["FirewallState", { service: "firewalld; touch /tmp/pwned", running: false, enabled: false }, /service/],
  ["FirewallState", { service: "sshd", running: false, enabled: false }, /service/],
  ["FirewallState", { service: "auto", running: "no", enabled: false }, /running/],
  ["FirewallState", { service: "auto", enabled: false }, /running/],
  ["FirewallState", { service: "auto", running: false, enabled: false, force: "yes" }, /force/],
  // KernelModuleSet: hostile module names (a newline would put an install line into modprobe.d).
  ["KernelModuleSet", { modules: ["nf_conntrack\ninstall nf_conntrack /bin/touch /tmp/pwned"] }, /modules/],
  ["KernelModuleSet", { modules: ["nf_conntrack; touch /tmp/pwned"] }, /modules/],
  ["KernelModuleSet", { modules: ["$(touch /tmp/pwned)"] }, /modules/],
  ["KernelModuleSet", { modules: ["../../tmp/evil"] }, /modules/],
  ["KernelModuleSet", { modules: ["-r"] }, /modules/],
  ["KernelModuleSet", { modules: [] }, /modules/],
  ["KernelModuleSet", { modules: ["xt_state"], state: "gone" }, /state/],
];

beforeAll(async () => {
  [host] = await startHosts(1, prefix);
  inNs("sh", "-c", "iptables -N PCT-SYN && iptables -A PCT-SYN -j RETURN && iptables -I INPUT -p tcp --dport 22 --syn -j PCT-SYN");
});

afterAll(async () => {
  await stopHosts(prefix);
});

describe("bad input", () => {
  it(`refuses each of ${corpus.length} malformed or hostile inputs in check, naming the field, with no connection to the host`, async () => {
    expect(corpus.length).toBeGreaterThanOrEqual(50);
    const connection = { host: host.host, port: host.port, user: host.user, privateKey: host.privateKey, hostKey: host.hostKey };
    const refusals: string[] = [];
    // Four previews at a time: each is a whole pulumi run (CLI, program, provider). A preview
    // creates nothing, so each worker keeps one stack and only changes its declaration.
    let next = 0;
    const worker = async (w: number) => {
      const stack = await testStack("declared", { connection: { value: JSON.stringify(connection), secret: true } }, { stackName: `bad-worker${w}` });
      try {
        while (next < corpus.length) {
          const i = next++;
          const [type, args] = corpus[i];
          await stack.setConfig({ declared: { value: JSON.stringify([{ type, name: `bad-${i}`, args }]) } });
          refusals[i] = await stack.preview().then((r) => `previewed: ${r.stdout}`, (err: Error) => err.message);
        }
      } finally {
        await stack.dispose();
      }
    };
    const t = Date.now();
    await Promise.all(Array.from({ length: 4 }, (_, w) => worker(w)));
    console.log(`[figure] bad input: ${corpus.length} previews refused in ${Date.now() - t} ms; SYNs to the host: ${synCount()}`);
    corpus.forEach(([type, args, property], i) => {
      const error = refusals[i].split("\n").find((l) => l.startsWith("error:")) ?? refusals[i];
      expect(error, `${type} ${JSON.stringify(args)}`).toMatch(new RegExp(`resource 'bad-${i}'.*${property.source}`, "s"));
    });
    expect(synCount()).toBe(0);
    expect(existsSync("/tmp/pwned")).toBe(false);
  });
});
