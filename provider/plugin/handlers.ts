import { failuresOf, unknown } from "../dynamic";
import type { CheckFailure } from "../engine/resource";
import { readConntrackStatus } from "../status";
import { isUnreachable } from "../transport/dial";
import { detailedDiff, type DetailedDiff } from "./detailedDiff";
import type { EngineLog } from "./engineLog";
import { conntrackStatusArgsSchema } from "./outputs";
import { coreInputs, coreOutputs, parseUrn, secretPathsOf, toPluginProps } from "./props";
import { pluginResources, statusFunctionToken, type PluginResource } from "./resources";
import { unwrapSecrets } from "./wire";

type Props = Record<string, unknown>;

/**
 * The provider plugin's resource operations on plain values (server.ts does the protobuf): each
 * one turns what the engine sent into the engine core's terms, calls the core, and presents the
 * result the plugin's way. Warnings go to the engine as diagnostics on the resource, once each.
 */
export class PluginHandlers {
  /** By URN, the warnings already shown in this run (check shows them; an update adds what the host said). */
  private readonly shown = new Map<string, Set<string>>();

  constructor(private readonly log: EngineLog) {}

  async check(urn: string, olds: Props, news: Props): Promise<{ inputs?: Props; failures: CheckFailure[] }> {
    const resource = resourceOf(urn);
    const checked = await resource.core.check(Object.keys(olds).length > 0 ? coreInputs(urn, olds) : undefined, coreInputs(urn, news));
    if (checked.failures) return { failures: checked.failures };
    await this.warn(urn, checked.warnings ?? []);
    // Name and scope come from the URN each time: stored inputs keep only what the program said,
    // and what the host will hold after the up (`live`, for the per-key diff) and how (`plan`).
    const { owner: _owner, scope: _scope, ...inputs } = checked.inputs;
    const { after, plan, notes } = checked;
    const added = { ...(after ? { live: after } : {}), ...(plan && Object.keys(plan).length > 0 ? { plan } : {}), ...notes };
    return { inputs: toPluginProps({ ...inputs, ...added }, secretPathsOf(news)), failures: [] };
  }

  diff(urn: string, oldInputs: Props, oldOutputs: Props, news: Props): { changes: boolean; replaces: string[]; detailed: DetailedDiff } {
    const resource = resourceOf(urn);
    const diffed = resource.core.diff(coreOutputs(urn, oldOutputs), coreInputs(urn, news));
    const plain = (props: Props) => unwrapSecrets(props).value as Props;
    const detailed = detailedDiff({ oldOutputs: plain(oldOutputs), oldInputs: plain(oldInputs), news: plain(news), diffed, settingFields: resource.spec.settingFields });
    return { changes: diffed.changes, replaces: diffed.replaces, detailed };
  }

  async create(urn: string, props: Props, preview: boolean): Promise<{ id: string; props: Props }> {
    const resource = resourceOf(urn);
    if (preview) return { id: "", props: previewOutputs(resource, props) };
    const { id, outs } = await resource.core.create(coreInputs(urn, props));
    await this.warn(urn, outs.warnings ?? []);
    return { id, props: toPluginProps(outs, secretPathsOf(props)) };
  }

  async update(urn: string, olds: Props, news: Props, preview: boolean): Promise<Props> {
    const resource = resourceOf(urn);
    if (preview) return previewOutputs(resource, news);
    const outs = await resource.core.update(coreOutputs(urn, olds), coreInputs(urn, news));
    await this.warn(urn, outs.warnings ?? []);
    return toPluginProps(outs, secretPathsOf(news));
  }

  /**
   * A refresh, and the refresh the engine runs before every preview and update of these resources
   * (they ask for it: server.ts). A host that can't be reached keeps the values last read, with a
   * warning: one dead host must not stop a preview of the others (its `check` says it is
   * unreachable, and its update fails).
   */
  async read(urn: string, id: string, props: Props): Promise<Props> {
    const resource = resourceOf(urn);
    try {
      const outs = await resource.core.read(id, Object.keys(props).length > 0 ? coreOutputs(urn, props) : undefined);
      return toPluginProps(outs, secretPathsOf(props));
    } catch (err) {
      if (!isUnreachable(err)) throw err;
      await this.warn(urn, [`could not read the host, so live shows the values read before: ${(err as Error).message}`]);
      return props;
    }
  }

  async delete(urn: string, props: Props): Promise<void> {
    await resourceOf(urn).core.delete(coreOutputs(urn, props));
  }

  async invoke(token: string, args: Props): Promise<{ result?: Props; failures: CheckFailure[] }> {
    if (token !== statusFunctionToken) throw new Error(`pulumi-resource-conntrack has no function ${token}; it has ${statusFunctionToken}`);
    const parsed = conntrackStatusArgsSchema.safeParse(unwrapSecrets(args).value);
    if (!parsed.success) return { failures: failuresOf(parsed.error) };
    // The readings hold no secret, even when the connection is one.
    return { result: { ...(await readConntrackStatus(parsed.data.connection)) }, failures: [] };
  }

  private async warn(urn: string, warnings: string[]): Promise<void> {
    const shown = this.shown.get(urn) ?? new Set<string>();
    this.shown.set(urn, shown);
    for (const warning of warnings) {
      if (shown.has(warning)) continue;
      shown.add(warning);
      await this.log.warn(urn, warning);
    }
  }
}

function resourceOf(urn: string): PluginResource {
  const { type } = parseUrn(urn);
  const resource = pluginResources.get(type);
  if (!resource) throw new Error(`pulumi-resource-conntrack has no resource type ${type}; it has ${[...pluginResources.keys()].join(", ")}`);
  return resource;
}

/** A preview's outputs: what the inputs say, and every output only the host can tell, unknown. */
function previewOutputs(resource: PluginResource, props: Props): Props {
  const unknowns = Object.fromEntries(Object.keys(resource.outputs.shape).filter((k) => !(k in props)).map((k) => [k, unknown]));
  return { ...unknowns, ...props };
}
