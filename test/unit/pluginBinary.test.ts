import * as grpc from "@grpc/grpc-js";
import { EngineService } from "@pulumi/pulumi/proto/engine_grpc_pb";
import { LogSeverity, type LogRequest } from "@pulumi/pulumi/proto/engine_pb";
import type { PluginInfo } from "@pulumi/pulumi/proto/plugin_pb";
import { ResourceProviderClient } from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as proto from "@pulumi/pulumi/proto/provider_pb";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageSchema } from "../../provider/plugin/schema";
import { isSecretValue, secret } from "../../provider/plugin/wire";

// bin/pulumi-resource-conntrack as the Pulumi CLI starts it, on code compiled for this run, with
// a stand-in engine that records diagnostics. No host is contacted: the one connection tried is
// to a port of this machine that nothing listens on.
const repo = resolve(import.meta.dirname, "..", "..");
const version = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string }).version;
const urn = (type: string, name = "web") => `urn:pulumi:dev::edge::conntrack:index:${type}::${name}`;
let dir: string;
let plugin: ChildProcess;
let client: ResourceProviderClient;
let engine: grpc.Server;
const logged: LogRequest[] = [];
let closedPort: number;

type Callback<Res> = (err: grpc.ServiceError | null, res: Res) => void;
function call<Res>(method: string, req: unknown): Promise<Res> {
  const rpc = (client as unknown as Record<string, (req: unknown, cb: Callback<Res>) => void>)[method];
  return new Promise<Res>((done, fail) => rpc.call(client, req, (err, res) => (err ? fail(err) : done(res))));
}
const struct = (value: object) => Struct.fromJavaScript(value as never);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pct-plugin-"));
  execFileSync(join(repo, "node_modules", ".bin", "tsc"), ["-p", join(repo, "tsconfig.build.json"), "--outDir", join(dir, "dist")]);
  mkdirSync(join(dir, "bin"));
  copyFileSync(join(repo, "bin", "pulumi-resource-conntrack"), join(dir, "bin", "pulumi-resource-conntrack"));
  copyFileSync(join(repo, "package.json"), join(dir, "package.json"));
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));

  engine = new grpc.Server();
  engine.addService(EngineService, {
    log: (c: grpc.ServerUnaryCall<LogRequest, Empty>, cb: grpc.sendUnaryData<Empty>) => {
      logged.push(c.request);
      cb(null, new Empty());
    },
  });
  const enginePort = await new Promise<number>((done, fail) => engine.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : done(p))));
  const probe = createServer();
  closedPort = await new Promise<number>((done) => probe.listen(0, "127.0.0.1", () => done((probe.address() as { port: number }).port)));
  await new Promise((done) => probe.close(done));

  plugin = spawn(join(dir, "bin", "pulumi-resource-conntrack"), ["--logtostderr", "-v=3", `127.0.0.1:${enginePort}`], { stdio: ["ignore", "pipe", "inherit"] });
  const firstLine = await new Promise<string>((done, fail) => {
    let out = "";
    plugin.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("\n")) done(out.split("\n")[0]);
    });
    plugin.once("exit", (code) => fail(new Error(`the plugin exited (${code}) before printing its port`)));
  });
  expect(firstLine).toMatch(/^\d+$/);
  client = new ResourceProviderClient(`127.0.0.1:${firstLine}`, grpc.credentials.createInsecure());
}, 120_000);

afterAll(async () => {
  client?.close();
  if (plugin?.pid && plugin.exitCode === null) {
    const exited = new Promise((done) => plugin.once("exit", done));
    plugin.kill("SIGINT");
    await exited;
  }
  engine?.forceShutdown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("pulumi-resource-conntrack", () => {
  it("says its version, serves the generated schema and accepts secrets", async () => {
    expect((await call<PluginInfo>("getPluginInfo", new Empty())).getVersion()).toBe(version);
    const served = JSON.parse((await call<proto.GetSchemaResponse>("getSchema", new proto.GetSchemaRequest())).getSchema());
    expect(served).toEqual(packageSchema(version));
    const shake = await call<proto.ProviderHandshakeResponse>("handshake", new proto.ProviderHandshakeRequest());
    expect(shake.getAcceptSecrets()).toBe(true);
  });

  it("refuses bad input in check, naming each field, before any connection", async () => {
    const req = new proto.CheckRequest().setUrn(urn("ConntrackLimits")).setOlds(struct({})).setNews(struct({ connection: { host: "10.0.0.1", port: 0, sudo: true }, max: -5, timeout: { icmp: 1 } }));
    const failures = (await call<proto.CheckResponse>("check", req)).getFailuresList().map((f) => [f.getProperty(), f.getReason()]);
    expect(failures).toEqual(
      expect.arrayContaining([
        ["timeout", expect.stringContaining("ConntrackLimits has no argument timeout")],
        ["max", "max must be at least 1"],
        ["connection.port", "port must be 1-65535"],
        ["connection.sudo", expect.stringContaining("sudo is only for a user other than root")],
      ]),
    );
    const invoked = await call<proto.InvokeResponse>("invoke", new proto.InvokeRequest().setTok("conntrack:index:getConntrackStatus").setArgs(struct({ connection: { host: "" } })));
    expect(invoked.getFailuresList().map((f) => f.getProperty())).toEqual(["connection.host"]);
  });

  it("keeps credentials secret and sends an unreachable host's warning to the engine as a diagnostic on the resource", async () => {
    const news = { connection: { host: "127.0.0.1", port: closedPort, password: secret("PASSWORD"), insecureSkipHostKeyCheck: true, dialErrorLimit: 1 }, timeouts: { icmp: 25 } };
    const res = await call<proto.CheckResponse>("check", new proto.CheckRequest().setUrn(urn("ConntrackLimits")).setOlds(struct({})).setNews(struct(news)));
    expect(res.getFailuresList()).toEqual([]);
    const inputs = res.getInputs()!.toJavaScript() as { connection: Record<string, unknown>; plan: Record<string, string>; persist: boolean };
    expect(isSecretValue(inputs.connection.password)).toBe(true);
    expect(inputs.connection.host).toBe("127.0.0.1");
    expect(inputs.persist).toBe(true);
    expect(inputs.plan.host).toMatch(/^unreachable: root@127\.0\.0\.1:\d+: unreachable after 1 try/);
    const warning = logged.find((l) => l.getUrn() === urn("ConntrackLimits"));
    expect(warning?.getSeverity()).toBe(LogSeverity.WARNING);
    expect(warning?.getMessage()).toMatch(/unreachable after 1 try/);
  });

  it("diffs per key: another host replaces the resource, and says which field forces it", async () => {
    const stored = { connection: { host: "10.0.0.1", privateKey: secret("K") }, timeouts: { icmp: 25 }, persist: true, owner: "web", scope: "edge/dev", ownerId: "edge/dev/web#1", live: {}, previous: {}, files: [] };
    const news = { connection: { host: "10.0.0.2", privateKey: secret("K") }, timeouts: { icmp: 20 }, persist: true };
    const req = new proto.DiffRequest().setUrn(urn("ConntrackLimits", "other")).setId("10.0.0.1:22/x").setOlds(struct(stored)).setOldInputs(struct(stored)).setNews(struct(news));
    const res = await call<proto.DiffResponse>("diff", req);
    expect(res.getChanges()).toBe(proto.DiffResponse.DiffChanges.DIFF_SOME);
    expect(res.getReplacesList()).toEqual(["connection"]);
    const detailed: Record<string, [number, boolean]> = {};
    res.getDetaileddiffMap().forEach((v, k) => (detailed[k] = [v.getKind(), v.getInputdiff()]));
    expect(detailed).toEqual({ "connection.host": [proto.PropertyDiff.Kind.UPDATE_REPLACE, true], "timeouts.icmp": [proto.PropertyDiff.Kind.UPDATE, true] });
  });

  it("accepts values not known yet in a preview, and plans nothing for them", async () => {
    const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
    const news = { connection: { host: unknown, privateKey: secret(unknown) }, timeouts: { icmp: 25 } };
    const res = await call<proto.CheckResponse>("check", new proto.CheckRequest().setUrn(urn("ConntrackLimits", "later")).setOlds(struct({})).setNews(struct(news)));
    expect(res.getFailuresList()).toEqual([]);
    const inputs = res.getInputs()!.toJavaScript() as Record<string, unknown>;
    expect(inputs).toMatchObject({ connection: { host: unknown }, timeouts: { icmp: 25 }, persist: true });
    expect(isSecretValue((inputs.connection as Record<string, unknown>).privateKey)).toBe(true);
    expect(inputs).not.toHaveProperty("live");
    expect(inputs).not.toHaveProperty("plan");
  });

  it("previews a create without touching anything: the inputs, and what only the host can tell unknown", async () => {
    const props = { connection: { host: "127.0.0.1", port: closedPort, password: secret("PW") }, timeouts: { icmp: 25 }, persist: true, live: { "net.netfilter.nf_conntrack_icmp_timeout": "25" } };
    const res = await call<proto.CreateResponse>("create", new proto.CreateRequest().setUrn(urn("ConntrackLimits", "preview")).setProperties(struct(props)).setPreview(true));
    const outputs = res.getProperties()!.toJavaScript() as Record<string, unknown>;
    const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
    expect(outputs).toMatchObject({ live: props.live, previous: unknown, files: unknown, warnings: unknown, memoryEstimate: unknown, plan: unknown });
    expect(isSecretValue((outputs.connection as Record<string, unknown>).password)).toBe(true);
    expect(res.getRefreshBeforeUpdate()).toBe(true);
  });

  it("keeps the values read before when a refresh can't reach the host, and says so on the resource", async () => {
    const stored = { connection: { host: "127.0.0.1", port: closedPort, password: secret("PW"), insecureSkipHostKeyCheck: true, dialErrorLimit: 1 }, timeouts: { icmp: 25 }, persist: true, owner: "gone", scope: "edge/dev", ownerId: "edge/dev/gone#1", live: { "net.netfilter.nf_conntrack_icmp_timeout": "25" }, previous: {}, files: [] };
    const req = new proto.ReadRequest().setUrn(urn("ConntrackLimits", "gone")).setId("127.0.0.1/x").setProperties(struct(stored)).setInputs(struct({ timeouts: { icmp: 25 } }));
    const res = await call<proto.ReadResponse>("read", req);
    const props = res.getProperties()!.toJavaScript() as Record<string, unknown>;
    expect(props.live).toEqual(stored.live);
    expect(isSecretValue((props.connection as Record<string, unknown>).password)).toBe(true);
    expect(res.getInputs()!.toJavaScript()).toEqual({ timeouts: { icmp: 25 } });
    const warning = logged.find((l) => l.getUrn() === urn("ConntrackLimits", "gone"));
    expect(warning?.getMessage()).toMatch(/^could not read the host, so live shows the values read before: root@127\.0\.0\.1:\d+: unreachable after 1 try/);
  });

  it("refuses a type it doesn't have, naming the ones it has", async () => {
    const req = new proto.CheckRequest().setUrn(urn("Fleet")).setOlds(struct({})).setNews(struct({}));
    await expect(call<proto.CheckResponse>("check", req)).rejects.toThrow(/no resource type conntrack:index:Fleet; it has conntrack:index:ConntrackLimits/);
  });
});
