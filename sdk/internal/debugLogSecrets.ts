import * as pulumi from "@pulumi/pulumi";

/**
 * The Node.js SDK logs every RegisterResource response at debug level, secret outputs in plain
 * text (`pulumi up -v=9 --logtostderr`, `pulumi up --debug`); a resource's credentials come back
 * as its outputs, because refresh and destroy connect with them. The engine masks the stack's
 * secret config values in its logs, but only whole values, and no secret that came from anywhere
 * else. So the credentials this package is given are masked in the SDK's debug messages here,
 * before they leave the program.
 */
const masked = new Set<string>();
let installed = false;

/** Masks these values (a connection's secrets) in the debug messages of this program from now on. */
export function maskInDebugLog(values: Array<string | undefined>): void {
  for (const v of values) {
    if (v === undefined || v.length < 3) continue;
    masked.add(v);
    // The SDK may print a value JSON-escaped (a private key's newlines as \n).
    masked.add(JSON.stringify(v).slice(1, -1));
  }
  if (installed || masked.size === 0) return;
  installed = true;
  const log = pulumi.log as { debug: (msg: string, ...rest: unknown[]) => Promise<void> };
  const debug = log.debug;
  log.debug = (msg, ...rest) => debug(typeof msg === "string" ? mask(msg) : msg, ...rest);
}

function mask(msg: string): string {
  let out = msg;
  // Longest first: a private key holds no shorter secret's text, but a password might be a prefix of another.
  for (const v of [...masked].sort((a, b) => b.length - a.length)) out = out.split(v).join("[secret]");
  return out;
}
