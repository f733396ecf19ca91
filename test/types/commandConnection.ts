// Compile-time only (run by `npx tsc -p test/tsconfig.json`, as scripts/test.sh does): the
// connection a program already gives @pulumi/command's remote.Command fits ConntrackLimits
// unchanged, checked against the real @pulumi/command package and our published declarations.
import type * as command from "@pulumi/command";
import type * as pulumi from "@pulumi/pulumi";
import type { ConntrackLimitsArgs } from "pulumi-conntrack";

/** Exactly what `new command.remote.Command(name, { connection, ... })` accepts. */
type CommandConnection = command.remote.CommandArgs["connection"];
type CommandConnectionArgs = command.types.input.remote.ConnectionArgs;

declare const plain: CommandConnectionArgs;
declare const fromOutputs: pulumi.Output<CommandConnectionArgs>;
declare const asCommandTakesIt: CommandConnection;
declare const withBastion: CommandConnectionArgs & { proxy: command.types.input.remote.ProxyConnectionArgs };

export const fromPlain: ConntrackLimitsArgs = { connection: plain, timeouts: { udp: 20 } };
export const fromOutput: ConntrackLimitsArgs = { connection: fromOutputs, max: 262144 };
export const fromCommandArgs: ConntrackLimitsArgs = { connection: asCommandTakesIt, hashsize: 32768 };
export const throughBastion: ConntrackLimitsArgs = { connection: withBastion, timeouts: { tcpEstablished: 3600 } };

// One literal shared by both, as in examples/command-and-limits.
const shared = { host: "203.0.113.10", port: 22, user: "admin", privateKey: "…", hostKey: "SHA256:…", proxy: { host: "bastion.example" } };
export const sharedForCommand: CommandConnection = shared;
export const sharedForLimits: ConntrackLimitsArgs = { connection: shared, timeouts: { udp: 20 } };

// The checks above can fail: a field of the wrong type, or a missing host, is refused.
declare const portAsText: Omit<CommandConnectionArgs, "port"> & { port: pulumi.Input<string> };
// @ts-expect-error port must be a number
export const wrongPort: ConntrackLimitsArgs = { connection: portAsText, timeouts: { udp: 20 } };
declare const noHost: Omit<CommandConnectionArgs, "host">;
// @ts-expect-error host is required
export const missingHost: ConntrackLimitsArgs = { connection: noHost, timeouts: { udp: 20 } };
