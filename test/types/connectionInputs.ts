// Compile-time only (run by `npx tsc -p test/tsconfig.json`): every nested Connection field a
// program takes from config (passwords, keys, sudo's password, the bastion's fields) accepts a
// pulumi.Input, as @pulumi/command's do, so a secret from config needs no `apply` by hand.
import type * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput, ConntrackLimitsArgs, FleetHost, NotrackRuleArgs } from "pulumi-conntrack";

declare const config: pulumi.Config;

export const sudoFromSecret: ConntrackLimitsArgs = {
  connection: { host: config.require("host"), user: "ops", sudo: { password: config.requireSecret("sudoPassword") } },
  max: 262144,
};

export const bastionFromSecrets: NotrackRuleArgs = {
  connection: {
    host: config.require("host"),
    privateKey: config.requireSecret("privateKey"),
    proxy: {
      host: config.require("bastionHost"),
      port: config.requireNumber("bastionPort"),
      user: config.require("bastionUser"),
      privateKey: config.requireSecret("bastionKey"),
      privateKeyPassword: config.requireSecret("bastionKeyPassword"),
      password: config.getSecret("bastionPassword"),
      hostKey: config.get("bastionHostKey"),
    },
  },
  ports: [80],
};

/** A whole connection from another resource's outputs, sudo's password included. */
declare const sudoPassword: pulumi.Output<string>;
export const fleetHost: FleetHost = { name: "web-1", connection: { host: "10.0.0.11", user: "ops", sudo: { password: sudoPassword }, password: config.requireSecret("password") } };
export const sudoAsInput: ConnectionInput = { host: "10.0.0.11", user: "ops", sudo: config.requireBoolean("passwordlessSudo") };

// The checks above can fail: a wrong type inside an Input is still refused.
declare const portAsText: pulumi.Output<string>;
// @ts-expect-error sudo's password must be a string
export const sudoPasswordAsNumber: ConnectionInput = { host: "h", user: "ops", sudo: { password: config.requireNumber("n") } };
// @ts-expect-error the bastion's port must be a number
export const proxyPortAsText: ConnectionInput = { host: "h", proxy: { host: "b", port: portAsText } };
