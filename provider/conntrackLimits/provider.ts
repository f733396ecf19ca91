import type * as pulumi from "@pulumi/pulumi";
import { conntrackLimitsSettingsSchema, type ConntrackLimitsSettings } from "../../sdk/conntrackLimits.schema";
import type { Credentials } from "../../sdk/internal/connectionInputs";
import { conntrackFacts, forgetFacts } from "../facts/read";
import type { ConntrackFacts } from "../facts/conntrack";
import { containsUnknown, failuresOf, resourceId, targetOf } from "../dynamic";
import { iptablesConfigPath } from "../persistence/iptablesConfig";
import { HostError } from "../transport/errors";
import { session, withHostLock } from "../transport/pool";
import { parseTarget, toTarget, type HostTarget } from "../transport/target";
import { applyScript, loadModuleScript } from "./apply";
import { idOfOwnedPath, ownerRecordedIn, previousRecordedIn, slug } from "./files";
import { desiredValues, liveValue, planConntrackLimits, planRestore, type ConntrackPlan } from "./plan";

interface Inputs {
  resourceType: "ConntrackLimits";
  owner: string;
  connection: Record<string, unknown>;
  credentials?: Credentials;
  max?: number;
  hashsize?: number;
  timeouts?: Record<string, number>;
  persist?: boolean;
  plan?: Record<string, string>;
  warnings?: string[];
}

interface Outputs extends Inputs {
  hostId: string;
  previous: Record<string, string>;
  previousFiles: Record<string, string>;
  live: Record<string, string>;
  files: string[];
  memoryEstimate: { bytes: number; human: string; formula: string };
}

const settingFields = ["max", "hashsize", "timeouts", "persist"] as const;

function settingsOf(props: Inputs): ConntrackLimitsSettings {
  return conntrackLimitsSettingsSchema.parse(pick(props));
}

function pick(props: Inputs): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of settingFields) if (props[f] !== undefined && props[f] !== null) out[f] = props[f];
  return out;
}

/** Plan entries as the preview shows them: "key": "live → desired", "path": "write". */
function describe(plan: ConntrackPlan): Record<string, string> {
  const out: Record<string, string> = {};
  if (plan.loadModule) out[`modprobe ${plan.module}`] = "load";
  for (const c of plan.changes) out[c.key] = `${c.from ?? "(absent)"} → ${c.to}`;
  for (const path of Object.keys(plan.writeFiles)) out[path] = "write";
  for (const path of plan.removeFiles) out[path] = "remove";
  return out;
}

/** The values to restore on destroy: ours if recorded, else a replaced twin's, else what is live. */
function previousFor(id: string, owner: string, keys: string[], facts: ConntrackFacts, known: Record<string, string> = {}): Record<string, string> {
  const recorded = (want: (path: string) => boolean) => {
    for (const [path, content] of Object.entries(facts.owned)) if (want(path)) { const p = previousRecordedIn(content); if (p) return p; }
    return undefined;
  };
  const own = recorded((p) => idOfOwnedPath(p) === id);
  const twin = recorded((p) => idOfOwnedPath(p) !== id && ownerRecordedIn(facts.owned[p]) === owner);
  const previous: Record<string, string> = {};
  for (const key of keys) {
    const value = known[key] ?? own?.[key] ?? twin?.[key] ?? liveValue(facts, key);
    if (value !== undefined) previous[key] = value;
  }
  return previous;
}

function requireNoBlockers(target: HostTarget, plan: ConntrackPlan): void {
  if (plan.blockers.length > 0) throw new HostError(target.label, "config", plan.blockers.join("; "));
}

async function runOrThrow(target: HostTarget, script: string, what: string): Promise<void> {
  forgetFacts(target);
  const result = await (await session(target)).run(script, what);
  if (result.code !== 0) {
    throw new HostError(target.label, "command", `${what} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.trim()}`);
  }
}

/** Re-reads the host after a change and fails loudly if it doesn't hold what was asked. */
async function verify(target: HostTarget, replan: (facts: ConntrackFacts) => ConntrackPlan): Promise<ConntrackFacts> {
  const facts = await conntrackFacts(target, true);
  const left = replan(facts);
  const pending = [...left.changes.map((c) => `${c.key} is ${c.from ?? "absent"}, wanted ${c.to}`), ...Object.keys(left.writeFiles).map((p) => `${p} differs`), ...left.removeFiles.map((p) => `${p} still exists`)];
  if (pending.length > 0) throw new HostError(target.label, "verify", `the host doesn't hold the change: ${pending.join("; ")}`);
  return facts;
}

async function converge(target: HostTarget, props: Inputs, oldPrevious: Record<string, string> | undefined, oldPreviousFiles: Record<string, string>): Promise<Outputs> {
  const settings = settingsOf(props);
  const id = resourceId(slug(props.owner), props.owner, target);
  return withHostLock(target, async () => {
    let facts = await conntrackFacts(target, true);
    // Refuse what this host can't do before touching it; blockers don't depend on `previous`.
    const first = planConntrackLimits({ owner: props.owner, id, settings, previous: {}, previousFiles: {} }, facts);
    requireNoBlockers(target, first);
    if (first.loadModule) {
      await runOrThrow(target, loadModuleScript(facts.module.name), `modprobe ${facts.module.name}`);
      facts = await conntrackFacts(target, true);
    }
    const keys = Object.keys(desiredValues(settings, facts.module.name));
    // Keys no longer managed go back to what they were before we first changed them.
    const dropped = Object.fromEntries(Object.entries(oldPrevious ?? {}).filter(([k]) => !keys.includes(k)));
    const previous = previousFor(id, props.owner, keys, facts, oldPrevious);
    const previousFiles = { ...oldPreviousFiles };
    if (facts.iptablesConfig !== undefined && previousFiles[iptablesConfigPath] === undefined) previousFiles[iptablesConfigPath] = facts.iptablesConfig;
    const want = { owner: props.owner, id, settings, previous, previousFiles };
    const plan = planConntrackLimits(want, facts);
    // A file of ours that someone left at our path before our first write is kept for destroy.
    if (oldPrevious === undefined) {
      for (const path of Object.keys(plan.writeFiles)) if (facts.owned[path] !== undefined) previousFiles[path] = facts.owned[path];
    }
    // Our own files still list the dropped keys until this apply removes them: pass our id so they
    // don't count as another owner's.
    const restore = planRestore({ id, previous: dropped, previousFiles: {} }, facts);
    const all: ConntrackPlan = { ...plan, changes: [...restore.changes, ...plan.changes] };
    try {
      if (hasWork(all)) await runOrThrow(target, applyScript(all), "apply conntrack limits");
      facts = await verify(target, (f) => planConntrackLimits(want, f));
    } catch (err) {
      // Nothing half-applied: on a failed first create, put the host back as it was.
      if (oldPrevious === undefined) await rollback(target, id, previous, previousFiles).catch(() => undefined);
      throw err;
    }
    return outputsOf(props, id, facts, previous, previousFiles, plan);
  });
}

async function rollback(target: HostTarget, id: string, previous: Record<string, string>, previousFiles: Record<string, string>): Promise<void> {
  const facts = await conntrackFacts(target, true);
  const plan = planRestore({ id, previous, previousFiles }, facts);
  await runOrThrow(target, applyScript(plan), "roll back conntrack limits");
}

function hasWork(plan: ConntrackPlan): boolean {
  return plan.changes.length > 0 || Object.keys(plan.writeFiles).length > 0 || plan.removeFiles.length > 0;
}

/** The live value of each key the host has. */
function liveValues(facts: ConntrackFacts, keys: string[]): Record<string, string> {
  const live: Record<string, string> = {};
  for (const key of keys) {
    const v = liveValue(facts, key);
    if (v !== undefined) live[key] = v;
  }
  return live;
}

/** Our files on the host, by the id in their names. */
function filesOf(facts: ConntrackFacts, id: string): string[] {
  return Object.keys(facts.owned).filter((p) => idOfOwnedPath(p) === id).sort();
}

function outputsOf(props: Inputs, id: string, facts: ConntrackFacts, previous: Record<string, string>, previousFiles: Record<string, string>, plan: ConntrackPlan): Outputs {
  return {
    ...props,
    persist: props.persist ?? true,
    hostId: id,
    previous,
    previousFiles,
    live: liveValues(facts, Object.keys(plan.desired)),
    files: filesOf(facts, id),
    memoryEstimate: { bytes: plan.memory.bytes, human: plan.memory.human, formula: plan.memory.formula },
    plan: {},
    warnings: plan.warnings,
  };
}

export const conntrackLimitsProvider: pulumi.dynamic.ResourceProvider<Inputs, Outputs> = {
  async check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (typeof news.owner !== "string" || news.owner === "") failures.push({ property: "owner", reason: "owner (the resource name) is required" });
    const settingsKnown = !settingFields.some((f) => containsUnknown(news[f]));
    const settings = settingsKnown ? conntrackLimitsSettingsSchema.safeParse(pick(news)) : undefined;
    if (settings && !settings.success) failures.push(...failuresOf(settings.error));
    const connectionKnown = !containsUnknown(news.connection) && !containsUnknown(news.credentials);
    const parsed = connectionKnown ? parseTarget({ connection: news.connection, credentials: news.credentials }) : undefined;
    if (parsed && !parsed.success) failures.push(...failuresOf(parsed.error, "connection"));
    if (failures.length > 0) return { failures };

    const inputs: Inputs = { ...news, persist: news.persist ?? true };
    if (!settings?.success || !parsed?.success) return { inputs };
    // Everything is known: read the host (once per host per operation) so the preview shows
    // live → desired for each key, the files to write, and the warnings.
    const target = toTarget(parsed.data);
    const facts = await conntrackFacts(target);
    const id = resourceId(slug(news.owner), news.owner, target);
    const keys = Object.keys(desiredValues(settings.data, facts.module.name));
    const previous = previousFor(id, news.owner, keys, facts);
    const plan = planConntrackLimits({ owner: news.owner, id, settings: settings.data, previous, previousFiles: {} }, facts);
    if (plan.blockers.length > 0) return { failures: plan.blockers.map((reason) => ({ property: "connection", reason: `${target.label}: ${reason}` })) };
    return { inputs: { ...inputs, plan: describe(plan), warnings: plan.warnings } };
  },

  async diff(_id, olds, news) {
    const replaces: string[] = [];
    const hostChanged = (k: "host" | "port") => news.connection?.[k] !== undefined && news.connection[k] !== olds.connection?.[k];
    if (hostChanged("host") || hostChanged("port")) replaces.push("connection");
    const settingsChanged = settingFields.some((f) => JSON.stringify(news[f] ?? null) !== JSON.stringify(olds[f] ?? (f === "persist" ? true : null)));
    const connectionChanged = JSON.stringify(news.connection) !== JSON.stringify(olds.connection) || JSON.stringify(news.credentials) !== JSON.stringify(olds.credentials);
    const drift = news.plan === undefined || containsUnknown(news.plan) || Object.keys(news.plan).length > 0;
    return { changes: replaces.length > 0 || settingsChanged || connectionChanged || drift, replaces };
  },

  async create(inputs) {
    const target = targetOf(inputs);
    const outs = await converge(target, inputs, undefined, {});
    return { id: `${target.host}:${target.port}/${outs.hostId}`, outs };
  },

  async update(_id, olds, news) {
    const target = targetOf(news);
    return { outs: await converge(target, news, olds.previous ?? {}, olds.previousFiles ?? {}) };
  },

  async read(id, props) {
    if (!props) throw new Error(`ConntrackLimits ${id}: import is not supported; declare the resource and run pulumi up`);
    const target = targetOf(props);
    const facts = await conntrackFacts(target, true);
    const live = liveValues(facts, Object.keys(props.live ?? props.previous ?? {}));
    return { id, props: { ...props, live, files: filesOf(facts, props.hostId) } };
  },

  async delete(_id, props) {
    const target = targetOf(props);
    await withHostLock(target, async () => {
      const facts = await conntrackFacts(target, true);
      const want = { id: props.hostId, previous: props.previous ?? {}, previousFiles: props.previousFiles ?? {} };
      const plan = planRestore(want, facts);
      if (hasWork(plan)) await runOrThrow(target, applyScript(plan), "restore conntrack limits");
      await verify(target, (f) => planRestore(want, f));
    });
  },
};

