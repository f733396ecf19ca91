/**
 * RHEL's iptables-services: `service iptables restart` unloads nf_conntrack when
 * IPTABLES_MODULES_UNLOAD=yes, and afterwards re-applies only the sysctl.d keys that match
 * IPTABLES_SYSCTL_LOAD_LIST. Adding our key prefix there makes the restart re-apply our values.
 */
export const iptablesConfigPath = "/etc/sysconfig/iptables-config";

function readVar(content: string, name: string): string | undefined {
  const m = new RegExp(`^\\s*${name}=(?:"([^"]*)"|'([^']*)'|(\\S*))`, "m").exec(content);
  return m ? (m[1] ?? m[2] ?? m[3] ?? "") : undefined;
}

export interface IptablesConfigFacts {
  unloadsModules: boolean;
  sysctlLoadList: string[];
}

export function readIptablesConfig(content: string): IptablesConfigFacts {
  return {
    unloadsModules: (readVar(content, "IPTABLES_MODULES_UNLOAD") ?? "yes").toLowerCase() === "yes",
    sysctlLoadList: (readVar(content, "IPTABLES_SYSCTL_LOAD_LIST") ?? "").split(/\s+/).filter(Boolean),
  };
}

/**
 * The file with `token` (".nf_conntrack" or ".ip_conntrack") in IPTABLES_SYSCTL_LOAD_LIST, or
 * undefined when it is there already. Only that one line changes; everything else stays byte for byte.
 */
export function withSysctlLoadToken(content: string, token: string): string | undefined {
  const { sysctlLoadList } = readIptablesConfig(content);
  if (sysctlLoadList.some((t) => token.startsWith(t))) return undefined;
  const list = [...sysctlLoadList, token].join(" ");
  const line = /^(\s*)IPTABLES_SYSCTL_LOAD_LIST=.*$/m;
  if (line.test(content)) return content.replace(line, `$1IPTABLES_SYSCTL_LOAD_LIST="${list}"`);
  const sep = content === "" || content.endsWith("\n") ? "" : "\n";
  return `${content}${sep}# Added by pulumi-conntrack: re-apply conntrack sysctls after a restart reloads the module.\nIPTABLES_SYSCTL_LOAD_LIST="${list}"\n`;
}
