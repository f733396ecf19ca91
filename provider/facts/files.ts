import type { FactReader } from "./reader";

/** Directories systemd-sysctl reads, in its order of precedence for equal file names. */
export const sysctlDirs = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];
const modprobeDirs = ["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"];

/** A netfilter sysctl assignment found in a sysctl.d file or /etc/sysctl.conf. */
export interface SysctlFileSetting {
  file: string;
  line: number;
  key: string;
  value: string;
}

export const sysctlFilesReader: FactReader<SysctlFileSetting[]> = {
  name: "sysctl-files",
  script: `grep -HnE '^[[:space:]]*-?[[:space:]]*net[./](netfilter|ipv4[./]netfilter)[./]' ${sysctlDirs.map((d) => `${d}/*.conf`).join(" ")} /etc/sysctl.conf 2>/dev/null; true`,
  parse(lines) {
    const out: SysctlFileSetting[] = [];
    for (const line of lines) {
      const m = /^(.+?):(\d+):\s*-?\s*([^=\s]+)\s*=\s*(.*?)\s*$/.exec(line);
      if (m) out.push({ file: m[1], line: Number(m[2]), key: m[3].replace(/\//g, "."), value: m[4] });
    }
    return out;
  },
};

/** An `options MODULE ...` line of modprobe.d. */
export interface ModprobeOption {
  file: string;
  line: number;
  module: string;
  options: string;
}

export const modprobeOptionsReader: FactReader<ModprobeOption[]> = {
  name: "modprobe-options",
  script: `grep -HnE '^[[:space:]]*options[[:space:]]+(nf_conntrack|ip_conntrack)[[:space:]]' ${modprobeDirs.map((d) => `${d}/*.conf`).join(" ")} 2>/dev/null; true`,
  parse: (lines) =>
    lines.flatMap((line) => {
      const m = /^(.+?):(\d+):\s*options\s+(\S+)\s+(.*?)\s*$/.exec(line);
      return m ? [{ file: m[1], line: Number(m[2]), module: m[3], options: m[4] }] : [];
    }),
};

/**
 * Whole files read by path, content base64 so any byte survives: pulumi-conntrack's own files
 * (found by the name they all carry, including those of older versions), the ledger, and config
 * files we edit token by token.
 */
export const ownMarker = "pulumi-conntrack";
const watchedFiles = ["/etc/sysconfig/iptables-config", "/var/lib/pulumi-conntrack/ledger.json", "/etc/iptables/rules.v4", "/etc/iptables/rules.v6", "/etc/nftables.conf", "/etc/nftables.pulumi-conntrack.nft", "/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables"];

export const filesReader: FactReader<Record<string, string>> = {
  name: "files",
  script: `
for f in /var/lib/pulumi-conntrack/firewall-* /etc/sysctl.d/*${ownMarker}* /etc/modprobe.d/*${ownMarker}* /etc/modules-load.d/*${ownMarker}* /etc/udev/rules.d/*${ownMarker}* ${watchedFiles.join(" ")}; do
  [ -f "$f" ] && printf '%s %s\\n' "$f" "$(base64 -w0 "$f")"
done
true
`,
  parse(lines) {
    const files: Record<string, string> = {};
    for (const line of lines) {
      const space = line.indexOf(" ");
      const path = space < 0 ? line : line.slice(0, space);
      files[path] = Buffer.from(space < 0 ? "" : line.slice(space + 1), "base64").toString("utf8");
    }
    return files;
  },
};
