import { describe, expect, it } from "vitest";
import { coreInputs, coreOutputs, parseUrn, secretPathsOf, toPluginProps } from "../../provider/plugin/props";
import { isSecretValue, markSecrets, secret, unwrapSecrets } from "../../provider/plugin/wire";

// What the provider plugin makes of the engine's properties, and what it sends back: the
// connection whole, its credentials secret wherever they are, name and scope from the URN.
const urn = "urn:pulumi:dev::edge-hosts::conntrack:index:ConntrackLimits::web";

describe("the plugin's properties", () => {
  it("reads stack, project, type and name from a URN, parents' types dropped", () => {
    expect(parseUrn("urn:pulumi:dev::proj::pkg:index:Parent$conntrack:index:NotrackRule::a::b")).toEqual({ stack: "dev", project: "proj", type: "conntrack:index:NotrackRule", name: "a::b" });
    expect(() => parseUrn("conntrack:index:NotrackRule")).toThrow("not a resource URN");
  });

  it("gives the core the connection in two halves, the secrets plain, and type, name and scope from the URN", () => {
    const news = { connection: { host: "10.0.0.1", user: "ops", privateKey: secret("KEY"), sudo: { password: secret("PW") }, proxy: { host: "bastion", password: "BPW" } }, max: 1000, live: { x: "1" }, plan: { y: "2" } };
    expect(coreInputs(urn, news)).toEqual({
      resourceType: "ConntrackLimits",
      owner: "web",
      scope: "edge-hosts/dev",
      max: 1000,
      connection: { host: "10.0.0.1", user: "ops", sudo: true, proxy: { host: "bastion" } },
      credentials: { privateKey: "KEY", sudoPassword: "PW", proxy: { password: "BPW" } },
    });
  });

  it("keeps the name a stored resource had (a rename updates its ledger entry, not a twin's)", () => {
    const stored = { connection: { host: "10.0.0.1" }, owner: "old-name", scope: "edge-hosts/dev", ownerId: "edge-hosts/dev/old-name#1", live: { k: "1" } };
    expect(coreOutputs(urn, stored)).toMatchObject({ owner: "old-name", scope: "edge-hosts/dev", ownerId: "edge-hosts/dev/old-name#1", live: { k: "1" }, previous: {}, files: [] });
  });

  it("sends back every credential secret, whether or not the program marked it, and whatever else the program marked", () => {
    const news = { connection: { host: "10.0.0.1", password: "PW", proxy: { host: "b", privateKey: secret("BK") } }, max: secret(1000) };
    const core = coreInputs(urn, news);
    const back = toPluginProps({ ...core, live: { k: "1" } }, secretPathsOf(news));
    const connection = back.connection as Record<string, unknown>;
    expect(isSecretValue(connection.password)).toBe(true);
    expect(isSecretValue((connection.proxy as Record<string, unknown>).privateKey)).toBe(true);
    expect(isSecretValue(back.max)).toBe(true);
    expect(connection.host).toBe("10.0.0.1");
    expect(back.live).toEqual({ k: "1" });
    expect(back).not.toHaveProperty("resourceType");
    expect(back).not.toHaveProperty("credentials");
    expect(unwrapSecrets(back).value).toEqual({ owner: "web", scope: "edge-hosts/dev", max: 1000, live: { k: "1" }, connection: { host: "10.0.0.1", password: "PW", proxy: { host: "b", privateKey: "BK" } } });
  });

  it("leaves a connection not known yet as the engine sent it", () => {
    const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
    const core = coreInputs(urn, { connection: unknown, max: 1 });
    expect(core.connection).toBe(unknown);
    expect(toPluginProps(core, []).connection).toBe(unknown);
  });

  it("marks a path only where the value has it", () => {
    expect(markSecrets({ a: { b: 1 } }, [["a", "c"], ["x"], ["a", "b"]])).toEqual({ a: { b: secret(1) } });
    expect(unwrapSecrets({ a: [secret({ b: secret(2) })] })).toEqual({ value: { a: [{ b: 2 }] }, secrets: [["a", 0]] });
  });
});
