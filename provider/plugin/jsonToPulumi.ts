/**
 * JSON Schema (as zod v4's toJSONSchema writes it) → the types of a Pulumi package schema. Pulumi's
 * schema has no ranges or patterns: those stay zod's to check, in `check`, and are named in each
 * property's description so a reader of a generated SDK still sees them.
 */
export interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  additionalProperties?: boolean | JsonSchema;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
}

export interface TypeSpec {
  type?: string;
  $ref?: string;
  items?: TypeSpec;
  additionalProperties?: TypeSpec;
  oneOf?: TypeSpec[];
}

export interface PropertySpec extends TypeSpec {
  description?: string;
  default?: unknown;
  secret?: boolean;
}

export interface ObjectTypeSpec {
  type: "object";
  properties: Record<string, PropertySpec>;
  required?: string[];
}

export interface EnumTypeSpec {
  type: string;
  enum: Array<{ name?: string; value: unknown }>;
}

/** How named types are called and which of their properties are secrets. */
export interface Naming {
  /** The package's type token of a type name ("Connection" → "conntrack:index:Connection"). */
  token(name: string): string;
  /** A name to use instead of the one made from the path ("ConntrackLimitsTimeouts" → "ConntrackTimeouts"). */
  renamed: Record<string, string>;
  /** By type name, its properties that hold secrets. */
  secrets: Record<string, readonly string[]>;
}

const pascal = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
/** The name of one element of a list property ("ipVersions" → "IpVersion"). */
const singular = (s: string) => (s.endsWith("s") ? s.slice(0, -1) : s);
const primitives = new Set(["string", "integer", "number", "boolean"]);

export class PulumiTypes {
  /** By type token. */
  readonly types: Record<string, ObjectTypeSpec | EnumTypeSpec> = {};

  constructor(private readonly naming: Naming) {}

  /**
   * The properties of an object schema, its named types registered under `name` and below.
   * `given`: properties already described (a shared type such as the connection), by field.
   */
  objectProperties(json: JsonSchema, name: string, given: Record<string, PropertySpec> = {}): { properties: Record<string, PropertySpec>; required: string[] } {
    const properties: Record<string, PropertySpec> = {};
    const secrets = this.naming.secrets[name] ?? [];
    for (const [field, schema] of Object.entries(json.properties ?? {})) {
      if (given[field]) {
        properties[field] = given[field];
        continue;
      }
      const property: PropertySpec = { ...this.typeOf(schema, `${name}${pascal(field)}`) };
      const description = constraintsOf(schema);
      if (description) property.description = description;
      if (schema.default !== undefined && isPrimitiveValue(schema.default)) property.default = schema.default;
      if (secrets.includes(field)) property.secret = true;
      properties[field] = property;
    }
    // A value that may be null is not always there.
    const nullable = (field: string) => json.properties?.[field]?.anyOf?.some((m) => m.type === "null") === true;
    return { properties, required: (json.required ?? []).filter((f) => !nullable(f)).sort() };
  }

  typeOf(json: JsonSchema, name: string): TypeSpec {
    const members = (json.anyOf ?? []).filter((m) => m.type !== "null");
    if (json.anyOf && members.every((m) => m.const !== undefined)) return this.enumType(name, members.map((m) => m.const), members[0]?.type);
    if (json.anyOf) return members.length === 1 ? this.typeOf(members[0], name) : { oneOf: members.map((m) => this.typeOf(m, name)) };
    if (json.enum) return this.enumType(name, json.enum, json.type);
    if (json.type === "array") return { type: "array", items: this.typeOf(json.items ?? {}, singular(name)) };
    if (json.type === "object" && json.properties) return this.objectType(json, name);
    if (json.type === "object") return { type: "object", additionalProperties: typeof json.additionalProperties === "object" ? this.typeOf(json.additionalProperties, name) : { type: "string" } };
    if (json.type && primitives.has(json.type)) return { type: json.type };
    throw new Error(`a package schema can't express ${JSON.stringify(json)} (at ${name})`);
  }

  private named(name: string): string {
    return this.naming.renamed[name] ?? name;
  }

  private objectType(json: JsonSchema, path: string): TypeSpec {
    const name = this.named(path);
    const token = this.naming.token(name);
    if (!this.types[token]) {
      const { properties, required } = this.objectProperties(json, name);
      this.types[token] = { type: "object", properties, ...(required.length > 0 ? { required } : {}) };
    }
    return { $ref: `#/types/${this.naming.token(name)}` };
  }

  private enumType(path: string, values: unknown[], type = typeof values[0] === "string" ? "string" : "integer"): TypeSpec {
    const name = this.named(path);
    // SDKs name each value; a number has to be given a name that is an identifier.
    const enumType = type === "number" ? "integer" : type;
    this.types[this.naming.token(name)] = { type: enumType, enum: values.map((value) => (typeof value === "string" ? { value } : { name: `${name}${String(value)}`, value })) };
    return { $ref: `#/types/${this.naming.token(name)}` };
  }
}

function isPrimitiveValue(value: unknown): boolean {
  return ["string", "number", "boolean"].includes(typeof value);
}

/** The bounds the schema checks, in words (Pulumi's schema has no place for them). */
export function constraintsOf(json: JsonSchema): string | undefined {
  const said: string[] = [];
  // zod bounds every whole number by the safe integers: no bound a reader needs told.
  const minimum = json.minimum === Number.MIN_SAFE_INTEGER ? undefined : json.minimum;
  const maximum = json.maximum === Number.MAX_SAFE_INTEGER ? undefined : json.maximum;
  if (minimum !== undefined && maximum !== undefined) said.push(`From ${minimum} to ${maximum}.`);
  else if (minimum !== undefined) said.push(`At least ${minimum}.`);
  else if (maximum !== undefined) said.push(`At most ${maximum}.`);
  if (json.type === "integer" && said.length > 0) said.unshift("A whole number.");
  if (json.exclusiveMinimum !== undefined) said.push(`More than ${json.exclusiveMinimum}.`);
  if (json.minLength === 1) said.push("Not empty.");
  else if (json.minLength !== undefined) said.push(`At least ${json.minLength} characters.`);
  if (json.minItems !== undefined || json.maxItems !== undefined) said.push(`${json.minItems ?? 0} to ${json.maxItems ?? "any number of"} entries.`);
  if (json.pattern !== undefined) said.push(`Matches ${json.pattern}.`);
  if (json.default !== undefined && !isPrimitiveValue(json.default)) said.push(`Default: ${JSON.stringify(json.default)}.`);
  return said.length > 0 ? said.join(" ") : undefined;
}
