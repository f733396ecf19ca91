// A NotrackRule per host from config, and, when `limits` is set, a ConntrackLimits beside it on
// the same host (two resource types on one host). Plain JavaScript: no TypeScript step.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const hosts = config.requireObject("hosts");
const notrack = config.requireObject("notrack");
const limits = config.getObject("limits");

const out = {};
for (const h of hosts) {
  const rule = new ct.NotrackRule(`notrack-${h.name}`, { connection: h.connection, ...notrack });
  out[h.name] = pulumi.all([rule.live, rule.previous, rule.files, rule.warnings]).apply(([live, previous, files, warnings]) => ({ live, previous, files, warnings }));
  if (limits) new ct.ConntrackLimits(`limits-${h.name}`, { connection: h.connection, ...limits });
}
module.exports = out;
