// One ConntrackLimits per host from config, so a test can aim the same program at a VM or at
// twenty namespaced hosts. Plain JavaScript: the language host runs it without a TypeScript step.
// Config: hosts [{name, connection}], settings, and optionally namePrefix (default "limits") and
// formerPrefix (the prefix before a rename: becomes an alias, so the engine sees the same resource).
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const hosts = config.requireObject("hosts");
const settings = config.requireObject("settings");
const prefix = config.get("namePrefix") || "limits";
const former = config.get("formerPrefix");

const limits = hosts.map(
  (h) => new ct.ConntrackLimits(`${prefix}-${h.name}`, { connection: h.connection, ...settings }, former ? { aliases: [{ name: `${former}-${h.name}` }] } : {}),
);

module.exports = Object.fromEntries(
  limits.map((l, i) => [hosts[i].name, pulumi.all([l.live, l.previous, l.files, l.memoryEstimate, l.warnings]).apply(([live, previous, files, memoryEstimate, warnings]) => ({ live, previous, files, memoryEstimate, warnings }))]),
);
