import { createHash, createHmac } from "node:crypto";

/** The fingerprint OpenSSH prints for a key blob: "SHA256:" + unpadded base64 of its SHA-256. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")}`;
}

/** The key blob of an OpenSSH public key line ("ssh-ed25519 AAAA... comment"). */
export function keyBlobOf(line: string): Buffer {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) throw new Error("not an OpenSSH public key line");
  return Buffer.from(parts[1], "base64");
}

/** How ssh spells a host in known_hosts: the bare name on port 22, "[host]:port" otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** A known_hosts line's marker: none (a plain key), "@revoked" or "@cert-authority". */
type Marker = "plain" | "revoked" | "cert-authority";

interface KnownHostsEntry {
  patterns: string[];
  hashed?: { salt: Buffer; hash: Buffer };
  marker: Marker;
  keyType: string;
  keyBlob: Buffer;
}

/** Parses known_hosts text; skips comments, unknown markers and lines it can't read. */
export function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    let marker: Marker = "plain";
    if (fields[0].startsWith("@")) {
      if (fields[0] !== "@revoked" && fields[0] !== "@cert-authority") continue;
      marker = fields[0] === "@revoked" ? "revoked" : "cert-authority";
      fields.shift();
    }
    if (fields.length < 3) continue;
    const [hostField, keyType, blob] = fields;
    const keyBlob = Buffer.from(blob, "base64");
    if (keyBlob.length === 0) continue;
    if (hostField.startsWith("|1|")) {
      const [, , salt, hash] = hostField.split("|");
      entries.push({ patterns: [], hashed: { salt: Buffer.from(salt, "base64"), hash: Buffer.from(hash, "base64") }, marker, keyType, keyBlob });
    } else {
      entries.push({ patterns: hostField.split(","), marker, keyType, keyBlob });
    }
  }
  return entries;
}

function matchesPattern(pattern: string, name: string): boolean {
  const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
  return regex.test(name);
}

function entryMatches(entry: KnownHostsEntry, name: string): boolean {
  if (entry.hashed) {
    const digest = createHmac("sha1", entry.hashed.salt).update(name).digest();
    return digest.equals(entry.hashed.hash);
  }
  let matched = false;
  for (const pattern of entry.patterns) {
    if (pattern.startsWith("!")) {
      if (matchesPattern(pattern.slice(1), name)) return false;
    } else if (matchesPattern(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

export type HostKeyVerdict =
  | { ok: true }
  | { ok: false; reason: "changed" | "unknown" | "revoked" | "cert-authority"; presented: string; expected?: string[] };

/** Where the trusted keys of one host come from: a pinned key, else known_hosts text. */
export interface HostKeyTrust {
  pinned?: string;
  knownHosts?: string;
  host: string;
  port: number;
}

function entriesFor(trusted: HostKeyTrust): KnownHostsEntry[] {
  const name = knownHostsName(trusted.host, trusted.port);
  return parseKnownHosts(trusted.knownHosts ?? "").filter((e) => entryMatches(e, name));
}

/** What known_hosts (or a pinned key) says about the key a host presented. */
export function judgeHostKey(presented: Buffer, trusted: HostKeyTrust): HostKeyVerdict {
  const presentedFp = fingerprint(presented);
  if (trusted.pinned) {
    const pinnedFp = trusted.pinned.startsWith("SHA256:") ? trusted.pinned.replace(/=+$/, "") : fingerprint(keyBlobOf(trusted.pinned));
    return pinnedFp === presentedFp ? { ok: true } : { ok: false, reason: "changed", presented: presentedFp, expected: [pinnedFp] };
  }
  const matching = entriesFor(trusted);
  if (matching.some((e) => e.marker === "revoked" && e.keyBlob.equals(presented))) return { ok: false, reason: "revoked", presented: presentedFp };
  const known = matching.filter((e) => e.marker === "plain");
  if (known.some((e) => e.keyBlob.equals(presented))) return { ok: true };
  if (known.length > 0) return { ok: false, reason: "changed", presented: presentedFp, expected: known.map((e) => fingerprint(e.keyBlob)) };
  if (matching.some((e) => e.marker === "cert-authority")) return { ok: false, reason: "cert-authority", presented: presentedFp };
  return { ok: false, reason: "unknown", presented: presentedFp };
}

/** The host-key algorithms ssh2 can negotiate, in its own order of preference. */
const negotiable = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];

/**
 * The signature algorithms that prove a key of this type (an RSA key signs with any of three).
 * A DSA key is asked for only when it is the one trusted: ssh2 supports it, OpenSSH no longer offers it.
 */
function algorithmsFor(keyType: string): string[] {
  return keyType === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [...negotiable, "ssh-dss"].filter((a) => a === keyType);
}

/**
 * The host-key algorithms to offer, those of the keys we trust first (as OpenSSH does): a host
 * with several host keys shows the one the client asks for first, so a host known only by its
 * ECDSA or RSA key must be asked for that one, or its ed25519 key would look like a changed key.
 * The other algorithms follow, so a host that lost the trusted key still shows one to report.
 */
export function hostKeyAlgorithms(trusted: HostKeyTrust): string[] {
  const trustedTypes = trusted.pinned
    ? trusted.pinned.startsWith("SHA256:") ? [] : [trusted.pinned.trim().split(/\s+/)[0]]
    : entriesFor(trusted).filter((e) => e.marker === "plain").map((e) => e.keyType);
  const first = [...new Set(trustedTypes.flatMap(algorithmsFor))];
  return [...first, ...negotiable.filter((a) => !first.includes(a))];
}
