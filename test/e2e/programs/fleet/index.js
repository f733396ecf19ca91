// A Fleet from config: its name (default "web"), hosts [{name, connection, ...overrides}], the
// settings per kind ({conntrack, notrack, firewall, modules}) and the rollout. Plain JavaScript:
// the language host runs it as is.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const fleet = new ct.Fleet(config.get("name") || "web", {
  hosts: config.requireObject("hosts"),
  ...config.requireObject("settings"),
  rollout: config.getObject("rollout"),
});

module.exports = { waves: fleet.waves, readings: fleet.readings, statusTable: fleet.statusTable };
