import * as grpc from "@grpc/grpc-js";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { PluginInfo } from "@pulumi/pulumi/proto/plugin_pb";
import { ResourceProviderService, type IResourceProviderServer } from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as proto from "@pulumi/pulumi/proto/provider_pb";
import type { CheckFailure } from "../engine/resource";
import type { DiffKind } from "./detailedDiff";
import { EngineLog } from "./engineLog";
import { PluginHandlers } from "./handlers";
import { packageSchema } from "./schema";
import { fromStruct, toStruct } from "./wire";

const kinds: Record<DiffKind, proto.PropertyDiff.Kind> = {
  ADD: proto.PropertyDiff.Kind.ADD,
  ADD_REPLACE: proto.PropertyDiff.Kind.ADD_REPLACE,
  DELETE: proto.PropertyDiff.Kind.DELETE,
  DELETE_REPLACE: proto.PropertyDiff.Kind.DELETE_REPLACE,
  UPDATE: proto.PropertyDiff.Kind.UPDATE,
  UPDATE_REPLACE: proto.PropertyDiff.Kind.UPDATE_REPLACE,
};

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** A handler whose thrown errors reach the engine as the call's error, with the message intact. */
function unary<Req, Res>(handle: (request: Req) => Promise<Res> | Res): Unary<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handle(call.request))
      .then(
        (response) => callback(null, response),
        (err: Error) => callback({ code: grpc.status.UNKNOWN, details: err?.message ?? String(err) }),
      );
  };
}

function failureList(failures: CheckFailure[]): proto.CheckFailure[] {
  return failures.map((f) => new proto.CheckFailure().setProperty(f.property).setReason(f.reason));
}

/**
 * The ResourceProvider gRPC service of pulumi-resource-conntrack, over the generated stubs that
 * ship in @pulumi/pulumi/proto (read against proto/pulumi/provider.proto and the engine's
 * sdk/go/common/resource/plugin/provider_plugin.go, v3.274.1). Methods left out (Construct, Call,
 * Parameterize, List, GetMapping(s)) answer UNIMPLEMENTED, as the engine expects of a provider
 * without components, parameters or mappings.
 */
export function providerService(version: string, engineAddress: string | undefined): IResourceProviderServer {
  const log = new EngineLog(engineAddress);
  const handlers = new PluginHandlers(log);
  const schema = JSON.stringify(packageSchema(version));
  // Every resource asks the engine to refresh it before each preview and update: `live` in the
  // stored outputs is then what the host holds now, and the per-key diff shows live → desired.
  // The reads run in parallel across hosts (the engine's checks run one at a time).
  const refreshFirst = true;
  return {
    handshake: unary((req: proto.ProviderHandshakeRequest) => {
      if (req.getEngineAddress()) log.attach(req.getEngineAddress());
      return new proto.ProviderHandshakeResponse().setAcceptSecrets(true).setAcceptResources(false).setAcceptOutputs(false);
    }),
    getPluginInfo: unary(() => new PluginInfo().setVersion(version)),
    getSchema: unary((req: proto.GetSchemaRequest) => {
      if (req.getVersion() !== 0) throw new Error(`unsupported schema version ${req.getVersion()}`);
      return new proto.GetSchemaResponse().setSchema(schema);
    }),
    // The provider takes no configuration: everything is per resource.
    checkConfig: unary((req: proto.CheckRequest) => new proto.CheckResponse().setInputs(req.getNews())),
    diffConfig: unary(() => new proto.DiffResponse().setChanges(proto.DiffResponse.DiffChanges.DIFF_NONE)),
    configure: unary(() => new proto.ConfigureResponse().setAcceptsecrets(true).setSupportspreview(true).setAcceptresources(false).setAcceptoutputs(false)),
    check: unary(async (req: proto.CheckRequest) => {
      const { inputs, failures } = await handlers.check(req.getUrn(), fromStruct(req.getOlds()), fromStruct(req.getNews()));
      const response = new proto.CheckResponse().setFailuresList(failureList(failures));
      return inputs ? response.setInputs(toStruct(inputs)) : response;
    }),
    diff: unary((req: proto.DiffRequest) => {
      const { changes, replaces, detailed } = handlers.diff(req.getUrn(), fromStruct(req.getOldInputs()), fromStruct(req.getOlds()), fromStruct(req.getNews()));
      const response = new proto.DiffResponse()
        .setChanges(changes ? proto.DiffResponse.DiffChanges.DIFF_SOME : proto.DiffResponse.DiffChanges.DIFF_NONE)
        .setReplacesList(replaces)
        .setDiffsList([...new Set(Object.keys(detailed).map((path) => path.split(/[.[]/)[0]))])
        .setHasdetaileddiff(true);
      for (const [path, { kind, inputDiff }] of Object.entries(detailed)) response.getDetaileddiffMap().set(path, new proto.PropertyDiff().setKind(kinds[kind]).setInputdiff(inputDiff));
      return response;
    }),
    create: unary(async (req: proto.CreateRequest) => {
      const { id, props } = await handlers.create(req.getUrn(), fromStruct(req.getProperties()), req.getPreview());
      return new proto.CreateResponse().setId(id).setProperties(toStruct(props)).setRefreshBeforeUpdate(refreshFirst);
    }),
    read: unary(async (req: proto.ReadRequest) => {
      const props = await handlers.read(req.getUrn(), req.getId(), fromStruct(req.getProperties()));
      const response = new proto.ReadResponse().setId(req.getId()).setProperties(toStruct(props)).setRefreshBeforeUpdate(refreshFirst);
      // The program's inputs don't change on a refresh: only what the host holds does.
      const inputs = req.getInputs();
      return inputs ? response.setInputs(inputs) : response;
    }),
    update: unary(async (req: proto.UpdateRequest) => {
      const props = await handlers.update(req.getUrn(), fromStruct(req.getOlds()), fromStruct(req.getNews()), req.getPreview());
      return new proto.UpdateResponse().setProperties(toStruct(props)).setRefreshBeforeUpdate(refreshFirst);
    }),
    delete: unary(async (req: proto.DeleteRequest) => {
      await handlers.delete(req.getUrn(), fromStruct(req.getProperties()));
      return new Empty();
    }),
    invoke: unary(async (req: proto.InvokeRequest) => {
      const { result, failures } = await handlers.invoke(req.getTok(), fromStruct(req.getArgs()));
      const response = new proto.InvokeResponse().setFailuresList(failureList(failures));
      return result ? response.setReturn(toStruct(result)) : response;
    }),
    // A change under way finishes (or rolls back) on the host rather than stopping half way: the
    // engine waits for the calls in flight, each bounded by the connection's commandTimeout.
    cancel: unary(() => new Empty()),
    attach: unary((req) => {
      log.attach(req.getAddress());
      return new Empty();
    }),
  } as IResourceProviderServer;
}

export { ResourceProviderService };
