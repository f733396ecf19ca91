import { describe, expect, it } from "vitest";
import type { FileBackend, PersistInput } from "../../provider/persistence/items";
import { modprobeDBackend } from "../../provider/persistence/modprobeD";
import { moduleBlockBackend, moduleLoadBackend } from "../../provider/persistence/moduleFiles";
import { nftIncludeBackend } from "../../provider/persistence/nftablesInclude";
import { sysctlDBackend } from "../../provider/persistence/sysctlD";
import { udevRuleBackend } from "../../provider/persistence/udevRule";

// Owners' labels hold Pulumi resource names, which may be anything. In every file we persist,
// they must stay inside the one header comment line: a line break of any kind the host's
// parsers know would turn the rest of a name into a directive (an `install` line in modprobe.d
// runs as root at the next module load).
const breaks = ["\n", "\r", "\r\n", "\0", "\v", "\f", "\u0085", "\u2028", "\u2029", "\x1b", "\x7f"];
const owners = breaks.map((b, i) => `p/s/ConntrackLimits/x${b}install nf_conntrack /usr/bin/touch /var/tmp/pwned-${i}${b}options nf_conntrack hashsize=1`);
const input: PersistInput = {
  items: [
    { key: "sysctl:net.netfilter.nf_conntrack_max", value: "131072" },
    { key: "param:nf_conntrack.hashsize", value: "16385" },
    { key: "module:nf_conntrack_ftp", value: "absent" },
    { key: "module:xt_state", value: "loaded" },
    { key: "nft:inet:filter:input:tcp dport 8081 meta l4proto tcp ct state untracked accept", value: "present" },
  ],
  owners: Object.fromEntries(["sysctl", "param", "module", "nft"].map((kind) => [kind, owners])),
  systemd: true,
};
const backends: FileBackend[] = [sysctlDBackend, modprobeDBackend, moduleBlockBackend, moduleLoadBackend, udevRuleBackend(sysctlDBackend.path), nftIncludeBackend];

describe("owners' labels in persisted files", () => {
  for (const backend of backends) {
    it(`stay on the header's comment line in ${backend.path}`, () => {
      const text = backend.render(input);
      expect(text).toBeDefined();
      const lines = text!.split(/\r\n|[\n\r\0\v\f\u0085\u2028\u2029]/);
      const managedBy = lines.filter((l) => l.includes("Managed by pulumi-conntrack"));
      expect(managedBy).toHaveLength(1);
      expect(managedBy[0].startsWith("#")).toBe(true);
      expect(managedBy[0].match(/pwned-/g)).toHaveLength(breaks.length);
      expect(lines.filter((l) => l.includes("pwned") || /hashsize=1(?!\d)/.test(l)).every((l) => l === managedBy[0])).toBe(true);
      expect(text).not.toMatch(/[\0-\x09\x0b-\x1f\x7f\u0085\u2028\u2029]/);
    });
  }
});
