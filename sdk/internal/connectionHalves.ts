import type { Connection } from "../connection";

/** The secret half of a connection: never shown in previews, stored encrypted in state. */
export interface Credentials {
  password?: string;
  privateKey?: string;
  privateKeyPassword?: string;
  sudoPassword?: string;
  proxy?: { password?: string; privateKey?: string; privateKeyPassword?: string };
}

type Hop = Omit<Connection, "proxy" | "sudo">;

/** The fields of a hop (the host, or its bastion) that are secrets. sudo's password is one too. */
export const secretHopFields = ["password", "privateKey", "privateKeyPassword"] as const;

function publicHop(hop: Hop): Record<string, unknown> {
  const rest: Record<string, unknown> = { ...hop };
  for (const f of secretHopFields) delete rest[f];
  return rest;
}

function secretHop(hop: Hop): { password?: string; privateKey?: string; privateKeyPassword?: string } {
  return { password: hop.password, privateKey: hop.privateKey, privateKeyPassword: hop.privateKeyPassword };
}

/**
 * Splits a plain connection into what previews may show (host, port, user...) and the
 * credentials, which travel and are stored as a separate secret. Undefined fields are dropped,
 * as they are when the engine serializes them.
 */
export function splitPlainConnection(c: Connection): { connection: Record<string, unknown>; credentials: Credentials } {
  const connection = publicHop(c);
  if (c.proxy) connection.proxy = publicHop(c.proxy);
  // The password goes to the credentials; the public half only says that sudo is used.
  if (c.sudo !== undefined) connection.sudo = typeof c.sudo === "object" ? true : c.sudo;
  const credentials: Credentials = secretHop(c);
  if (typeof c.sudo === "object" && c.sudo !== null) credentials.sudoPassword = c.sudo.password;
  if (c.proxy) credentials.proxy = secretHop(c.proxy);
  return JSON.parse(JSON.stringify({ connection, credentials }));
}
