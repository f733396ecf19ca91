import * as pulumi from "@pulumi/pulumi";

/**
 * What this package lets through `pulumi.log.debug`, the SDK's debug channel to the engine
 * (shown by `pulumi up --debug` and `-v=9 --logtostderr`). One wrapper does both jobs below.
 *
 * 1. Not the SDK's three routine lines for registering each of our resources ("Registering
 *    resource", "RegisterResource RPC prepared", "RegisterResource RPC finished" without an
 *    error). Each debug line is a gRPC call to the engine, sent one after another. Measured on a
 *    200-host no-op preview (400 resources): these 1,200 calls cost about 0.5-1 s of CPU across the
 *    program and the engine, and 17 MB of the program's peak RSS. The engine logs each
 *    registration itself (`ResourceMonitor.RegisterResource received`, at -v=5), and a failed
 *    registration's line still goes through.
 * 2. Connection secrets masked. The SDK's "RPC finished" line prints the whole response: a
 *    resource's credentials come back as its outputs, because refresh and destroy connect with
 *    them. The engine masks the stack's secret config values in its logs, but only whole values,
 *    and no secret that came from anywhere else. So the credentials this package is given are
 *    masked in every debug line that still leaves the program.
 */
const masked = new Set<string>();
let installed = false;

/** How our type tokens start (stub.ts): the SDK's lines name a resource's type as `t=TYPE` or `NAME[TYPE]`. */
const ourTypes = "pulumi-nodejs:dynamic/pulumi-conntrack:";

/** The SDK's routine line about registering one of our resources (see above), worth no RPC. */
function isRoutineRegistrationLine(msg: string): boolean {
  if (msg.startsWith("Registering resource: ") || msg.startsWith("RegisterResource RPC prepared: ")) return msg.includes(`t=${ourTypes}`);
  return msg.startsWith("RegisterResource RPC finished: resource:") && msg.includes(`[${ourTypes}`) && msg.includes("]; err: null, resp: ");
}

/** Masks these values (a connection's secrets) in the debug messages of this program from now on. */
export function maskInDebugLog(values: Array<string | undefined>): void {
  for (const v of values) {
    if (v === undefined || v.length < 3) continue;
    masked.add(v);
    // The SDK may print a value JSON-escaped (a private key's newlines as \n).
    masked.add(JSON.stringify(v).slice(1, -1));
  }
  filterDebugLog();
}

/** Installs the wrapper on `pulumi.log.debug`, once. */
export function filterDebugLog(): void {
  if (installed) return;
  installed = true;
  const log = pulumi.log as { debug: (msg: string, ...rest: unknown[]) => Promise<void> };
  const debug = log.debug;
  log.debug = (msg, ...rest) => {
    if (typeof msg !== "string") return debug(msg, ...rest);
    if (isRoutineRegistrationLine(msg)) return Promise.resolve();
    return debug(mask(msg), ...rest);
  };
}

function mask(msg: string): string {
  let out = msg;
  // Longest first: a private key holds no shorter secret's text, but a password might be a prefix of another.
  for (const v of [...masked].sort((a, b) => b.length - a.length)) out = out.split(v).join("[secret]");
  return out;
}
