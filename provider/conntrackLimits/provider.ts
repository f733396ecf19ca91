import { randomBytes } from "node:crypto";
import type * as pulumi from "@pulumi/pulumi";
import { conntrackLimitsSettingsSchema, type ConntrackLimitsSettings } from "../../sdk/conntrackLimits.schema";
import type { Credentials } from "../../sdk/internal/connectionInputs";
import { containsUnknown, failuresOf, targetOf } from "../dynamic";
import type { HostFacts } from "../facts/host";
import { previewFacts, readHostFacts, seedPreviewFacts, type Prefetched } from "../engine/hostFacts";
import { currentLedger, ownersLabelled, planHost, type HostPlan } from "../engine/plan";
import { claimsOf, conflictMessages, converge, type ResourceKind } from "../engine/transaction";
import { ledgerPath } from "../engine/ledger";
import { liveValue } from "../engine/items";
import { modprobeDBackend } from "../persistence/modprobeD";
import { sysctlDBackend } from "../persistence/sysctlD";
import { udevRuleBackend } from "../persistence/udevRule";
import { parseTarget, toTarget, type HostTarget } from "../transport/target";
import { adoptLegacy, hasLegacyFiles, legacyId, legacyOwner, type LegacyOutputs } from "./legacy";
import { conntrackLimitsFacts, itemKey, valueName, wantConntrackLimits } from "./plan";

interface Inputs {
  resourceType: "ConntrackLimits";
  /** The resource's name. */
  owner: string;
  /** "project/stack" of the program (absent in stacks written by 0.1). */
  scope?: string;
  connection: Record<string, unknown>;
  credentials?: Credentials;
  max?: number;
  hashsize?: number;
  timeouts?: Record<string, number>;
  persist?: boolean;
  /** Facts the program read for this run (provider/prefetch.ts); never stored. */
  prefetched?: Prefetched;
  /** Preview only: "key": "live → desired" for what an up would change. */
  plan?: Record<string, string>;
  /** Outside a preview: set when the host differs from the program (what makes diff say "update"). */
  pendingChanges?: boolean;
  warnings?: string[];
}

interface Outputs extends Inputs, Partial<LegacyOutputs> {
  /** This resource's id in the host's ledger (kept across renames). Absent in 0.1 stacks. */
  ownerId?: string;
  previous: Record<string, string>;
  live: Record<string, string>;
  files: string[];
  memoryEstimate: { bytes: number; human: string; formula: string };
}

const settingFields = ["max", "hashsize", "timeouts", "persist"] as const;

export const conntrackLimitsKind: ResourceKind<ConntrackLimitsSettings> = {
  type: "ConntrackLimits",
  facts: [...conntrackLimitsFacts],
  backends: [sysctlDBackend, modprobeDBackend, udevRuleBackend(sysctlDBackend.path)],
  want: wantConntrackLimits,
};

function pick(props: Partial<Inputs>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of settingFields) if (props[f] !== undefined && props[f] !== null) out[f] = props[f];
  return out;
}

const settingsOf = (props: Inputs) => conntrackLimitsSettingsSchema.parse(pick(props));
const labelOf = (props: Pick<Inputs, "owner" | "scope">) => `${props.scope ? `${props.scope}/` : ""}ConntrackLimits/${props.owner}`;

/** Plan entries as the preview shows them: "key": "live → desired", "path": "write". */
function describe(plan: HostPlan, wanted: ReturnType<typeof wantConntrackLimits>, facts: HostFacts): Record<string, string> {
  const out: Record<string, string> = {};
  for (const step of wanted.prepare) if (!step.optional) out[step.name] = "before the values";
  for (const c of plan.changes) out[valueName(c.item)] = `${c.from ?? "(absent)"} → ${c.to ?? "(absent)"}`;
  if (wanted.prepare.length > 0) {
    for (const [key, claim] of Object.entries(wanted.claims)) if (liveValue(key, facts) === undefined) out[valueName(key)] = `(module not loaded) → ${claim.value}`;
  }
  for (const path of Object.keys(plan.writeFiles)) out[path] = path === ledgerPath ? "record owners and original values" : "write";
  for (const path of plan.removeFiles) out[path] = "remove";
  return out;
}

/** Preview of a 0.1 resource that hasn't moved to the ledger: only live values can differ. */
function describeLegacy(wanted: ReturnType<typeof wantConntrackLimits>, facts: HostFacts): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(wanted.desired)) {
    const live = liveValue(itemKey(name), facts);
    if (live !== undefined && live !== value) out[name] = `${live ?? "(absent)"} → ${value}`;
  }
  return out;
}

function outputsOf(props: Inputs, ownerId: string, facts: HostFacts, settings: ConntrackLimitsSettings): Outputs {
  const wanted = wantConntrackLimits(settings, facts);
  const ledger = currentLedger(facts);
  const previous: Record<string, string> = {};
  const live: Record<string, string> = {};
  for (const key of Object.keys(wanted.claims)) {
    if (key.startsWith("token:")) continue;
    const item = ledger.items[key];
    if (item) previous[valueName(key)] = item.original ?? "(absent)";
    const value = liveValue(key, facts);
    if (value !== undefined && value !== null) live[valueName(key)] = value;
  }
  const files = [...conntrackLimitsKind.backends.map((b) => b.path), ledgerPath].filter((p) => facts.files[p] !== undefined).sort();
  const { bytes, human, formula } = wanted.memory;
  const { prefetched: _p, pendingChanges: _c, plan: _plan, ...rest } = props;
  return { ...rest, persist: props.persist ?? true, ownerId, previous, live, files, memoryEstimate: { bytes, human, formula }, plan: {}, warnings: wanted.warnings };
}

async function convergeResource(target: HostTarget, props: Inputs, ownerId: string, formerLabels: string[], rollback: boolean, legacy?: LegacyOutputs): Promise<Outputs> {
  const settings = settingsOf(props);
  const label = labelOf(props);
  const owner = { id: ownerId, label, formerLabels, alsoRelease: legacy ? [legacyOwner(legacy.hostId)] : [] };
  const view = legacy ? adoptLegacy(legacy, label) : undefined;
  const { facts } = await converge(conntrackLimitsKind, target, owner, settings, { rollback, view });
  return outputsOf(props, ownerId, facts, settings);
}

export const conntrackLimitsProvider: pulumi.dynamic.ResourceProvider<Inputs, Outputs> = {
  async check(olds, news) {
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
    for (const transient of ["prefetched", "plan", "pendingChanges", "warnings"] as const) delete inputs[transient];
    if (!settings?.success || !parsed?.success) return { inputs };
    // Everything is known: plan from the host's facts (read once per host per operation, in a
    // preview by the program process) so the preview shows live → desired for each key.
    const target = toTarget(parsed.data);
    const prefetched = news.prefetched && !containsUnknown(news.prefetched) ? news.prefetched : undefined;
    if (prefetched?.error) return { failures: [{ property: "connection", reason: prefetched.error }] };
    const facts = prefetched?.output !== undefined ? seedPreviewFacts(target, prefetched.names, prefetched.output) : await previewFacts(target, conntrackLimitsKind.facts);
    const wanted = wantConntrackLimits(settings.data, facts);
    if (wanted.blockers.length > 0) return { failures: wanted.blockers.map((reason) => ({ property: "connection", reason: `${target.label}: ${reason}` })) };
    const label = labelOf(news);
    const labels = [label, ...(olds?.owner ? [labelOf(olds)] : [])];
    const mine = ownersLabelled(currentLedger(facts), labels);
    let plan: Record<string, string>;
    if (mine.length === 0 && hasLegacyFiles(facts, legacyId(news.owner, target))) {
      plan = describeLegacy(wanted, facts);
    } else {
      const hostPlan = planHost({ owner: mine[0] ?? "(new)", labels, claims: claimsOf(wanted, label), facts, backends: conntrackLimitsKind.backends, unreadable: "(module not loaded)" });
      if (hostPlan.conflicts.length > 0) return { failures: conflictMessages(hostPlan).map((reason) => ({ property: "connection", reason: `${target.label}: ${reason}` })) };
      plan = describe(hostPlan, wanted, facts);
    }
    // What state stores as inputs is what the next preview is compared with. Storing the plan of
    // the last up would make a later drift show as "old plan → new plan"; storing only a flag
    // makes it show as the live → desired values alone (and nothing when converged).
    if (prefetched?.preview) return { inputs: { ...inputs, plan, warnings: wanted.warnings } };
    return { inputs: { ...inputs, ...(Object.keys(plan).length > 0 ? { pendingChanges: true } : {}), warnings: wanted.warnings } };
  },

  async diff(_id, olds, news) {
    const replaces: string[] = [];
    const hostChanged = (k: "host" | "port") => news.connection?.[k] !== undefined && news.connection[k] !== olds.connection?.[k];
    if (hostChanged("host") || hostChanged("port")) replaces.push("connection");
    const settingsChanged = settingFields.some((f) => JSON.stringify(news[f] ?? null) !== JSON.stringify(olds[f] ?? (f === "persist" ? true : null)));
    const connectionChanged = JSON.stringify(news.connection) !== JSON.stringify(olds.connection) || JSON.stringify(news.credentials) !== JSON.stringify(olds.credentials);
    const renamed = news.owner !== olds.owner || (news.scope !== undefined && olds.scope !== undefined && news.scope !== olds.scope);
    const drift = news.pendingChanges === true || (news.plan !== undefined && (containsUnknown(news.plan) || Object.keys(news.plan).length > 0));
    return { changes: replaces.length > 0 || settingsChanged || connectionChanged || renamed || drift, replaces };
  },

  async create(inputs) {
    const target = targetOf(inputs);
    const ownerId = `${inputs.scope ?? "-"}/${inputs.owner}#${randomBytes(4).toString("hex")}`;
    const outs = await convergeResource(target, inputs, ownerId, [], true);
    return { id: `${target.host}:${target.port}/${ownerId}`, outs };
  },

  async update(_id, olds, news) {
    const target = targetOf(news);
    const oldLabels = olds.owner ? [labelOf(olds)] : [];
    if (olds.ownerId) return { outs: await convergeResource(target, news, olds.ownerId, oldLabels, false) };
    // A 0.1 resource: it moves into the ledger now, keeping the originals its outputs recorded.
    const ownerId = `${news.scope ?? "-"}/${news.owner}#${randomBytes(4).toString("hex")}`;
    return { outs: await convergeResource(target, news, ownerId, oldLabels, false, olds as LegacyOutputs) };
  },

  async read(id, props) {
    if (!props) throw new Error(`ConntrackLimits ${id}: import is not supported; declare the resource and run pulumi up`);
    const target = targetOf(props);
    const facts = await readHostFacts(target, conntrackLimitsKind.facts);
    const live: Record<string, string> = {};
    for (const name of Object.keys(props.live ?? props.previous ?? {})) {
      const value = liveValue(itemKey(name), facts);
      if (value !== undefined && value !== null) live[name] = value;
    }
    return { id, props: { ...props, live } };
  },

  async delete(_id, props) {
    const target = targetOf(props);
    const label = labelOf(props);
    if (props.ownerId) {
      await converge(conntrackLimitsKind, target, { id: props.ownerId, label }, undefined, { rollback: false });
    } else if (props.hostId) {
      await converge(conntrackLimitsKind, target, { id: legacyOwner(props.hostId), label }, undefined, { rollback: false, view: adoptLegacy(props as LegacyOutputs, label) });
    }
  },
};
