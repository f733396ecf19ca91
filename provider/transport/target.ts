import { createHash } from "node:crypto";
import { connectionSchema, type ParsedConnection } from "../../sdk/connection";
import { secretHopFields, type Credentials } from "../../sdk/internal/connectionHalves";

/** One SSH hop with every default applied and credentials merged back in. */
export type Hop = Omit<ParsedConnection, "proxy" | "sudo">;

/** Everything needed to reach and act on one host. */
export interface HostTarget extends Hop {
  proxy?: Hop;
  sudo: false | true | { password: string };
  /** "user@host:port", used in every message about this host. */
  label: string;
  /** Pool key: one connection per distinct route and login. */
  key: string;
}

/** The connection as the resource stores it: the public half plus the secret half. */
export interface StoredConnection {
  connection: Record<string, unknown>;
  credentials?: Credentials;
}

/** The connection as a program gives it: the two halves merged (the reverse of splitPlainConnection). */
export function joinConnection(stored: StoredConnection): Record<string, unknown> {
  const creds = stored.credentials ?? {};
  const pub = { ...(stored.connection ?? {}) } as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...pub, ...definedOnly(creds, secretHopFields) };
  // An empty secret is kept, so the schema refuses it: dropping it would turn an empty sudo
  // password into passwordless sudo, and an empty password into key authentication.
  if (creds.sudoPassword !== undefined && creds.sudoPassword !== null) merged.sudo = { password: creds.sudoPassword };
  if (pub.proxy && typeof pub.proxy === "object") merged.proxy = { ...(pub.proxy as object), ...definedOnly(creds.proxy ?? {}, secretHopFields) };
  return merged;
}

/** Merges the two halves and validates them; the zod issues are returned for Pulumi's check. */
export function parseTarget(stored: StoredConnection) {
  return connectionSchema.safeParse(joinConnection(stored));
}

export function toTarget(c: ParsedConnection): HostTarget {
  const label = `${c.user}@${c.host}:${c.port}`;
  const via = c.proxy ? ` via ${c.proxy.user}@${c.proxy.host}:${c.proxy.port}` : "";
  // Resources share a connection only when it was opened with the same trust and credentials:
  // a different pinned host key or key must be checked on its own connection.
  const trust = createHash("sha256")
    .update(JSON.stringify([c.hostKey, c.insecureSkipHostKeyCheck, c.privateKey, c.password, c.agentSocketPath, c.sudo, c.proxy]))
    .digest("hex")
    .slice(0, 16);
  return { ...c, label, key: `${label}${via}#${trust}` };
}

function definedOnly(source: object, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = (source as Record<string, unknown>)[k];
    if (v !== undefined && v !== null) out[k] = v;
  }
  return out;
}
