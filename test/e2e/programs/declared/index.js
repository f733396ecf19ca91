// Declares the resources listed in config, each as { type, name, args }, on the host in config
// (an entry's args.connection overrides fields of it). Used to feed the engine inputs as given.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const connection = config.requireSecretObject("connection");
const declared = config.requireObject("declared");
for (const { type, name, args } of declared) {
  const conn = args.connection === undefined ? connection : connection.apply((c) => ({ ...c, ...args.connection }));
  new ct[type](name, { ...args, connection: conn });
}
