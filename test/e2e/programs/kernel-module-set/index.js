// A KernelModuleSet per host from config, and, when `limits` is set, a ConntrackLimits beside it
// on the same host (which needs the module the set may remove). Plain JavaScript: no TypeScript step.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const hosts = config.requireObject("hosts");
const modules = config.requireObject("modules");
const limits = config.getObject("limits");

const out = {};
for (const h of hosts) {
  const set = new ct.KernelModuleSet(`modules-${h.name}`, { connection: h.connection, ...modules });
  out[h.name] = pulumi.all([set.resolved, set.live, set.previous, set.files, set.warnings]).apply(([resolved, live, previous, files, warnings]) => ({ resolved, live, previous, files, warnings }));
  if (limits) new ct.ConntrackLimits(`limits-${h.name}`, { connection: h.connection, ...limits });
}
module.exports = out;
