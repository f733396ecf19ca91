// One ConntrackLimits per config entry, with the entry's own settings; an entry's `after` names
// earlier entries it waits for, as a rollout in waves does. The session-drop test uses that wait to leave a host's pooled connection
// idle between two resources on it. Plain JavaScript: the language host runs it as is.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const entries = config.requireObject("hosts");

const byName = {};
for (const e of entries) {
  const dependsOn = (e.after || []).map((name) => byName[name]);
  byName[e.name] = new ct.ConntrackLimits(`limits-${e.name}`, { connection: e.connection, ...e.settings }, { dependsOn });
}

module.exports = Object.fromEntries(Object.entries(byName).map(([name, l]) => [name, l.live]));
