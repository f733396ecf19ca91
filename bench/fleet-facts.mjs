// Prints how long reading conntrack facts takes across N namespaced lab hosts: SSH handshake and
// fact script, one host after another (as Pulumi's engine calls `check`) and all at once.
// Usage: source scripts/env.sh && node bench/fleet-facts.mjs [N]
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { session, closeAll } = require("../dist/provider/transport/pool.js");
const { conntrackFacts } = require("../dist/provider/facts/read.js");
const { toTarget } = require("../dist/provider/transport/target.js");
const { connectionSchema } = require("../dist/sdk/connection.js");

const n = Number(process.argv[2] ?? 20);
const prefix = "pcb";
const hostsFile = execFileSync("bash", ["lab/netns/hosts.sh", "up", String(n), prefix], { encoding: "utf8" }).trim().split("\n").pop();
const hosts = JSON.parse(readFileSync(hostsFile, "utf8"));
const targets = hosts.map((h) => toTarget(connectionSchema.parse({ host: h.host, privateKey: readFileSync(h.privateKeyPath, "utf8"), hostKey: h.hostKey })));
const ms = (t) => `${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(0)} ms`;

try {
  let t = process.hrtime.bigint();
  const connect = [];
  const facts = [];
  for (const target of targets) {
    const c = process.hrtime.bigint();
    await session(target);
    connect.push(Number(process.hrtime.bigint() - c) / 1e6);
    const f = process.hrtime.bigint();
    await conntrackFacts(target, true);
    facts.push(Number(process.hrtime.bigint() - f) / 1e6);
  }
  const avg = (a) => (a.reduce((x, y) => x + y, 0) / a.length).toFixed(0);
  console.log(`hosts: ${n}`);
  console.log(`one after another: ${ms(t)} total; per host: connect ${avg(connect)} ms, facts ${avg(facts)} ms`);
  await closeAll();
  t = process.hrtime.bigint();
  await Promise.all(targets.map(async (target) => { await session(target); await conntrackFacts(target, true); }));
  console.log(`all at once: ${ms(t)} total`);
  t = process.hrtime.bigint();
  await Promise.all(targets.map((target) => conntrackFacts(target, true)));
  console.log(`facts again on open connections, all at once: ${ms(t)}`);
} finally {
  await closeAll();
  execFileSync("bash", ["lab/netns/hosts.sh", "down", prefix]);
}
