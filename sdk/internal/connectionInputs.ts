import * as pulumi from "@pulumi/pulumi";
import type { Connection, ConnectionInput } from "../connection";
import { splitPlainConnection, type Credentials } from "./connectionHalves";
import { maskInDebugLog } from "./debugLog";

export type { Credentials } from "./connectionHalves";

/**
 * Splits a connection into what previews may show (host, port, user...) and the credentials,
 * which travel as a separate secret property so they never reach plain state or diffs.
 */
export function splitConnection(input: pulumi.Input<ConnectionInput>): SplitConnection {
  // Resources on one host usually get the same connection object: they share its two outputs.
  // Each output costs the SDK a few KB of promises for the whole run (3 MB per 400 resources).
  // An object changed since (one object reused for each host, its host set in a loop) is split
  // again: like pulumi.output, this takes the values it holds when the resource is constructed.
  if (typeof input !== "object" || input === null) return split(input);
  const now = pulumi.Output.isInstance(input) ? undefined : contentOf(input);
  const known = splitOf.get(input);
  if (known && (now === undefined || (known.content !== undefined && sameContent(known.content, now)))) return known.split;
  const fresh = split(input);
  splitOf.set(input, { content: now, split: fresh });
  return fresh;
}

export interface SplitConnection {
  connection: pulumi.Output<Record<string, unknown>>;
  credentials: pulumi.Output<Credentials>;
  /**
   * Both halves as one output that isn't secret, for the program's own read of the host
   * (prefetch.ts, whose result holds no credential). Made on first use, once per split: the
   * resources on a host share it.
   */
  readonly forReading: pulumi.Output<object>;
}

const splitOf = new WeakMap<object, { content: Content | undefined; split: SplitConnection }>();

/** A plain object's own values, nested plain objects (proxy, sudo) as their own values; outputs and promises as they are. */
type Content = Map<string, unknown>;

function contentOf(value: object): Content {
  const content: Content = new Map();
  for (const [k, v] of Object.entries(value)) {
    const plain = typeof v === "object" && v !== null && !pulumi.Output.isInstance(v) && !(v instanceof Promise);
    content.set(k, plain ? contentOf(v) : v);
  }
  return content;
}

function sameContent(a: Content, b: Content): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (v instanceof Map && w instanceof Map ? !sameContent(v, w) : v !== w || !b.has(k)) return false;
  }
  return true;
}

function split(input: pulumi.Input<ConnectionInput>): SplitConnection {
  const all = pulumi.output(input as pulumi.Input<Connection>);
  const connection = pulumi.unsecret(all.apply((c): Record<string, unknown> => splitPlainConnection(c).connection));
  const credentials = pulumi.secret(
    all.apply((c): Credentials => {
      const creds = splitPlainConnection(c).credentials;
      maskInDebugLog([creds.password, creds.privateKey, creds.privateKeyPassword, creds.sudoPassword, creds.proxy?.password, creds.proxy?.privateKey, creds.proxy?.privateKeyPassword]);
      return creds;
    }),
  );
  let forReading: SplitConnection["forReading"] | undefined;
  return {
    connection,
    credentials,
    get forReading() {
      forReading ??= pulumi.unsecret(pulumi.all([connection, credentials]).apply(([c, creds]): object => ({ connection: c, credentials: creds })));
      return forReading;
    },
  };
}
