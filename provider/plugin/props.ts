import type { Connection } from "../../sdk/connection";
import { secretHopFields, splitPlainConnection, type Credentials } from "../../sdk/internal/connectionHalves";
import { containsUnknown, unknown } from "../dynamic";
import type { BaseInputs, BaseOutputs } from "../engine/resource";
import { joinConnection } from "../transport/target";
import { markSecrets, unwrapSecrets, type PropertyPath } from "./wire";

/**
 * The plugin door's properties ↔ the engine core's BaseInputs. A plugin resource keeps one
 * `connection`, as a program writes it, with its credentials marked secret wherever they are
 * (the core, like the dynamic door's state, keeps them apart in `credentials`). Type, name and
 * project/stack come from the URN, not from the program; they are stored with the outputs only,
 * so that an update after a rename still knows the name the host's ledger has.
 */
export interface Urn {
  stack: string;
  project: string;
  /** The type token, without the parents' types ("conntrack:index:ConntrackLimits"). */
  type: string;
  name: string;
}

/** urn:pulumi:<stack>::<project>::<parent types$>type::<name> */
export function parseUrn(urn: string): Urn {
  const parts = urn.split("::");
  if (parts.length < 4 || !parts[0].startsWith("urn:pulumi:")) throw new Error(`not a resource URN: ${urn}`);
  const qualified = parts[2];
  return { stack: parts[0].slice("urn:pulumi:".length), project: parts[1], type: qualified.slice(qualified.lastIndexOf("$") + 1), name: parts.slice(3).join("::") };
}

/** Properties this door adds to the inputs `check` returns (see toPluginInputs): none of them is the program's. */
const addedByCheck = ["live", "plan", "resolved"];

/** Where a connection holds secrets, whether or not the program marked them. */
const credentialPaths: PropertyPath[] = [
  ...secretHopFields.map((f) => ["connection", f]),
  ...secretHopFields.map((f) => ["connection", "proxy", f]),
  ["connection", "sudo", "password"],
];

function splitConnection(connection: unknown): { connection: Record<string, unknown>; credentials?: Credentials } {
  if (typeof connection !== "object" || connection === null || Array.isArray(connection)) {
    // Not known yet, or not an object: the core's check says what is wrong with it.
    return { connection: connection as Record<string, unknown>, credentials: containsUnknown(connection) ? (unknown as never) : undefined };
  }
  return splitPlainConnection(connection as Connection);
}

/** The inputs the engine sends (`check`'s news, or what it returned before), for the core. */
export function coreInputs(urn: string, props: Record<string, unknown>): BaseInputs {
  const { value } = unwrapSecrets(props);
  const { connection, ...rest } = value as Record<string, unknown>;
  for (const k of addedByCheck) delete rest[k];
  const { type, name, project, stack } = parseUrn(urn);
  return { ...rest, ...splitConnection(connection), resourceType: type.slice(type.lastIndexOf(":") + 1), owner: name, scope: `${project}/${stack}` };
}

/** A resource's stored outputs, for the core: its name and scope as it stored them (a rename keeps its ledger entries). */
export function coreOutputs(urn: string, props: Record<string, unknown>): BaseOutputs {
  const { value } = unwrapSecrets(props);
  const stored = value as Record<string, unknown>;
  const fromUrn = coreInputs(urn, stored);
  const outputs = { ...stored, ...fromUrn, live: stored.live ?? {}, previous: stored.previous ?? {}, files: stored.files ?? [] } as BaseOutputs;
  if (typeof stored.owner === "string") outputs.owner = stored.owner;
  if (typeof stored.scope === "string") outputs.scope = stored.scope;
  return outputs;
}

/**
 * What goes back to the engine: the connection whole again, every credential in it and every
 * value the program sent as a secret marked secret. `secrets` are the paths the engine marked.
 */
export function toPluginProps(props: Record<string, unknown>, secrets: readonly PropertyPath[]): Record<string, unknown> {
  const { resourceType: _type, connection, credentials, ...rest } = props as Partial<BaseInputs>;
  // A connection not known as a whole (preview) stays as it came; one with unknown fields is joined like any.
  const whole = typeof connection === "object" && connection !== null && typeof (credentials ?? {}) === "object";
  const joined = whole ? joinConnection({ connection, credentials }) : connection;
  return markSecrets({ ...rest, connection: joined }, [...credentialPaths, ...secrets]) as Record<string, unknown>;
}

/** The paths the engine marked secret in what it sent. */
export function secretPathsOf(props: Record<string, unknown>): PropertyPath[] {
  return unwrapSecrets(props).secrets;
}
