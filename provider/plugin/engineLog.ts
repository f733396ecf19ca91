import * as grpc from "@grpc/grpc-js";
import { EngineClient } from "@pulumi/pulumi/proto/engine_grpc_pb";
import { LogRequest, LogSeverity } from "@pulumi/pulumi/proto/engine_pb";

/**
 * Warnings as the engine's diagnostics on a resource (Engine.Log with its URN): `pulumi preview`
 * and `up` show them under the resource, like any provider's. Without an engine (the plugin
 * started by hand) they go to stderr.
 */
export class EngineLog {
  private client?: EngineClient;

  constructor(address?: string) {
    if (address) this.attach(address);
  }

  attach(address: string): void {
    this.client?.close();
    this.client = new EngineClient(address, grpc.credentials.createInsecure());
  }

  /** Resolves when the engine has the message; a failure to send it is written to stderr, never thrown. */
  warn(urn: string, message: string): Promise<void> {
    const client = this.client;
    if (!client) {
      process.stderr.write(`warning: ${urn}: ${message}\n`);
      return Promise.resolve();
    }
    const request = new LogRequest();
    request.setSeverity(LogSeverity.WARNING);
    request.setUrn(urn);
    request.setMessage(message);
    return new Promise((resolve) => {
      client.log(request, (err) => {
        if (err) process.stderr.write(`pulumi-resource-conntrack: could not send a warning to the engine (${err.message}): ${urn}: ${message}\n`);
        resolve();
      });
    });
  }

  close(): void {
    this.client?.close();
  }
}
