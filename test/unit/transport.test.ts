import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fingerprint, hostKeyAlgorithms, judgeHostKey, keyBlobOf } from "../../provider/transport/hostKeys";
import { command, quote } from "../../provider/transport/shell";
import { authMethods } from "../../provider/transport/dial";
import { hasToken, unloadsModules, withToken } from "../../provider/persistence/iptablesConfig";

const dir = mkdtempSync(join(tmpdir(), "pct-unit-"));
execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "a")]);
execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "b")]);
const keyA = readFileSync(join(dir, "a.pub"), "utf8").trim();
const keyB = readFileSync(join(dir, "b.pub"), "utf8").trim();
const blobA = keyBlobOf(keyA);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("host keys", () => {
  it("computes the fingerprint ssh-keygen prints", () => {
    const printed = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", join(dir, "a.pub")], { encoding: "utf8" }).split(" ")[1];
    expect(fingerprint(blobA)).toBe(printed);
  });
  it("accepts a pinned key given as a line or as a fingerprint, and refuses another", () => {
    expect(judgeHostKey(blobA, { pinned: keyA, host: "h", port: 22 })).toEqual({ ok: true });
    expect(judgeHostKey(blobA, { pinned: fingerprint(blobA), host: "h", port: 22 })).toEqual({ ok: true });
    expect(judgeHostKey(blobA, { pinned: keyB, host: "h", port: 22 })).toMatchObject({ ok: false, reason: "changed", presented: fingerprint(blobA) });
  });
  it("reads known_hosts with ports, patterns and hashed names", () => {
    expect(judgeHostKey(blobA, { knownHosts: `[10.0.0.1]:2222 ${keyA}\n`, host: "10.0.0.1", port: 2222 })).toEqual({ ok: true });
    expect(judgeHostKey(blobA, { knownHosts: `10.0.0.1 ${keyA}\n`, host: "10.0.0.1", port: 2222 })).toMatchObject({ reason: "unknown" });
    expect(judgeHostKey(blobA, { knownHosts: `*.example.com,!bad.example.com ${keyA}\n`, host: "web.example.com", port: 22 })).toEqual({ ok: true });
    expect(judgeHostKey(blobA, { knownHosts: `*.example.com,!bad.example.com ${keyA}\n`, host: "bad.example.com", port: 22 })).toMatchObject({ reason: "unknown" });
    const kh = join(dir, "known_hosts");
    execFileSync("sh", ["-c", `echo 'web1 ${keyB}' > ${kh} && ssh-keygen -H -f ${kh} 2>/dev/null`]);
    const hashed = readFileSync(kh, "utf8");
    expect(hashed).toMatch(/^\|1\|/);
    expect(judgeHostKey(blobA, { knownHosts: hashed, host: "web1", port: 22 })).toMatchObject({ ok: false, reason: "changed", expected: [fingerprint(keyBlobOf(keyB))] });
  });
  it("refuses a key marked @revoked", () => {
    expect(judgeHostKey(blobA, { knownHosts: `@revoked * ${keyA}\nh ${keyA}\n`, host: "h", port: 22 })).toMatchObject({ reason: "revoked" });
  });
  it("refuses a host vouched for only by a @cert-authority line, naming that reason", () => {
    expect(judgeHostKey(blobA, { knownHosts: `@cert-authority *.example.com ${keyB}\n`, host: "web.example.com", port: 22 })).toMatchObject({ ok: false, reason: "cert-authority" });
    expect(judgeHostKey(blobA, { knownHosts: `@cert-authority * ${keyB}\nweb ${keyA}\n`, host: "web", port: 22 })).toEqual({ ok: true });
  });
  it("asks the host for the key types it is trusted by first", () => {
    const all = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
    const rsaOnly = `h ssh-rsa ${blobA.toString("base64")}\n@revoked h ${keyB}\n`;
    expect(hostKeyAlgorithms({ knownHosts: rsaOnly, host: "h", port: 22 }).slice(0, 3)).toEqual(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
    expect(hostKeyAlgorithms({ knownHosts: `[h]:2200 ecdsa-sha2-nistp256 ${blobA.toString("base64")}\n`, host: "h", port: 2200 })[0]).toBe("ecdsa-sha2-nistp256");
    expect(hostKeyAlgorithms({ pinned: keyA, host: "h", port: 22 })[0]).toBe("ssh-ed25519");
    expect(hostKeyAlgorithms({ pinned: `ssh-dss ${blobA.toString("base64")}`, host: "h", port: 22 })).toEqual(["ssh-dss", ...all]);
    for (const trust of [{ knownHosts: "", host: "h", port: 22 }, { pinned: fingerprint(blobA), host: "h", port: 22 }, { knownHosts: rsaOnly, host: "other", port: 22 }]) {
      expect(hostKeyAlgorithms(trust)).toEqual(all);
    }
    expect(new Set(hostKeyAlgorithms({ knownHosts: rsaOnly, host: "h", port: 22 }))).toEqual(new Set(all));
  });
});

describe("authentication methods", () => {
  it("tries only what it was given, in ssh2's order, without the opening \"none\" request", () => {
    expect(authMethods({ password: false, privateKey: true, agent: false })).toEqual(["publickey"]);
    expect(authMethods({ password: true, privateKey: true, agent: true })).toEqual(["password", "publickey", "agent", "keyboard-interactive"]);
    expect(authMethods({ password: false, privateKey: false, agent: true })).toEqual(["agent"]);
  });
});

describe("shell quoting", () => {
  it("leaves plain words alone and single-quotes the rest", () => {
    expect(quote("/etc/sysctl.d/90-x.conf")).toBe("/etc/sysctl.d/90-x.conf");
    expect(quote("a b")).toBe("'a b'");
    expect(quote("it's; rm -rf /")).toBe(`'it'\\''s; rm -rf /'`);
    expect(command("echo", "$(id)", "`id`")).toBe("echo '$(id)' '`id`'");
  });
  it("round-trips arbitrary text through a real shell", () => {
    const nasty = `a'b"c$d\`e\\f\n*g ; h`;
    expect(execFileSync("sh", ["-c", `printf %s ${quote(nasty)}`], { encoding: "utf8" })).toBe(nasty);
  });
});

describe("RHEL iptables-config", () => {
  const base = '# comment\nIPTABLES_MODULES_UNLOAD="yes"\nIPTABLES_SYSCTL_LOAD_LIST=".bridge-nf"\n';
  it("adds and removes our token and touches nothing else", () => {
    const edited = withToken(base, ".nf_conntrack", true);
    expect(edited).toBe('# comment\nIPTABLES_MODULES_UNLOAD="yes"\nIPTABLES_SYSCTL_LOAD_LIST=".bridge-nf .nf_conntrack"\n');
    expect(hasToken(edited, ".nf_conntrack")).toBe(true);
    expect(withToken(edited, ".nf_conntrack", false)).toBe(base);
  });
  it("appends the variable when the file only has it in a comment, and removes exactly that again", () => {
    const el7 = '#IPTABLES_SYSCTL_LOAD_LIST=".nf_conntrack .bridge-nf"\nIPTABLES_MODULES_UNLOAD="yes"';
    const added = withToken(el7, ".nf_conntrack", true);
    expect(added).toContain("\n# Added by pulumi-conntrack");
    expect(withToken(added, ".nf_conntrack", false)).toBe(el7 + "\n");
    expect(unloadsModules('IPTABLES_MODULES_UNLOAD="no"')).toBe(false);
  });
});
