import { randomBytes } from "node:crypto";
import { proxySchema } from "../../sdk/connection";
import { containsUnknown, failuresOf, targetOf } from "../dynamic";
import type { HostFacts } from "../facts/host";
import { floorBlockers } from "../facts/tools";
import { isUnreachable } from "../transport/dial";
import { rememberUnreachable } from "../transport/pool";
import { parseTarget, toTarget, type HostTarget } from "../transport/target";
import { previewFacts, seedPreviewFacts } from "./hostFacts";
import { declareIntents } from "./hostIntents";
import { liveValue } from "./items";
import { LedgerError, ledgerPath } from "./ledger";
import { currentLedger, ownersLabelled, planHost, type HostPlan } from "./plan";
import { labelOf, usablePrefetch, type BaseInputs, type BaseOutputs, type CheckFailure, type Checked, type Diffed, type ResourceSpec } from "./resource";
import { claimsOf, conflictMessages, converge, type FactsView, type Wanted } from "./transaction";

/**
 * One resource type's whole flow over the host engine, the same for both front doors: the
 * dynamic provider (dynamicProvider.ts, for Node.js programs) and the provider plugin
 * (provider/plugin/, for every language). Each door turns what its caller sends into BaseInputs
 * and presents Checked and Diffed its own way; nothing here knows which door called.
 */
export interface ResourceCore {
  check(olds: BaseInputs | undefined, news: BaseInputs): Promise<Checked>;
  diff(olds: BaseOutputs, news: BaseInputs): Diffed;
  create(inputs: BaseInputs): Promise<{ id: string; outs: BaseOutputs }>;
  update(olds: BaseOutputs, news: BaseInputs): Promise<BaseOutputs>;
  /** The stored properties with `live` read again from the host. */
  read(id: string, props: BaseOutputs | undefined): Promise<BaseOutputs>;
  delete(props: BaseOutputs): Promise<void>;
}

const transients = ["prefetched", "plan", "warnings"] as const;
/** The inputs every resource of this package carries besides its settings (see BaseInputs). */
const baseFields = new Set(["resourceType", "owner", "scope", "connection", "credentials", "__provider", ...transients]);

/**
 * What `check` found about each resource in this run, for `diff` (the engine calls both in one
 * provider process, check first). Kept here rather than in the inputs: inputs that differ from
 * the stored ones make the engine rewrite the whole state file once per resource, even when
 * nothing changes (measured: a no-op preview of 400 resources spent half its time doing so).
 */
const differsFromHost = new Map<string, boolean>();
const runKey = (props: Pick<BaseInputs, "resourceType" | "scope" | "owner">) => `${props.resourceType}|${props.scope ?? ""}|${props.owner}`;

function describe<S>(spec: ResourceSpec<S>, plan: HostPlan, wanted: Wanted, facts: HostFacts): Record<string, string> {
  const out: Record<string, string> = {};
  for (const step of wanted.prepare) if (!step.optional) out[step.name] = "before the values";
  for (const c of plan.changes) out[spec.display(c.item)] = `${c.from ?? "(absent)"} → ${c.to ?? "(absent)"}`;
  if (wanted.prepare.length > 0) {
    for (const [key, claim] of Object.entries(wanted.claims)) if (liveValue(key, facts) === undefined) out[spec.display(key)] = `(module not loaded) → ${claim.value}`;
  }
  for (const path of Object.keys(plan.writeFiles)) out[path] = path === ledgerPath ? "record owners and original values" : "write";
  for (const path of plan.removeFiles) out[path] = "remove";
  return out;
}

/** Ledger items that are tokens (markers of another item's persistence) have no value of their own to show. */
const shownItem = (key: string) => !key.startsWith("token:");

/**
 * The value each item holds after an up, by display name: what this resource claims, and for an
 * item it releases, what the plan puts back (its original, or another owner's value).
 */
function afterUp<S>(spec: ResourceSpec<S>, wanted: Wanted, plan: HostPlan | undefined): Record<string, string> {
  const after: Record<string, string> = {};
  for (const [key, claim] of Object.entries(wanted.claims)) if (shownItem(key)) after[spec.display(key)] = claim.value;
  for (const c of plan?.changes ?? []) if (shownItem(c.item) && !(c.item in wanted.claims)) after[spec.display(c.item)] = c.to ?? "(absent)";
  return after;
}

const { host: hostField, port: portField } = proxySchema.shape;

/**
 * The host and port a stored connection reaches, with the schema's defaults applied: removing
 * `port: 2222` moves the resource to port 22, which is another sshd (maybe another machine
 * behind a NAT) whose ledger knows nothing of this resource. A value not known yet (preview)
 * stays as the engine sent it, so it counts as a change.
 */
function addressOf(connection: Record<string, unknown> | undefined): [unknown, unknown] {
  const host = hostField.safeParse(connection?.host);
  const port = portField.safeParse(connection?.port ?? undefined);
  return [host.success ? host.data : connection?.host, port.success ? port.data : connection?.port];
}

/**
 * Whether the effective address changed. A connection unknown as a whole (one of its inputs, a
 * credential maybe, isn't known in this preview) can't say; `pulumi up` diffs again once it is known.
 */
function addressChanged(olds: Record<string, unknown> | undefined, news: Record<string, unknown> | undefined): boolean {
  if (typeof news !== "object" || news === null) return false;
  const [oldHost, oldPort] = addressOf(olds);
  const [newHost, newPort] = addressOf(news);
  return oldHost !== newHost || oldPort !== newPort;
}

export function resourceCore<S>(spec: ResourceSpec<S>): ResourceCore {
  const { kind } = spec;
  const pick = (props: BaseInputs) => Object.fromEntries(spec.settingFields.filter((f) => props[f] !== undefined && props[f] !== null).map((f) => [f, props[f]]));
  const settingsOf = (props: BaseInputs) => spec.schema.parse(pick(props));

  function outputsOf(props: BaseInputs, ownerId: string, facts: HostFacts, settings: S): BaseOutputs {
    const wanted = kind.want(settings, facts, { label: labelOf(kind.type, props) });
    const ledger = currentLedger(facts);
    const previous: Record<string, string> = {};
    const live: Record<string, string> = {};
    for (const key of Object.keys(wanted.claims)) {
      if (!shownItem(key)) continue;
      const item = ledger.items[key];
      if (item) previous[spec.display(key)] = item.original ?? "(absent)";
      const value = liveValue(key, facts);
      if (value !== undefined && value !== null) live[spec.display(key)] = value;
    }
    const files = [...kind.backends.map((b) => b.path), ledgerPath].filter((p) => facts.files[p] !== undefined).sort();
    const rest = { ...props };
    for (const t of transients) delete rest[t];
    return { ...rest, ...spec.defaults, ...pick(props), ownerId, previous, live, files, plan: {}, warnings: wanted.warnings, ...spec.outputs?.(settings, facts, wanted) };
  }

  async function convergeResource(target: HostTarget, props: BaseInputs, ownerId: string, formerLabels: string[], rollback: boolean, adopted?: { ownerId: string; view: FactsView }): Promise<BaseOutputs> {
    const settings = settingsOf(props);
    const owner = { id: ownerId, label: labelOf(kind.type, props), formerLabels, alsoRelease: adopted ? [adopted.ownerId] : [] };
    const { facts, earlier, notes } = await converge(kind, target, owner, settings, { rollback, view: adopted?.view });
    const outputs = outputsOf(props, ownerId, facts, settings);
    // A change cut from its connection earlier finished on the host, or an optional step of this
    // one failed: say so, once.
    const said = [...earlier, ...notes];
    return said.length > 0 ? { ...outputs, warnings: [...said, ...(outputs.warnings ?? [])] } : outputs;
  }

  /** check's refusal of a host, each reason after the host's name. */
  const refuse = (target: HostTarget, reasons: string[]): Checked => ({ failures: reasons.map((reason) => ({ property: "connection", reason: `${target.label}: ${reason}` })) });

  /** check's plan of a resource whose settings and host are known, from the host's facts. */
  function planChecked(inputs: BaseInputs, news: BaseInputs, olds: BaseInputs | undefined, settings: S, target: HostTarget, facts: HostFacts): Checked {
    const label = labelOf(kind.type, news);
    // A clash with another resource of this program comes first: it names both, where the
    // host's ledger (a blocker below) can only name the one already applied.
    const wanted = kind.want(settings, facts, { label });
    const values = Object.fromEntries(Object.entries(wanted.claims).map(([item, c]) => [spec.display(item), c.value]));
    const clashes = declareIntents(target.key, label, { ...(kind.intents?.(settings, facts) ?? { needs: [], removes: [] }), values });
    if (clashes.length > 0) return refuse(target, clashes.map((c) => `${c}: drop one of them from this host, or make them agree`));
    if (wanted.blockers.length > 0) return refuse(target, wanted.blockers);
    const labels = [label, ...(olds?.owner ? [labelOf(kind.type, olds)] : [])];
    const mine = ownersLabelled(currentLedger(facts), labels);
    let plan = mine.length === 0 ? spec.legacy?.preview(settings, facts, news, target) : undefined;
    let hostPlan: HostPlan | undefined;
    if (!plan) {
      hostPlan = planHost({ owner: mine[0] ?? "(new)", labels, claims: claimsOf(wanted, label), facts, backends: kind.backends, unreadable: "(module not loaded)" });
      if (hostPlan.conflicts.length > 0) return refuse(target, conflictMessages(hostPlan));
      plan = describe(spec, hostPlan, wanted, facts);
    }
    differsFromHost.set(runKey(news), Object.keys(plan).length > 0);
    return { inputs, plan, after: afterUp(spec, wanted, hostPlan), warnings: wanted.warnings, notes: spec.notes?.(settings, facts) };
  }

  const newOwnerId = (props: BaseInputs) => `${props.scope ?? "-"}/${props.owner}#${randomBytes(4).toString("hex")}`;

  return {
    async check(olds, news) {
      const failures: CheckFailure[] = [];
      if (typeof news.owner !== "string" || news.owner === "") failures.push({ property: "owner", reason: "owner (the resource name) is required" });
      // A misspelt argument would otherwise be dropped without a word (JavaScript programs aren't type-checked).
      for (const k of Object.keys(news)) {
        if (!spec.settingFields.includes(k) && !baseFields.has(k)) failures.push({ property: k, reason: `${kind.type} has no argument ${k}; it takes ${spec.settingFields.join(", ")} and connection` });
      }
      const settingsKnown = !spec.settingFields.some((f) => containsUnknown(news[f]));
      const settings = settingsKnown ? spec.schema.safeParse(pick(news)) : undefined;
      if (settings && !settings.success) failures.push(...failuresOf(settings.error));
      const connectionKnown = !containsUnknown(news.connection) && !containsUnknown(news.credentials);
      const parsed = connectionKnown ? parseTarget({ connection: news.connection, credentials: news.credentials }) : undefined;
      if (parsed && !parsed.success) failures.push(...failuresOf(parsed.error, "connection"));
      if (failures.length > 0) return { failures };

      const inputs: BaseInputs = { ...news, ...Object.fromEntries(Object.entries(spec.defaults).map(([k, v]) => [k, news[k] ?? v])) };
      for (const t of transients) delete inputs[t];
      if (!settings?.success || !parsed?.success) return { inputs };
      // Everything is known: plan from the host's facts (read once per host per run, by the
      // program process when it could) so a preview shows live → desired for each item.
      const target = toTarget(parsed.data);
      const prefetched = usablePrefetch(news);
      // A host that can't be reached fails its own resource's step, not `check`: the engine ends
      // the whole deployment at a failed check, even with --continue-on-error, and one dead host
      // must not stop a fleet (Fleet's maxFailures). The preview shows why the up will fail there.
      const unreachable = (message: string): Checked => {
        // This process won't dial it again in this run: its create or update fails at once.
        rememberUnreachable(target, message);
        differsFromHost.set(runKey(news), true);
        return { inputs, plan: { host: `unreachable: ${message}` }, warnings: [message] };
      };
      if (prefetched?.error) return prefetched.unreachable ? unreachable(prefetched.error) : { failures: [{ property: "connection", reason: prefetched.error }] };
      let facts: HostFacts;
      try {
        facts = prefetched?.output !== undefined ? seedPreviewFacts(target, prefetched.names, prefetched.output) : await previewFacts(target, kind.facts);
      } catch (err) {
        if (isUnreachable(err)) return unreachable((err as Error).message);
        throw err;
      }
      // A host without a tool or flag our scripts use is refused before anything is planned: an
      // apply would fail half way (and facts read without it may be wrong).
      const floor = floorBlockers(facts.tools);
      if (floor.length > 0) return refuse(target, floor);
      try {
        return planChecked(inputs, news, olds, settings.data, target, facts);
      } catch (err) {
        // A ledger broken by hand: the host's name, the file and the fix, not a stack trace.
        if (err instanceof LedgerError) return refuse(target, [err.message]);
        throw err;
      }
    },

    diff(olds, news) {
      const replaces: string[] = [];
      if (addressChanged(olds.connection, news.connection)) replaces.push("connection");
      const settings = spec.settingFields.filter((f) => JSON.stringify(news[f] ?? spec.defaults[f] ?? null) !== JSON.stringify(olds[f] ?? spec.defaults[f] ?? null));
      const connection = JSON.stringify(news.connection) !== JSON.stringify(olds.connection) || JSON.stringify(news.credentials) !== JSON.stringify(olds.credentials);
      const renamed = news.owner !== olds.owner || (news.scope !== undefined && olds.scope !== undefined && news.scope !== olds.scope);
      const drift = differsFromHost.get(runKey(news)) === true || (news.plan !== undefined && (containsUnknown(news.plan) || Object.keys(news.plan).length > 0));
      return { changes: replaces.length > 0 || settings.length > 0 || connection || renamed || drift, replaces, settings, connection, renamed, drift };
    },

    async create(inputs) {
      const target = targetOf(inputs);
      const ownerId = newOwnerId(inputs);
      const outs = await convergeResource(target, inputs, ownerId, [], true);
      return { id: `${target.host}:${target.port}/${ownerId}`, outs };
    },

    async update(olds, news) {
      const target = targetOf(news);
      const formerLabels = olds.owner ? [labelOf(kind.type, olds)] : [];
      if (olds.ownerId) return convergeResource(target, news, olds.ownerId, formerLabels, false);
      // A resource of an older version: it moves into the ledger now, under a new id.
      const adopted = spec.legacy?.adopt(olds, labelOf(kind.type, news));
      return convergeResource(target, news, newOwnerId(news), formerLabels, false, adopted);
    },

    async read(id, props) {
      if (!props) throw new Error(`${kind.type} ${id}: import is not supported; declare the resource and run pulumi up`);
      const target = targetOf(props);
      // One read per host per process serves every resource on it (refresh reads in parallel).
      const facts = await previewFacts(target, kind.facts);
      const live: Record<string, string> = {};
      const settings = spec.schema.safeParse(pick(props));
      const items = settings.success ? Object.keys(kind.want(settings.data, facts, { label: labelOf(kind.type, props) }).claims) : [];
      for (const key of items) {
        const value = liveValue(key, facts);
        if (value !== undefined && value !== null && shownItem(key)) live[spec.display(key)] = value;
      }
      return { ...props, live };
    },

    async delete(props) {
      const target = targetOf(props);
      const label = labelOf(kind.type, props);
      if (props.ownerId) {
        await converge(kind, target, { id: props.ownerId, label }, undefined, { rollback: false });
        return;
      }
      const adopted = spec.legacy?.adopt(props, label);
      if (adopted) await converge(kind, target, { id: adopted.ownerId, label }, undefined, { rollback: false, view: adopted.view });
    },
  };
}
