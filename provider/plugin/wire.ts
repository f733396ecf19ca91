import { Struct } from "google-protobuf/google/protobuf/struct_pb";

/**
 * Property values as the engine sends them over gRPC (google.protobuf.Struct), and back.
 * Unknown values (preview) arrive as the same string sentinel the dynamic door sees
 * (provider/dynamic.ts). A secret arrives as an object carrying the signature below, because the
 * plugin says it accepts secrets: its value is unwrapped for the engine core, which works on plain
 * values, and the paths where it was are kept so that what goes back is marked secret again.
 */
const signatureKey = "4dabf18193072939515e22adb298388d";
const secretSignature = "1b47061264138c4ac30d75fd1eb44270";

export type PropertyPath = ReadonlyArray<string | number>;

export function isSecretValue(value: unknown): value is { value: unknown } {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[signatureKey] === secretSignature;
}

export function secret(value: unknown): unknown {
  return { [signatureKey]: secretSignature, value };
}

/** The value without its secret wrappers, and the path of every secret that was in it. */
export function unwrapSecrets(value: unknown, at: PropertyPath = [], found: PropertyPath[] = []): { value: unknown; secrets: PropertyPath[] } {
  if (isSecretValue(value)) {
    found.push(at);
    return { value: unwrapSecrets(value.value, at, []).value, secrets: found };
  }
  if (Array.isArray(value)) return { value: value.map((v, i) => unwrapSecrets(v, [...at, i], found).value), secrets: found };
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = unwrapSecrets(v, [...at, k], found).value;
    return { value: out, secrets: found };
  }
  return { value, secrets: found };
}

/** A copy of `value` with the value at each path that exists in it wrapped as a secret. */
export function markSecrets(value: unknown, paths: readonly PropertyPath[]): unknown {
  let out = value;
  for (const path of paths) out = markAt(out, path);
  return out;
}

function markAt(value: unknown, path: PropertyPath): unknown {
  if (value === undefined || value === null || isSecretValue(value)) return value;
  if (path.length === 0) return secret(value);
  const [head, ...rest] = path;
  if (Array.isArray(value) && typeof head === "number" && head < value.length) return value.map((v, i) => (i === head ? markAt(v, rest) : v));
  if (typeof value === "object" && !Array.isArray(value) && typeof head === "string" && head in value) {
    return { ...(value as Record<string, unknown>), [head]: markAt((value as Record<string, unknown>)[head], rest) };
  }
  return value;
}

export function fromStruct(struct: Struct | undefined): Record<string, unknown> {
  return (struct?.toJavaScript() ?? {}) as Record<string, unknown>;
}

/** Undefined values are dropped (protobuf has none; the engine treats a missing key as absent). */
export function toStruct(value: Record<string, unknown>): Struct {
  return Struct.fromJavaScript(JSON.parse(JSON.stringify(value)));
}
