// A FirewallState on the host from config, with the settings from config. Plain JavaScript: no TypeScript step.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const host = config.requireObject("host");
const firewall = config.requireObject("firewall");

const fw = new ct.FirewallState("firewall", { connection: host.connection, ...firewall });
module.exports = { live: fw.live, previous: fw.previous, warnings: fw.warnings };
