// A FirewallState on the host from config, with the settings from config, and when `notrack` is
// set a NotrackRule beside it on the same host. Plain JavaScript: no TypeScript step.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const host = config.requireObject("host");
const firewall = config.requireObject("firewall");
const notrack = config.getObject("notrack");

const fw = new ct.FirewallState("firewall", { connection: host.connection, ...firewall });
if (notrack) new ct.NotrackRule("notrack", { connection: host.connection, ...notrack });
module.exports = { live: fw.live, previous: fw.previous, warnings: fw.warnings };
