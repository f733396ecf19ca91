import { describe, expect, it } from "vitest";
import { connectionSchema } from "../../sdk/connection";
import { conntrackLimitsSettingsSchema } from "../../sdk/conntrackLimits.schema";

const messages = (r: { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } }) =>
  r.success ? [] : r.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`);

describe("connection schema", () => {
  it("applies @pulumi/command's defaults", () => {
    const c = connectionSchema.parse({ host: "10.0.0.1", privateKey: "k" });
    expect(c).toMatchObject({ port: 22, user: "root", dialErrorLimit: 10, perDialTimeout: 15, sudo: false, insecureSkipHostKeyCheck: false });
  });
  it.each([
    [{ host: "" }, "host: host must not be empty"],
    [{ host: "a b" }, "host: host must be a DNS name or an IP address"],
    [{ host: "-oProxyCommand=x" }, "host: host must be a DNS name or an IP address"],
    [{ host: "h", port: 0 }, "port: port must be 1-65535"],
    [{ host: "h", port: 70000 }, "port: port must be 1-65535"],
    [{ host: "h", port: 22.5 }, "port: port must be a whole number"],
    [{ host: "h", sudo: true }, "sudo: sudo is only for a user other than root; drop sudo or set user"],
    [{ host: "h", user: "ops; rm -rf /" }, "user: user must be a plain login name"],
    [{ host: "h", hostKey: "not a key" }, "hostKey: hostKey must be an OpenSSH public key line or a SHA256: fingerprint"],
    [{ host: "h", hostKey: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", insecureSkipHostKeyCheck: true }, "insecureSkipHostKeyCheck: give either hostKey or insecureSkipHostKeyCheck, not both"],
    [{ host: "h", proxy: { host: "" } }, "proxy.host: host must not be empty"],
    [{ host: "h", bogus: 1 }, ': Unrecognized key: "bogus"'],
  ])("refuses %j", (input, message) => {
    expect(messages(connectionSchema.safeParse(input))).toContain(message);
  });
  it("accepts sudo for a non-root user, with or without a password", () => {
    expect(connectionSchema.safeParse({ host: "h", user: "ops", sudo: true }).success).toBe(true);
    expect(connectionSchema.safeParse({ host: "h", user: "ops", sudo: { password: "pw" } }).success).toBe(true);
  });
});

describe("ConntrackLimits settings schema", () => {
  it("accepts a typical request and defaults persist to true", () => {
    expect(conntrackLimitsSettingsSchema.parse({ max: 262144, hashsize: 65536, timeouts: { tcpEstablished: 86400 } })).toEqual({
      max: 262144, hashsize: 65536, timeouts: { tcpEstablished: 86400 }, persist: true,
    });
  });
  it.each([
    [{ max: -1 }, "max: max must be at least 1"],
    [{ max: 0 }, "max: max must be at least 1"],
    [{ max: 1.5 }, "max: max must be a whole number"],
    [{ max: 1e12 }, "max: max must be at most 268435456"],
    [{ max: "65536" }, "max: max must be a number, not string"],
    [{ hashsize: 2 ** 30 }, "hashsize: hashsize must be at most 67108864"],
    [{ timeouts: { tcpEstablshed: 10 } }, expect.stringContaining("timeouts: unknown timeout name(s) tcpEstablshed; known: tcpEstablished")],
    [{ timeouts: {} }, "timeouts: timeouts must name at least one timeout"],
    [{ timeouts: { udp: 0 } }, "timeouts.udp: timeouts.udp must be at least 1"],
    [{ timeouts: { udp: 1e9 } }, "timeouts.udp: timeouts.udp must be at most 2147483"],
    [{}, ": nothing to manage: give at least one of max, hashsize, timeouts"],
  ])("refuses %j", (input, message) => {
    expect(messages(conntrackLimitsSettingsSchema.safeParse(input))).toContainEqual(message);
  });
});
