import { z } from "zod";
import { connectionSchema } from "../../sdk/connection";
import { secretHopFields } from "../../sdk/internal/connectionHalves";
import { PulumiTypes, type JsonSchema, type PropertySpec } from "./jsonToPulumi";
import { conntrackStatusArgsSchema, conntrackStatusSchema } from "./outputs";
import { packageName, pluginResources, statusFunctionToken, tokenOf } from "./resources";

/**
 * The package schema the plugin serves (GetSchema), generated from the zod schemas every door
 * validates with: each resource's settings and the connection (sdk/), and what the resources and
 * getConntrackStatus return (outputs.ts). Code generators and Pulumi YAML's type checker read it.
 */
const naming = {
  token: tokenOf,
  // The Node.js SDK's name for it.
  renamed: { ConntrackLimitsTimeouts: "ConntrackTimeouts" } as Record<string, string>,
  secrets: { Connection: secretHopFields, ConnectionProxy: secretHopFields, ConnectionSudo: ["password"] } as Record<string, readonly string[]>,
};

const jsonOf = (schema: z.ZodType, io: "input" | "output") => z.toJSONSchema(schema, { io, unrepresentable: "any" }) as JsonSchema;

/** Every resource and the function take the same connection: one type, Connection. */
const connectionProperty = (types: PulumiTypes): { connection: PropertySpec } => {
  const type = types.typeOf(jsonOf(connectionSchema, "input"), "Connection");
  return { connection: { ...type, description: "How to reach the host over SSH." } };
};

export function packageSchema(version: string): Record<string, unknown> {
  const types = new PulumiTypes(naming);
  const resources: Record<string, unknown> = {};
  for (const [token, resource] of pluginResources) {
    const inputs = types.objectProperties(jsonOf(resource.spec.schema, "input"), resource.type);
    const settings = types.objectProperties(jsonOf(resource.spec.schema, "output"), resource.type);
    const outputs = types.objectProperties(jsonOf(resource.outputs, "output"), resource.type);
    const { connection } = connectionProperty(types);
    resources[token] = {
      inputProperties: { connection, ...inputs.properties },
      requiredInputs: ["connection", ...inputs.required],
      properties: { connection, ...settings.properties, ...outputs.properties },
      required: ["connection", ...settings.required, ...outputs.required],
    };
  }
  const args = types.objectProperties(jsonOf(conntrackStatusArgsSchema, "input"), "GetConntrackStatusArgs", connectionProperty(types));
  const status = types.objectProperties(jsonOf(conntrackStatusSchema, "output"), "ConntrackStatus");
  return {
    name: packageName,
    displayName: "pulumi-conntrack",
    version,
    description: "Manage netfilter connection tracking (conntrack) on Linux hosts over SSH",
    license: "Apache-2.0",
    keywords: ["conntrack", "netfilter", "iptables", "linux", "ssh"],
    meta: { moduleFormat: "(.*)" },
    config: {},
    provider: {},
    types: types.types,
    resources,
    functions: { [statusFunctionToken]: { inputs: args, outputs: status } },
  };
}
