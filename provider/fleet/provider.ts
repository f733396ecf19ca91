import { randomBytes } from "node:crypto";
import type * as pulumi from "@pulumi/pulumi";
import type { Credentials } from "../../sdk/internal/connectionHalves";
import { containsUnknown } from "../dynamic";
import { parseTarget } from "../transport/target";
import { unhealthy, type HealthCheck, type Reading } from "./health";
import { readWave, type StoredWaveHost } from "./readings";

interface WaveInputs {
  resourceType: string;
  fleet: string;
  wave: number;
  hosts: StoredWaveHost[];
  credentials?: Credentials[];
  [field: string]: unknown;
}

interface GateInputs extends WaveInputs {
  baseline: Record<string, Reading>;
  health: HealthCheck & { soakSeconds: number };
  maxFailures: number;
  failedBefore: string[];
}

/** Outputs a run writes; everything else is an input, and a changed input runs the wave again. */
const outputFields = new Set(["readings", "takenAt", "failedHosts", "checkedAt"]);

function checkHosts(news: WaveInputs): pulumi.dynamic.CheckResult {
  const failures: pulumi.dynamic.CheckFailure[] = [];
  if (!containsUnknown(news.hosts) && !containsUnknown(news.credentials)) {
    (news.hosts ?? []).forEach((h, i) => {
      const parsed = parseTarget({ connection: h.connection, credentials: news.credentials?.[i] });
      if (!parsed.success) failures.push(...parsed.error.issues.map((x) => ({ property: `hosts[${i}].connection.${x.path.join(".")}`, reason: `${h.name}: ${x.message}` })));
    });
  }
  return failures.length > 0 ? { failures } : { inputs: news };
}

function inputsChanged(olds: WaveInputs, news: WaveInputs): boolean {
  const keys = new Set([...Object.keys(olds), ...Object.keys(news)].filter((k) => !outputFields.has(k)));
  return [...keys].some((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
}

const common = {
  check: async (_olds: WaveInputs, news: WaveInputs) => checkHosts(news),
  diff: async (_id: string, olds: WaveInputs, news: WaveInputs) => ({ changes: inputsChanged(olds, news) }),
  // Refresh keeps what the last rollout saw: readings are of a moment, not state to converge.
  read: async (id: string, props: WaveInputs) => ({ id, props }),
  delete: async () => undefined,
};

async function takeBaseline(inputs: WaveInputs) {
  return { ...inputs, readings: await readWave(inputs.hosts, inputs.credentials ?? []), takenAt: new Date().toISOString() };
}

export const fleetWaveBaselineProvider: pulumi.dynamic.ResourceProvider = {
  ...common,
  async create(inputs: WaveInputs) {
    return { id: `wave-${randomBytes(6).toString("hex")}`, outs: await takeBaseline(inputs) };
  },
  async update(_id: string, _olds: WaveInputs, news: WaveInputs) {
    return { outs: await takeBaseline(news) };
  },
};

async function runGate(inputs: GateInputs) {
  const where = `Fleet ${inputs.fleet}, wave ${inputs.wave}`;
  const failedHere = inputs.hosts.filter((h) => h.applied === false).map((h) => h.name);
  const failedHosts = [...inputs.failedBefore, ...failedHere];
  if (failedHosts.length > inputs.maxFailures) {
    throw new Error(`${where}: ${failedHosts.length} host(s) failed (${failedHosts.join(", ")}; their own errors are above), more than maxFailures ${inputs.maxFailures}: later waves were not started`);
  }
  await new Promise((resolve) => setTimeout(resolve, inputs.health.soakSeconds * 1000));
  const applied = inputs.hosts.map((h, i) => ({ h, creds: inputs.credentials?.[i] ?? {} })).filter((x) => x.h.applied !== false);
  const readings = await readWave(applied.map((x) => x.h), applied.map((x) => x.creds));
  const sick = Object.entries(readings)
    .map(([host, now]) => ({ host, problems: unhealthy(inputs.baseline?.[host], now, inputs.health) }))
    .filter((s) => s.problems.length > 0);
  if (sick.length > 0) {
    const lines = sick.map((s) => `  ${s.host}: ${s.problems.join("; ")}`);
    throw new Error(`${where} failed its health check after a soak of ${inputs.health.soakSeconds} s: later waves were not started.\n${lines.join("\n")}`);
  }
  return { ...inputs, readings, failedHosts, checkedAt: new Date().toISOString() };
}

export const fleetWaveGateProvider: pulumi.dynamic.ResourceProvider = {
  ...common,
  async create(inputs: GateInputs) {
    return { id: `gate-${randomBytes(6).toString("hex")}`, outs: await runGate(inputs) };
  },
  async update(_id: string, _olds: GateInputs, news: GateInputs) {
    return { outs: await runGate(news) };
  },
};
