// Preview at fleet speed, measured (issue 7): for each N, on N namespaced lab hosts, a plain program
// with two ConntrackLimits per host (a loop, no Fleet helper) run through the real `pulumi` CLI
// (first `up --yes`, no-op `preview`, no-op `up --yes`, `refresh --yes`), beside the references:
// the FLOOR (one parallel `ssh` round trip per host running the facts script the prefetch runs for
// ConntrackLimits, 32 at a time, curve25519, a fresh connection each) and the ENGINE's own time (no-op
// `pulumi preview` of a do-nothing dynamic resource, two per host, already created; its no-op up and
// refresh are printed too). Prints wall times, SSH connections and exec round trips per host
// (counted on the hosts), peak RSS of the program and provider processes, and client-side CPU.
// A benchmark, not a test: it asserts nothing.
//
// PYINFRA: the same work in pyinfra (two `server.sysctl` with persist per host), as the issue's
// reference: its change detection (`pyinfra INVENTORY deploy.py`, answered "no" at the prompt: it
// reads each host's sysctls and persist file, as a preview does) and `--dry` (in pyinfra 3 this only
// connects: it prints "Skipping change detection"). pyinfra comes from a venv in
// ~/.cache/pulumi-conntrack/pyinfra, made on first use with pip from PyPI; set PYINFRA=/path/to/pyinfra
// to use another. Without either (no python3-venv, no PyPI), the table says "not measured" and why.
// SSHD CPU: CPU seconds of the hosts' sshd processes and everything they ran (cutime + cstime of each
// host's sshd listener, which reaps its per-connection children) across a command: the host side of
// the work, which the lab's hosts take from the same 2 cores.
//
// Usage (root, from the repo root, with dist/ built):
//   source scripts/env.sh && node bench/preview-fleet.mjs [--repeat R] [N...]    (default N: 10 50 100 200)
// --repeat R runs the engine preview and our no-op preview R times each and reports the median (the
// floor always runs max(3, R) times). The default set takes ~25 min on 2 cores. Never run two at once.
// Hosts: lab/netns/hosts.sh, prefix "pcbn" (removed after each N, also on failure or Ctrl-C).
// Throwaway projects under /tmp/pcbn-*, each with its own file backend and PULUMI_HOME.
//
// How each figure is counted:
// - wall time: spawn → exit of the `pulumi` command. `up --yes` and `refresh --yes` include their
//   preview run (each run has its own program and provider processes);
// - connections/host: SYNs to port 22 in each namespace (an iptables chain PCT-SYN, as
//   test/e2e/conntrackLimits.fleet.test.ts does), before → after the command;
// - round trips/host: sshd's "Starting session: command" lines (one per exec channel: a facts
//   read, the host-lock holder, an apply script) in the host's sshd.log. The lab's sshds log at
//   INFO, which doesn't print them: this script switches each of ITS hosts' sshd_config to
//   `LogLevel VERBOSE` and sends sshd SIGHUP (it re-execs in place) — nothing in lab/ changes;
// - RSS: VmHWM from /proc/PID/status of the node processes running @pulumi/pulumi/cmd/run
//   (program) and @pulumi/pulumi/cmd/dynamic-provider (provider) below the `pulumi` process,
//   sampled every 100 ms; the max over every such process of the command;
// - client CPU: cutime + cstime of this script across the command (the whole reaped process tree).
import { execFileSync, spawn } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";

const require = createRequire(import.meta.url);
const repo = resolve(import.meta.dirname, "..");
const hostsScript = join(repo, "lab", "netns", "hosts.sh");
const prefix = "pcbn";
const floorParallel = 32;

// ---------------------------------------------------------------------------------------------
// arguments
let repeat = 1;
const sizes = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--repeat") repeat = Number(argv[++i]);
  else if (/^\d+$/.test(argv[i])) sizes.push(Number(argv[i]));
  else {
    console.error("usage: node bench/preview-fleet.mjs [--repeat R] [N...]");
    process.exit(2);
  }
}
if (!(repeat >= 1)) throw new Error("--repeat needs a positive number");
if (sizes.length === 0) sizes.push(10, 50, 100, 200);
if (process.getuid?.() !== 0) throw new Error("needs root (network namespaces)");

// ---------------------------------------------------------------------------------------------
// helpers
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const sec = (ms) => (ms / 1000).toFixed(1);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
const now = () => Number(process.hrtime.bigint()) / 1e6;

function hostsDown() {
  try {
    execFileSync("bash", [hostsScript, "down", prefix], { stdio: ["ignore", "ignore", "inherit"] });
  } catch (err) {
    log(`hosts.sh down ${prefix} failed: ${err.message}`);
  }
}

const projectDirs = [];
function cleanup() {
  hostsDown();
  for (const d of projectDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    log(`${sig}: cleaning up`);
    for (const c of running) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    cleanup();
    process.exit(130);
  });
}
const running = new Set();

/**
 * Peak RSS (VmHWM, kB) of the program and provider processes below `root`, sampled until stop(),
 * their CPU, and when the first of each kind appeared (ms after t0): the provider process starts
 * at the program's first registration and loads Pulumi's runtime before it can serve a `check`.
 */
function rssSampler(root, t0) {
  const kinds = new Map(); // pid -> "program" | "provider" | null
  const peak = { program: 0, provider: 0 };
  const counts = { program: new Set(), provider: new Set() };
  const cpu = { program: new Map(), provider: new Map() };
  const parent = new Map(); // pid -> ppid, read once per process
  const firstSeen = { program: undefined, provider: undefined };
  const sample = () => {
    const seen = new Set();
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      const pid = Number(d);
      seen.add(pid);
      if (parent.has(pid)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        parent.set(pid, Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      } catch {
        /* gone */
      }
    }
    for (const pid of parent.keys()) if (!seen.has(pid)) parent.delete(pid);
    for (const pid of parent.keys()) {
      let p = pid;
      let depth = 0;
      while (p && p !== root && depth++ < 12) p = parent.get(p);
      if (p !== root || pid === root) continue;
      // only a match is remembered: a child between fork and exec still shows its parent's argv
      if (!kinds.has(pid)) {
        try {
          const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
          if (/@pulumi\/pulumi\/cmd\/dynamic-provider/.test(cmd) && !cmd.includes("require.resolve")) kinds.set(pid, "provider");
          else if (/@pulumi\/pulumi\/cmd\/run/.test(cmd) && !cmd.includes("require.resolve")) kinds.set(pid, "program");
        } catch {
          continue;
        }
      }
      const kind = kinds.get(pid);
      if (!kind) continue;
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        if (m) {
          firstSeen[kind] ??= now() - t0;
          peak[kind] = Math.max(peak[kind], Number(m[1]));
          counts[kind].add(pid);
        }
        // CPU time (utime + stime, in clock ticks of 1/100 s) as last seen
        const f = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
        cpu[kind].set(pid, (Number(fields[11]) + Number(fields[12])) / 100);
      } catch {
        /* gone */
      }
    }
  };
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      const sum = (m) => [...m.values()].reduce((a, b) => a + b, 0);
      return { programMB: peak.program / 1024, providerMB: peak.provider / 1024, programProcs: counts.program.size, providerProcs: counts.provider.size, programCpu: sum(cpu.program), providerCpu: sum(cpu.provider), programStart: firstSeen.program, providerStart: firstSeen.provider };
    },
  };
}

/**
 * CPU seconds of this process's reaped descendants (cutime + cstime): around a command, the CPU
 * its whole process tree used (the CLI, language host, program, provider; for the floor every
 * ssh client), a figure the other jobs on the machine don't inflate the way they inflate wall time.
 */
function childCpu() {
  const f = readFileSync("/proc/self/stat", "utf8");
  const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

/**
 * Watches the hosts' sshd logs during a command: when the first and last exec session started and
 * when the last connection closed (for a preview: the window of the program's fact reads).
 */
function sshdTimeline(hosts, t0) {
  const files = hosts.map((h) => join(h.dir, "sshd", "sshd.log"));
  const count = () => {
    let starts = 0;
    let closes = 0;
    for (const f of files) {
      const text = readFileSync(f, "utf8");
      starts += (text.match(/^Starting session: /gm) ?? []).length;
      closes += (text.match(/^Disconnected from user /gm) ?? []).length;
    }
    return { starts, closes };
  };
  const base = count();
  let last = base;
  const marks = { firstStart: undefined, lastStart: undefined, lastClose: undefined };
  const poll = () => {
    const c = count();
    const t = now() - t0;
    if (c.starts > last.starts) {
      marks.firstStart ??= t;
      marks.lastStart = t;
    }
    if (c.closes > last.closes) marks.lastClose = t;
    last = c;
  };
  const timer = setInterval(poll, 250);
  return {
    stop() {
      clearInterval(timer);
      poll();
      return marks;
    },
  };
}

/** Runs a command, timing it; with rss, samples the pulumi processes' peak RSS meanwhile. */
function runTimed(cmd, args, { cwd, env, input, rss = false, timeline } = {}) {
  return new Promise((resolvePromise, reject) => {
    const t0 = now();
    const cpu0 = childCpu();
    const watch = timeline ? sshdTimeline(timeline, t0) : undefined;
    // its own process group, so an interrupted run can stop the CLI with its plugins and program
    const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ["pipe", "pipe", "pipe"], detached: true });
    running.add(child);
    const sampler = rss ? rssSampler(child.pid, t0) : undefined;
    const out = [];
    const err = [];
    child.stdout.on("data", (d) => out.push(d));
    child.stderr.on("data", (d) => err.push(d));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = now() - t0;
      running.delete(child);
      resolvePromise({ code, ms, cpu: childCpu() - cpu0, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), rss: sampler?.stop(), timeline: watch?.stop() });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? "");
  });
}

// ---------------------------------------------------------------------------------------------
// lab hosts and host-side counters
function hostsUp(n) {
  const out = execFileSync("bash", [hostsScript, "up", String(n), prefix], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  const file = out.trim().split("\n").pop();
  const hosts = JSON.parse(readFileSync(file, "utf8"));
  const dir = dirname(file);
  hosts.forEach((h) => (h.dir = join(dir, `h${h.name.slice(h.name.lastIndexOf("-h") + 2)}`)));
  // SYN counter per namespace (as the fleet e2e test does), then sshd at LogLevel VERBOSE
  execFileSync(
    "bash",
    ["-c", 'for n in "$@"; do ip netns exec "$n" sh -c "iptables -N PCT-SYN && iptables -A PCT-SYN -j RETURN && iptables -I INPUT -p tcp --dport 22 --syn -j PCT-SYN" || exit 1; done', "_", ...hosts.map((h) => h.name)],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  for (const h of hosts) {
    const cfg = join(h.dir, "sshd", "sshd_config");
    writeFileSync(cfg, readFileSync(cfg, "utf8").replace(/^LogLevel INFO$/m, "LogLevel VERBOSE"));
    h.sshdPid = Number(readFileSync(join(h.dir, "sshd.pid"), "utf8").trim());
    process.kill(h.sshdPid, "SIGHUP");
  }
  // wait until each sshd listens again and logs at VERBOSE
  const deadline = Date.now() + 30_000;
  for (const h of hosts) {
    for (;;) {
      const text = readFileSync(join(h.dir, "sshd", "sshd.log"), "utf8");
      const restarted = text.lastIndexOf("Received SIGHUP; restarting.");
      if (restarted >= 0 && text.indexOf("Server listening on", restarted) > 0) break;
      if (Date.now() > deadline) throw new Error(`${h.name}: sshd did not come back after SIGHUP`);
      execFileSync("sleep", ["0.05"]);
    }
  }
  return { hosts, file };
}

function synCounts(hosts) {
  const out = execFileSync("bash", ["-c", 'for n in "$@"; do ip netns exec "$n" iptables -nvxL PCT-SYN | sed -n 3p; done', "_", ...hosts.map((h) => h.name)], { encoding: "utf8" });
  const lines = out.trim().split("\n");
  if (lines.length !== hosts.length) throw new Error(`read ${lines.length} SYN counters for ${hosts.length} hosts`);
  return lines.map((l) => Number(l.trim().split(/\s+/)[0]));
}

function sshdCounts(hosts) {
  return hosts.map((h) => {
    const text = readFileSync(join(h.dir, "sshd", "sshd.log"), "utf8");
    return { execs: (text.match(/^Starting session: /gm) ?? []).length, auths: (text.match(/^Accepted publickey for /gm) ?? []).length };
  });
}

/** CPU seconds the hosts' sshd listeners have reaped from their children (see SSHD CPU above). */
function sshdCpu(hosts) {
  let ticks = 0;
  for (const h of hosts) {
    const f = readFileSync(`/proc/${h.sshdPid}/stat`, "utf8");
    const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[13]) + Number(fields[14]);
  }
  return ticks / 100;
}

function snapshot(hosts) {
  return { syn: synCounts(hosts), sshd: sshdCounts(hosts) };
}

/** Per-host deltas → "1" when every host saw the same, else "min–max (mean m)". */
function spread(values) {
  const min = Math.min(...values);
  const max = Math.max(...values);
  if (min === max) return String(min);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return `${min}–${max} (mean ${mean.toFixed(1)})`;
}

function deltas(hosts, before, after) {
  return {
    connections: spread(after.syn.map((v, i) => v - before.syn[i])),
    authenticated: spread(after.sshd.map((v, i) => v.auths - before.sshd[i].auths)),
    roundTrips: spread(after.sshd.map((v, i) => v.execs - before.sshd[i].execs)),
  };
}

// ---------------------------------------------------------------------------------------------
// the floor: one parallel ssh round trip per host with the provider's facts script
// The script the program's prefetch runs for a host with ConntrackLimits on it (provider/prefetch.ts:
// the engine's own readers plus ConntrackLimits'; not every reader: NotrackRule's iptables facts
// are for hosts with that resource).
function factsScript() {
  const { readerList } = require(join(repo, "dist/provider/facts/host"));
  const { alwaysRead } = require(join(repo, "dist/provider/engine/hostFacts"));
  const { conntrackLimitsKind } = require(join(repo, "dist/provider/conntrackLimits/provider"));
  const { batchScript } = require(join(repo, "dist/provider/facts/reader"));
  const names = [...new Set([...alwaysRead, ...conntrackLimitsKind.facts])];
  return { names, script: batchScript(readerList(names)) };
}

async function floorOnce(hosts, script) {
  const opts = (h) => [
    "-F", "/dev/null", "-i", h.privateKeyPath, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${h.knownHostsPath}`, "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "CheckHostIP=no", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "LogLevel=ERROR",
    "-o", "KexAlgorithms=curve25519-sha256", "-p", String(h.port), `${h.user}@${h.host}`, "sh -s",
  ];
  const t0 = now();
  const cpu0 = childCpu();
  const sshd0 = sshdCpu(hosts);
  let next = 0;
  const failures = [];
  const worker = async () => {
    while (next < hosts.length) {
      const h = hosts[next++];
      const r = await runTimed("ssh", opts(h), { input: script });
      if (r.code !== 0 || !r.stdout.includes("@@end")) failures.push(`${h.name}: exit ${r.code} ${r.stderr.trim()}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(floorParallel, hosts.length) }, worker));
  if (failures.length > 0) throw new Error(`floor: ${failures.length} hosts failed, e.g. ${failures[0]}`);
  return { ms: now() - t0, cpu: childCpu() - cpu0, sshd: sshdCpu(hosts) - sshd0 };
}

// ---------------------------------------------------------------------------------------------
// pyinfra, the reference the issue names (see PYINFRA above)
const pyinfraVenv = join(process.env.HOME ?? "/root", ".cache", "pulumi-conntrack", "pyinfra");

/** The pyinfra executable, made on first use; or { missing: why }. */
function findPyinfra() {
  if (process.env.PYINFRA) return { bin: process.env.PYINFRA };
  const bin = join(pyinfraVenv, "bin", "pyinfra");
  try {
    statSync(bin);
    return { bin };
  } catch {
    /* make it */
  }
  try {
    log(`pyinfra: making a venv in ${pyinfraVenv} (pip install pyinfra)`);
    execFileSync("python3", ["-m", "venv", pyinfraVenv], { stdio: ["ignore", "ignore", "pipe"] });
    execFileSync(join(pyinfraVenv, "bin", "pip"), ["install", "--quiet", "pyinfra"], { stdio: ["ignore", "ignore", "pipe"], timeout: 300_000 });
    return { bin };
  } catch (err) {
    rmSync(pyinfraVenv, { recursive: true, force: true });
    return { missing: `no pyinfra: ${String(err.stderr ?? err.message).trim().split("\n").pop()}` };
  }
}

const pyinfraDeploy = `# the same work as the Pulumi program: two conntrack timeouts, live and persisted (bench/preview-fleet.mjs)
from pyinfra.operations import server
server.sysctl(name="tcp established", key="net.netfilter.nf_conntrack_tcp_timeout_established", value=3600, persist=True, persist_file="/etc/sysctl.d/90-pyinfra-bench.conf")
server.sysctl(name="udp", key="net.netfilter.nf_conntrack_udp_timeout", value=45, persist=True, persist_file="/etc/sysctl.d/90-pyinfra-bench.conf")
`;

/** pyinfra's change detection (answered "no") and its --dry, on every host at once. */
async function measurePyinfra(n, hosts, pyinfra) {
  if (pyinfra.missing) return { missing: pyinfra.missing };
  const dir = mkdtempSync(`/tmp/${prefix}-pyinfra-${n}-`);
  projectDirs.push(dir);
  const inventory = hosts.map((h) => [h.host, { ssh_port: h.port, ssh_user: h.user, ssh_key: h.privateKeyPath, ssh_known_hosts_file: h.knownHostsPath, ssh_strict_host_key_checking: "yes" }]);
  writeFileSync(join(dir, "inventory.py"), `import json\nhosts = [tuple(h) for h in json.loads(${JSON.stringify(JSON.stringify(inventory))})]\n`);
  writeFileSync(join(dir, "deploy.py"), pyinfraDeploy);
  const run = async (args, input) => {
    const sshd0 = sshdCpu(hosts);
    const r = await runTimed(pyinfra.bin, ["inventory.py", "deploy.py", ...args], { cwd: dir, input });
    const out = r.stdout + r.stderr;
    // change detection ends at the prompt, which "n" refuses: pyinfra then exits non-zero
    if (!/Detected changes|Skipping change detection/.test(out)) throw new Error(`pyinfra ${args.join(" ")} (N=${n}) failed with exit ${r.code}:\n${out.split("\n").slice(-20).join("\n")}`);
    return { ms: r.ms, cpu: r.cpu, sshd: sshdCpu(hosts) - sshd0 };
  };
  const detect = [];
  const dry = [];
  for (let i = 0; i < Math.max(2, repeat); i++) detect.push(await run([], "n\n"));
  for (let i = 0; i < Math.max(2, repeat); i++) dry.push(await run(["--dry", "-y"]));
  const mid = (a) => [...a].sort((x, y) => x.ms - y.ms)[Math.floor((a.length - 1) / 2)];
  const version = execFileSync(pyinfra.bin, ["--version"], { encoding: "utf8" }).trim();
  return { version, detect: mid(detect), dry: mid(dry), detectRuns: detect.map((d) => d.ms), dryRuns: dry.map((d) => d.ms) };
}

// ---------------------------------------------------------------------------------------------
// throwaway Pulumi projects

const oursProgram = `// ${"two plain ConntrackLimits per host from config (bench/preview-fleet.mjs)"}
const fs = require("fs");
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");
const config = new pulumi.Config();
const hosts = config.requireObject("hosts");
const privateKey = pulumi.secret(fs.readFileSync(config.require("privateKeyPath"), "utf8"));
for (const h of hosts) {
  const connection = { host: h.host, port: h.port, user: h.user, hostKey: h.hostKey, privateKey };
  new ct.ConntrackLimits(h.name + "-tcp", { connection, timeouts: { tcpEstablished: 3600 } });
  new ct.ConntrackLimits(h.name + "-udp", { connection, timeouts: { udp: 45 } });
}
`;

const engineProgram = `// two do-nothing dynamic resources per host from config (bench/preview-fleet.mjs)
const pulumi = require("@pulumi/pulumi");
const provider = {
  async check(olds, news) { return { inputs: news }; },
  async diff() { return { changes: false }; },
  async create(inputs) { return { id: inputs.host + "/" + inputs.kind, outs: inputs }; },
  async read(id, props) { return { id, props }; },
  async update(id, olds, news) { return { outs: news }; },
  async delete() {},
};
class Nothing extends pulumi.dynamic.Resource {
  constructor(name, args, opts) { super(provider, name, args, opts); }
}
const config = new pulumi.Config();
for (const h of config.requireObject("hosts")) {
  new Nothing(h.name + "-tcp", { host: h.host, kind: "tcp", timeouts: { tcpEstablished: 3600 } });
  new Nothing(h.name + "-udp", { host: h.host, kind: "udp", timeouts: { udp: 45 } });
}
`;

async function project(kind, n, hosts, program) {
  const dir = mkdtempSync(`/tmp/${prefix}-${kind}-${n}-`);
  projectDirs.push(dir);
  const work = join(dir, "program");
  mkdirSync(work);
  mkdirSync(join(dir, "backend"));
  mkdirSync(join(dir, "home"));
  const name = `bench-${kind}`;
  writeFileSync(join(work, "Pulumi.yaml"), `name: ${name}\nruntime: nodejs\nmain: index.js\n`);
  writeFileSync(join(work, "package.json"), JSON.stringify({ name, private: true, main: "index.js" }) + "\n");
  writeFileSync(join(work, "index.js"), program);
  symlinkSync(join(repo, "node_modules"), join(work, "node_modules"));
  const env = {
    ...process.env,
    PULUMI_BACKEND_URL: `file://${join(dir, "backend")}`,
    PULUMI_CONFIG_PASSPHRASE: "",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_HOME: join(dir, "home"),
  };
  execFileSync("pulumi", ["stack", "init", "bench", "--non-interactive"], { cwd: work, env, stdio: ["ignore", "ignore", "inherit"] });
  const plain = hosts.map((h) => ({ name: h.name, host: h.host, port: h.port, user: h.user, hostKey: h.hostKey }));
  // JSON is YAML: structured config written straight into the stack file (no argv size limit)
  appendFileSync(join(work, "Pulumi.bench.yaml"), `config:\n  ${name}:hosts: ${JSON.stringify(plain)}\n  ${name}:privateKeyPath: ${JSON.stringify(hosts[0].privateKeyPath)}\n`);
  return {
    dir,
    async pulumi(args, hostsForCounts) {
      const before = hostsForCounts ? snapshot(hostsForCounts) : undefined;
      const sshd0 = hostsForCounts ? sshdCpu(hostsForCounts) : 0;
      const r = await runTimed("pulumi", [...args, "--non-interactive", "--color", "never"], { cwd: work, env, rss: true, timeline: hostsForCounts });
      const sshd = hostsForCounts ? sshdCpu(hostsForCounts) - sshd0 : undefined;
      if (r.code !== 0) {
        throw new Error(`pulumi ${args.join(" ")} (${kind}, N=${n}) failed with exit ${r.code}:\n${(r.stdout + r.stderr).split("\n").slice(-40).join("\n")}`);
      }
      const counts = before ? deltas(hostsForCounts, before, snapshot(hostsForCounts)) : undefined;
      return { ms: r.ms, cpu: r.cpu, sshd, rss: r.rss, counts, timeline: r.timeline, summary: summaryOf(r.stdout), stdout: r.stdout };
    },
  };
}

/** The "Resources:" block's counts, e.g. { unchanged: 401 } or { create: 400, unchanged: 1 }. */
function summaryOf(stdout) {
  const block = stdout.slice(stdout.lastIndexOf("Resources:"));
  const out = {};
  for (const m of block.matchAll(/^\s+(?:[+~-]\s+)?(\d+) (to create|to update|to delete|to replace|created|updated|deleted|replaced|unchanged|to refresh|refreshed)/gm)) out[m[2]] = Number(m[1]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// one N
async function measure(n, script, pyinfra) {
  log(`N=${n}: starting ${n} lab hosts (prefix ${prefix})`);
  const { hosts } = hostsUp(n);
  const total = (o) => Object.values(o).reduce((a, b) => a + b, 0);
  const noop = (s, what) => {
    const changed = Object.entries(s).filter(([k]) => k !== "unchanged");
    if (changed.length > 0 || s.unchanged !== 2 * n + 1) log(`N=${n}: WARNING ${what} was not a no-op: ${JSON.stringify(s)}`);
  };
  const res = { n, notes: [] };

  log(`N=${n}: floor (${Math.max(3, repeat)}×)`);
  const floors = [];
  for (let i = 0; i < Math.max(3, repeat); i++) floors.push(await floorOnce(hosts, script));
  res.floorRuns = floors.map((f) => f.ms);
  res.floorCpu = floors.map((f) => f.cpu);
  res.floorSshd = floors.map((f) => f.sshd);
  res.floor = median(res.floorRuns);

  const ours = await project("ours", n, hosts, oursProgram);
  const engine = await project("engine", n, hosts, engineProgram);

  log(`N=${n}: ours: first pulumi up`);
  res.firstUp = await ours.pulumi(["up", "--yes"], hosts);
  if (res.firstUp.summary.created !== 2 * n + 1) log(`N=${n}: WARNING first up: ${JSON.stringify(res.firstUp.summary)}`);

  log(`N=${n}: engine: pulumi up (creates), then no-op preview`);
  res.engineUp = await engine.pulumi(["up", "--yes"]);
  res.enginePreviews = [];
  for (let i = 0; i < repeat; i++) {
    const p = await engine.pulumi(["preview"]);
    noop(p.summary, "engine preview");
    res.enginePreviews.push(p);
  }
  res.engine = median(res.enginePreviews.map((p) => p.ms));
  // the engine's own time for the other commands too, to read ours against (not in the spec's table)
  res.engineNoopUp = await engine.pulumi(["up", "--yes"]);
  noop(res.engineNoopUp.summary, "engine no-op up");
  res.engineRefresh = await engine.pulumi(["refresh", "--yes"]);

  log(`N=${n}: ours: no-op pulumi preview`);
  res.previews = [];
  for (let i = 0; i < repeat; i++) {
    const p = await ours.pulumi(["preview"], hosts);
    noop(p.summary, "our preview");
    res.previews.push(p);
  }
  res.preview = median(res.previews.map((p) => p.ms));

  log(`N=${n}: pyinfra: change detection and --dry`);
  res.pyinfra = await measurePyinfra(n, hosts, pyinfra);

  log(`N=${n}: ours: no-op pulumi up`);
  res.noopUp = await ours.pulumi(["up", "--yes"], hosts);
  noop(res.noopUp.summary, "second up");

  log(`N=${n}: ours: pulumi refresh`);
  res.refresh = await ours.pulumi(["refresh", "--yes"], hosts);
  if (total(res.refresh.summary) === 0) log(`N=${n}: WARNING refresh printed no summary`);

  for (const r of [res.firstUp, res.noopUp, res.refresh, ...res.previews, ...res.enginePreviews, res.engineUp, res.engineNoopUp, res.engineRefresh]) delete r.stdout;
  return res;
}

// ---------------------------------------------------------------------------------------------
function table(results) {
  const head = ["N", "floor s", "engine s", "ours no-op preview s", "pyinfra change detection s", "pyinfra --dry s", "ours first up s", "no-op up s", "refresh s", "connections/host (preview, first up, no-op up, refresh)", "round trips/host (preview, first up, no-op up, refresh)", "program RSS MB", "provider RSS MB"];
  const rows = results.map((r) => {
    const ops = [r.previews[0], r.firstUp, r.noopUp, r.refresh];
    const prog = Math.max(...ops.map((o) => o.rss.programMB), ...r.previews.map((o) => o.rss.programMB));
    const prov = Math.max(...ops.map((o) => o.rss.providerMB), ...r.previews.map((o) => o.rss.providerMB));
    const py = (k) => (r.pyinfra.missing ? "not measured" : sec(r.pyinfra[k].ms));
    return [r.n, sec(r.floor), sec(r.engine), sec(r.preview), py("detect"), py("dry"), sec(r.firstUp.ms), sec(r.noopUp.ms), sec(r.refresh.ms), ops.map((o) => o.counts.connections).join(", "), ops.map((o) => o.counts.roundTrips).join(", "), prog.toFixed(0), prov.toFixed(0)];
  });
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => " --- ").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)];
  return lines.join("\n");
}

function details(results) {
  const t = (x) => (x === undefined ? "–" : sec(x));
  const lines = [
    "",
    "Client-side CPU s (every process below the command, reaped: the CLI, language host, program, provider; for the floor the ssh clients) — other jobs on the machine inflate wall time, much less this:",
    "| N | floor | engine preview | ours no-op preview | pyinfra change detection | ours first up | no-op up | refresh |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...results.map((r) => `| ${r.n} | ${median(r.floorCpu).toFixed(1)} | ${median(r.enginePreviews.map((p) => p.cpu)).toFixed(1)} | ${median(r.previews.map((p) => p.cpu)).toFixed(1)} | ${r.pyinfra.missing ? "–" : r.pyinfra.detect.cpu.toFixed(1)} | ${r.firstUp.cpu.toFixed(1)} | ${r.noopUp.cpu.toFixed(1)} | ${r.refresh.cpu.toFixed(1)} |`),
    "",
    "Host-side CPU s (the hosts' sshd and everything it ran: SSHD CPU above):",
    "| N | floor | ours no-op preview | pyinfra change detection | pyinfra --dry | ours first up | no-op up | refresh |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...results.map((r) => `| ${r.n} | ${median(r.floorSshd).toFixed(1)} | ${median(r.previews.map((p) => p.sshd)).toFixed(1)} | ${r.pyinfra.missing ? "–" : r.pyinfra.detect.sshd.toFixed(1)} | ${r.pyinfra.missing ? "–" : r.pyinfra.dry.sshd.toFixed(1)} | ${r.firstUp.sshd.toFixed(1)} | ${r.noopUp.sshd.toFixed(1)} | ${r.refresh.sshd.toFixed(1)} |`),
    "",
    "Per command (wall s; per host: SYNs, sshd-authenticated connections, exec sessions; when, from the command's start, the hosts' first and last exec session began and the last connection closed; peak RSS MB and CPU s of the program/provider processes; resource summary):",
  ];
  for (const r of results) {
    const e = r.enginePreviews[0];
    lines.push(r.pyinfra.missing ? `N=${r.n}: pyinfra not measured: ${r.pyinfra.missing}` : `N=${r.n}: ${r.pyinfra.version}: change detection runs ${r.pyinfra.detectRuns.map(sec).join(", ")} s, --dry runs ${r.pyinfra.dryRuns.map(sec).join(", ")} s`);
    lines.push(`N=${r.n}: floor runs ${r.floorRuns.map(sec).join(", ")} s; engine (do-nothing resources): previews ${r.enginePreviews.map((p) => sec(p.ms)).join(", ")} s (RSS program ${e.rss.programMB.toFixed(0)} / provider ${e.rss.providerMB.toFixed(0)} MB, CPU ${e.rss.programCpu.toFixed(1)}/${e.rss.providerCpu.toFixed(1)} s, provider process from ${t(e.rss.providerStart)} s), first up ${sec(r.engineUp.ms)} s, no-op up ${sec(r.engineNoopUp.ms)} s, refresh ${sec(r.engineRefresh.ms)} s`);
    const ops = [...r.previews.map((p, i) => [`no-op preview${r.previews.length > 1 ? ` #${i + 1}` : ""}`, p]), ["first up", r.firstUp], ["no-op up", r.noopUp], ["refresh", r.refresh]];
    for (const [name, o] of ops) {
      const tl = o.timeline ?? {};
      lines.push(`  ${name}: ${sec(o.ms)} s; SYN ${o.counts.connections}, auth ${o.counts.authenticated}, execs ${o.counts.roundTrips}; program process from ${t(o.rss.programStart)} s, provider process from ${t(o.rss.providerStart)} s; execs began ${t(tl.firstStart)}–${t(tl.lastStart)} s, last close ${t(tl.lastClose)} s; RSS ${o.rss.programMB.toFixed(0)}/${o.rss.providerMB.toFixed(0)} MB, CPU ${o.rss.programCpu.toFixed(1)}/${o.rss.providerCpu.toFixed(1)} s (${o.rss.programProcs} program, ${o.rss.providerProcs} provider processes); ${JSON.stringify(o.summary)}`);
    }
  }
  return lines.join("\n");
}

function ratios(results) {
  const at = (n) => results.find((r) => r.n === n);
  const lines = [""];
  const r50 = at(50);
  const r200 = at(200);
  if (r50) {
    const q = r50.preview / (r50.floor + r50.engine);
    lines.push(`no-op preview ÷ (floor + engine) at 50 hosts: ${sec(r50.preview)} / (${sec(r50.floor)} + ${sec(r50.engine)}) = ${q.toFixed(2)} (done when ≤ 1.5)`);
  }
  if (r50 && r200) {
    const dOurs = r200.preview - r50.preview;
    const dFloor = r200.floor - r50.floor;
    const dEngine = r200.engine - r50.engine;
    lines.push(`Δours(50→200) = ${sec(dOurs)} s; 1.2 × (Δfloor ${sec(dFloor)} + Δengine ${sec(dEngine)}) = ${sec(1.2 * (dFloor + dEngine))} s → ${dOurs <= 1.2 * (dFloor + dEngine) ? "within" : "over"}`);
  }
  if (r200 && !r200.pyinfra.missing) {
    const p = r200.pyinfra;
    lines.push(`no-op preview at 200 hosts: ${sec(r200.preview)} s; pyinfra's change detection ${sec(p.detect.ms)} s (${r200.preview < p.detect.ms ? "faster" : "slower"}), its --dry (reads nothing in pyinfra 3) ${sec(p.dry.ms)} s`);
  }
  if (r200) {
    const prog = Math.max(r200.firstUp.rss.programMB, r200.noopUp.rss.programMB, r200.refresh.rss.programMB, ...r200.previews.map((p) => p.rss.programMB));
    const prov = Math.max(r200.firstUp.rss.providerMB, r200.noopUp.rss.providerMB, r200.refresh.rss.providerMB, ...r200.previews.map((p) => p.rss.providerMB));
    lines.push(`peak RSS at 200 hosts: program ${prog.toFixed(0)} MB, provider ${prov.toFixed(0)} MB (done when < 300 each)`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
const results = [];
const rawFile = `/tmp/${prefix}-results-${Date.now()}.json`;
let meta = "";
const failed = [];
try {
  const { names: factNames, script } = factsScript();
  const pyinfra = findPyinfra();
  const commit = execFileSync("git", ["-C", repo, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  const pulumiVersion = execFileSync("pulumi", ["version"], { encoding: "utf8" }).trim();
  // what is measured is dist/, which may have been built from uncommitted work: say so
  const dirty = execFileSync("git", ["-C", repo, "status", "--porcelain", "--", "provider", "sdk"], { encoding: "utf8" }).trimEnd();
  const built = statSync(join(repo, "dist", "provider", "index.js")).mtime.toISOString();
  meta = `preview-fleet: N = ${sizes.join(" ")}, repeat ${repeat}; commit ${commit}, pulumi ${pulumiVersion}, node ${process.version}; dist built ${built}; facts read: ${factNames.sort().join(" ")}${dirty ? `; uncommitted changes in provider/ or sdk/:\n${dirty}` : ""}`;
  log(meta);
  for (const n of sizes) {
    // a failed N (say, a pulumi command failing) is reported at the end; the other sizes still run
    try {
      results.push(await measure(n, script, pyinfra));
      writeFileSync(rawFile, JSON.stringify(results, null, 1));
    } catch (err) {
      log(`N=${n} FAILED: ${err.stack ?? err}`);
      failed.push(`N=${n}: ${String(err.message ?? err).split("\n")[0]}`);
      process.exitCode = 1;
    } finally {
      cleanup();
    }
  }
} finally {
  cleanup();
  if (results.length > 0) {
    console.log(meta + "\n");
    console.log(table(results));
    console.log(ratios(results));
    console.log(details(results));
    console.log(`\nraw results: ${rawFile}`);
  }
  if (failed.length > 0) console.log(`\nfailed (details on stderr): ${failed.join("; ")}`);
}
