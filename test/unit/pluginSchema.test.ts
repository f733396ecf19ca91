import { describe, expect, it } from "vitest";
import { connectionSchema } from "../../sdk/connection";
import { conntrackStatusSchema, resourceOutputSchemas } from "../../provider/plugin/outputs";
import { pluginResources, statusFunctionToken } from "../../provider/plugin/resources";
import { packageSchema } from "../../provider/plugin/schema";

// The package schema the plugin serves is generated from the zod schemas; this reads the zod
// schemas themselves (not their JSON Schema) and holds every property, default and enum of the
// generated schema to them.
type Property = { type?: string; $ref?: string; items?: Property; additionalProperties?: Property; oneOf?: Property[]; default?: unknown; secret?: boolean; description?: string };
type ObjectType = { properties: Record<string, Property>; required?: string[]; enum?: Array<{ value: unknown }> };
const schema = packageSchema("9.9.9") as {
  version: string;
  types: Record<string, ObjectType & { type: string }>;
  resources: Record<string, { inputProperties: Record<string, Property>; requiredInputs: string[]; properties: Record<string, Property>; required: string[] }>;
  functions: Record<string, { inputs: ObjectType; outputs: ObjectType }>;
};

type Def = { type: string; innerType?: ZodLike; defaultValue?: unknown; element?: ZodLike; valueType?: ZodLike; options?: ZodLike[]; values?: unknown[] };
type ZodLike = { _zod: { def: Def }; options?: unknown[]; isInt?: boolean; shape?: Record<string, ZodLike> };

/** A field's schema with optional() and default() taken off, and what they said. */
function field(schema: ZodLike): { inner: ZodLike; optional: boolean; defaultValue?: unknown } {
  let inner = schema;
  let optional = false;
  let defaultValue: unknown;
  while (inner._zod.def.innerType) {
    if (inner._zod.def.type === "optional") optional = true;
    if (inner._zod.def.type === "default") defaultValue = inner._zod.def.defaultValue;
    inner = inner._zod.def.innerType;
  }
  return { inner, optional: optional || defaultValue !== undefined, defaultValue };
}

const typeOf = (ref: string | undefined) => schema.types[(ref ?? "").replace("#/types/", "")];

/** The values a zod enum, or a union of literals, allows. */
function allowed(inner: ZodLike): unknown[] | undefined {
  if (inner._zod.def.type === "enum") return inner.options;
  const options = inner._zod.def.options;
  if (options?.every((o) => o._zod.def.type === "literal")) return options.flatMap((o) => o._zod.def.values ?? []);
  return undefined;
}

/** One property of the generated schema against the zod field it was made from. */
function expectProperty(name: string, property: Property, zodField: ZodLike): void {
  const { inner, defaultValue } = field(zodField);
  const where = `${name}: ${JSON.stringify(property)}`;
  if (defaultValue !== undefined && typeof defaultValue !== "object") expect(property.default, where).toEqual(defaultValue);
  if (typeof defaultValue === "object") expect(property.description, where).toContain(`Default: ${JSON.stringify(defaultValue)}.`);
  if (defaultValue === undefined) expect(property.default, where).toBeUndefined();
  const values = allowed(inner);
  const kind = inner._zod.def.type;
  if (values) {
    expect(typeOf(property.$ref)?.enum?.map((e) => e.value), where).toEqual(values);
  } else if (kind === "array") {
    const element = field(inner._zod.def.element!).inner;
    const elementValues = allowed(element);
    if (elementValues) expect(typeOf(property.items?.$ref)?.enum?.map((e) => e.value), where).toEqual(elementValues);
    else if (element._zod.def.type === "union") expect(property.items?.oneOf?.map((o) => o.type), where).toEqual(element._zod.def.options!.map((o) => (o.isInt ? "integer" : o._zod.def.type)));
    else expect(property.items?.type, where).toBe(element._zod.def.type);
  } else if (kind === "object") {
    expectObject(name, typeOf(property.$ref), inner);
  } else if (kind === "record") {
    expect(property.type, where).toBe("object");
    expect(property.additionalProperties?.type, where).toBe(inner._zod.def.valueType!._zod.def.type);
  } else if (kind === "number") {
    expect(property.type, where).toBe(inner.isInt ? "integer" : "number");
  } else if (kind !== "union") {
    expect(property.type, where).toBe(kind);
  }
}

function expectObject(name: string, type: ObjectType | undefined, zodObject: ZodLike): void {
  expect(type, name).toBeDefined();
  const shape = zodObject.shape!;
  expect(Object.keys(type!.properties).sort(), name).toEqual(Object.keys(shape).sort());
  for (const [key, zodField] of Object.entries(shape)) expectProperty(`${name}.${key}`, type!.properties[key], zodField);
  expect(type!.required ?? [], name).toEqual(Object.keys(shape).filter((k) => !field(shape[k]).optional).sort());
}

describe("the generated package schema", () => {
  it("has the version it is given and the four resources and the function by their tokens", () => {
    expect(schema.version).toBe("9.9.9");
    expect(Object.keys(schema.resources).sort()).toEqual(["conntrack:index:ConntrackLimits", "conntrack:index:FirewallState", "conntrack:index:KernelModuleSet", "conntrack:index:NotrackRule"]);
    expect(Object.keys(schema.functions)).toEqual([statusFunctionToken]);
  });

  it.each([...pluginResources.entries()])("%s: every setting with its type, default and enum; the connection; the outputs", (token, resource) => {
    const spec = schema.resources[token];
    const shape = (resource.spec.schema as unknown as ZodLike).shape!;
    expect(Object.keys(spec.inputProperties).sort()).toEqual(["connection", ...Object.keys(shape)].sort());
    for (const [key, zodField] of Object.entries(shape)) expectProperty(`${token}.${key}`, spec.inputProperties[key], zodField);
    expect(spec.requiredInputs.sort()).toEqual(["connection", ...Object.keys(shape).filter((k) => !field(shape[k]).optional)].sort());
    expect(spec.inputProperties.connection.$ref).toBe("#/types/conntrack:index:Connection");
    const outputs = resourceOutputSchemas[resource.type as keyof typeof resourceOutputSchemas].shape as Record<string, ZodLike>;
    for (const [key, zodField] of Object.entries(outputs)) expectProperty(`${token} output ${key}`, spec.properties[key], zodField);
    // A setting with a default is always in the outputs.
    expect(spec.required).toEqual(expect.arrayContaining(Object.keys(shape).filter((k) => field(shape[k]).defaultValue !== undefined)));
  });

  it("describes the connection as the schema checks it, its credentials secret", () => {
    expectObject("Connection", typeOf("conntrack:index:Connection"), connectionSchema as unknown as ZodLike);
    const secretsOf = (name: string) => Object.entries(typeOf(`conntrack:index:${name}`).properties).filter(([, p]) => p.secret).map(([k]) => k);
    expect(secretsOf("Connection")).toEqual(["password", "privateKey", "privateKeyPassword"]);
    expect(secretsOf("ConnectionProxy")).toEqual(["password", "privateKey", "privateKeyPassword"]);
    expect(secretsOf("ConnectionSudo")).toEqual(["password"]);
    expect(typeOf("conntrack:index:Connection").properties.sudo.oneOf).toEqual([{ type: "boolean" }, { $ref: "#/types/conntrack:index:ConnectionSudo" }]);
  });

  it("gives getConntrackStatus the connection and the readings the SDK's function returns", () => {
    const fn = schema.functions[statusFunctionToken];
    expect(fn.inputs.properties.connection.$ref).toBe("#/types/conntrack:index:Connection");
    expect(fn.inputs.required).toEqual(["connection"]);
    const shape = (conntrackStatusSchema as unknown as ZodLike).shape!;
    for (const [key, zodField] of Object.entries(shape)) expectProperty(`getConntrackStatus.${key}`, fn.outputs.properties[key], zodField);
    // Counters the kernel may lack are null: not always there.
    expect(fn.outputs.required).not.toContain("drop");
    expect(fn.outputs.required).toContain("count");
  });

  it("checks what it claims: a schema with a wrong default fails", () => {
    const wrong = { ...schema.resources["conntrack:index:NotrackRule"].inputProperties.protocol, default: "udp" };
    expect(() => expectProperty("protocol", wrong, (pluginResources.get("conntrack:index:NotrackRule")!.spec.schema as unknown as ZodLike).shape!.protocol)).toThrow();
  });
});
