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

interface KnownHostsEntry {
  patterns: string[];
  hashed?: { salt: Buffer; hash: Buffer };
  revoked: boolean;
  keyBlob: Buffer;
}

/** Parses known_hosts text; skips comments, @cert-authority lines and lines it can't read. */
export function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    let revoked = false;
    if (fields[0].startsWith("@")) {
      if (fields[0] !== "@revoked") continue;
      revoked = true;
      fields.shift();
    }
    if (fields.length < 3) continue;
    const [hostField, , blob] = fields;
    const keyBlob = Buffer.from(blob, "base64");
    if (keyBlob.length === 0) continue;
    if (hostField.startsWith("|1|")) {
      const [, , salt, hash] = hostField.split("|");
      entries.push({ patterns: [], hashed: { salt: Buffer.from(salt, "base64"), hash: Buffer.from(hash, "base64") }, revoked, keyBlob });
    } else {
      entries.push({ patterns: hostField.split(","), revoked, keyBlob });
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
  | { ok: false; reason: "changed" | "unknown" | "revoked"; presented: string; expected?: string[] };

/** What known_hosts (or a pinned key) says about the key a host presented. */
export function judgeHostKey(presented: Buffer, trusted: { pinned?: string; knownHosts?: string; host: string; port: number }): HostKeyVerdict {
  const presentedFp = fingerprint(presented);
  if (trusted.pinned) {
    const pinnedFp = trusted.pinned.startsWith("SHA256:") ? trusted.pinned.replace(/=+$/, "") : fingerprint(keyBlobOf(trusted.pinned));
    return pinnedFp === presentedFp ? { ok: true } : { ok: false, reason: "changed", presented: presentedFp, expected: [pinnedFp] };
  }
  const name = knownHostsName(trusted.host, trusted.port);
  const matching = parseKnownHosts(trusted.knownHosts ?? "").filter((e) => entryMatches(e, name));
  if (matching.some((e) => e.revoked && e.keyBlob.equals(presented))) return { ok: false, reason: "revoked", presented: presentedFp };
  const known = matching.filter((e) => !e.revoked);
  if (known.some((e) => e.keyBlob.equals(presented))) return { ok: true };
  if (known.length > 0) return { ok: false, reason: "changed", presented: presentedFp, expected: known.map((e) => fingerprint(e.keyBlob)) };
  return { ok: false, reason: "unknown", presented: presentedFp };
}
