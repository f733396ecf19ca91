import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { providerService, ResourceProviderService } from "./server";

/**
 * pulumi-resource-conntrack: the provider plugin the Pulumi CLI starts for every language but
 * Node.js's dynamic resources. The CLI passes the engine's address as the one argument that isn't
 * a flag (--logtostderr, -v=N and --tracing URL may come first); the plugin serves on a free port
 * of 127.0.0.1 and prints that port, alone, as the first line of stdout.
 */
export function engineAddressOf(args: string[]): string | undefined {
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--tracing") i++;
    else if (!args[i].startsWith("-")) positional.push(args[i]);
  }
  return positional[0];
}

/** The version of the package this file belongs to (dist/provider/plugin or provider/plugin below its root). */
export function packageVersion(from = __dirname): string {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "pulumi-conntrack" && pkg.version) return pkg.version;
    } catch {
      // No package.json here: look further up.
    }
  }
  throw new Error(`pulumi-resource-conntrack: no package.json of pulumi-conntrack above ${from}`);
}

async function main(): Promise<void> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 400 * 1024 * 1024 });
  server.addService(ResourceProviderService, providerService(packageVersion(), engineAddressOf(process.argv.slice(2))));
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  process.stdout.write(`${port}\n`);
  // The engine ends the plugin with SIGINT (then SIGKILL after 5 s): let calls in flight answer.
  process.once("SIGINT", () => server.tryShutdown(() => process.exit(0)));
}

if (require.main === module) {
  main().catch((err: Error) => {
    process.stderr.write(`pulumi-resource-conntrack: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
}
