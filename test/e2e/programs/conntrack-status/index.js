// getConntrackStatusOutput on one host from config, as a stack output.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const connection = new pulumi.Config().requireSecretObject("connection");
module.exports = { status: ct.getConntrackStatusOutput({ connection }) };
