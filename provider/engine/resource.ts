import type { z } from "zod";
import type { Credentials } from "../../sdk/internal/connectionHalves";
import { containsUnknown } from "../dynamic";
import type { HostFacts } from "../facts/host";
import type { HostTarget } from "../transport/target";
import type { Prefetched } from "./hostFacts";
import type { FactsView, ResourceKind, Wanted } from "./transaction";

/** What every resource of this package stores as inputs, besides its own settings. */
export interface BaseInputs {
  resourceType: string;
  /** The resource's name. */
  owner: string;
  /** "project/stack" of the program (absent in stacks written by 0.1). */
  scope?: string;
  connection: Record<string, unknown>;
  credentials?: Credentials;
  /** Facts the program read for this run (provider/prefetch.ts); never stored. */
  prefetched?: Prefetched;
  /** Preview only, and only when not empty: "key": "live → desired" for what an up would change. */
  plan?: Record<string, string>;
  warnings?: string[];
  [setting: string]: unknown;
}

export interface BaseOutputs extends BaseInputs {
  /** This resource's id in the host's ledger (kept across renames). */
  ownerId?: string;
  previous: Record<string, string>;
  live: Record<string, string>;
  files: string[];
}

/** An older version's resource the engine adopts (see conntrackLimits/legacy.ts). */
export interface LegacySupport<S> {
  /** A preview of such a resource that hasn't moved to the ledger yet (undefined: not one). */
  preview(settings: S, facts: HostFacts, props: BaseInputs, target: HostTarget): Record<string, string> | undefined;
  /** For its update or destroy: the owner id it is known by and the view that adopts it. */
  adopt(outputs: BaseOutputs, label: string): { ownerId: string; view: FactsView } | undefined;
}

/** Everything a resource type supplies; the rest of a dynamic provider is the same for all. */
export interface ResourceSpec<S> {
  kind: ResourceKind<S>;
  schema: z.ZodType<S>;
  settingFields: readonly string[];
  /** Defaults the schema applies, echoed into the inputs so a diff doesn't see them as changes. */
  defaults: Record<string, unknown>;
  /** How an item is named in previews and outputs. */
  display(item: string): string;
  /** Outputs of its own (estimates, ...). */
  outputs?(settings: S, facts: HostFacts, wanted: Wanted): Record<string, unknown>;
  legacy?: LegacySupport<S>;
  /** Facts about the settings on this host that a preview shows and outputs keep (what each module name resolves to). */
  notes?(settings: S, facts: HostFacts): Record<string, unknown>;
}

/** A property the door names and why `check` refuses it. */
export interface CheckFailure {
  property: string;
  reason: string;
}

/** What `check` makes of a resource's inputs, for either door to present its own way. */
export type Checked =
  | { failures: CheckFailure[] }
  | {
      failures?: undefined;
      /** What state stores: the settings with their defaults, the connection, type, name and scope; no transients. */
      inputs: BaseInputs;
      /** What may undo or hurt the settings; absent when nothing could be planned (values not known yet). */
      warnings?: string[];
      /** What an up changes ("item": "live → desired", files, the ledger); {} when converged. */
      plan?: Record<string, string>;
      /** Each item this resource manages, or an up releases, by its display name: the value the host holds after the up. */
      after?: Record<string, string>;
      /** Facts about the settings on this host (ResourceSpec.notes). */
      notes?: Record<string, unknown>;
    };

/** What `diff` found, for either door to present its own way. */
export interface Diffed {
  changes: boolean;
  /** Properties whose change replaces the resource. */
  replaces: string[];
  /** Setting fields whose value, defaults applied, changed. */
  settings: string[];
  /** The connection or its credentials changed. */
  connection: boolean;
  /** The resource's name or its project/stack changed (an alias). */
  renamed: boolean;
  /** The host differs from what the resource wants (found by `check` in this run). */
  drift: boolean;
}

/** The facts the program read for this run, when they are usable (none of them unknown). */
export function usablePrefetch(news: BaseInputs): Prefetched | undefined {
  return news.prefetched && !containsUnknown(news.prefetched) ? news.prefetched : undefined;
}

export function labelOf(type: string, props: Pick<BaseInputs, "owner" | "scope">): string {
  return `${props.scope ? `${props.scope}/` : ""}${type}/${props.owner}`;
}
