// Every secret a connection can hold, on one host: a ConntrackLimits reached with a
// passphrase-protected key, a NotrackRule reached with a password, both as non-root users with a
// sudo password, and getConntrackStatus (run in the program itself) over the password login.
// Plain JavaScript: no TypeScript step.
const pulumi = require("@pulumi/pulumi");
const ct = require("pulumi-conntrack");

const config = new pulumi.Config();
const byKey = config.requireSecretObject("byKey");
const byPassword = config.requireSecretObject("byPassword");

new ct.ConntrackLimits("by-key", { connection: byKey, timeouts: { udp: config.requireNumber("udpTimeout") } });
new ct.NotrackRule("by-password", { connection: byPassword, ports: [8053], protocol: "udp", side: "server", persist: false });
module.exports = { statusHost: ct.getConntrackStatusOutput({ connection: byPassword }).apply((s) => s.host) };
