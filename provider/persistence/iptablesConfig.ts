/**
 * RHEL's iptables-services: `service iptables restart` unloads nf_conntrack when
 * IPTABLES_MODULES_UNLOAD=yes, then re-applies only the sysctl.d keys that match
 * IPTABLES_SYSCTL_LOAD_LIST. Our key prefix in that list makes the restart re-apply our values.
 * The file is edited token by token: other lines and other tokens stay byte for byte.
 */
export const iptablesConfigPath = "/etc/sysconfig/iptables-config";
export const sysctlLoadListVar = "IPTABLES_SYSCTL_LOAD_LIST";

function readVar(content: string, name: string): string | undefined {
  const m = new RegExp(`^\\s*${name}=(?:"([^"]*)"|'([^']*)'|(\\S*))`, "m").exec(content);
  return m ? (m[1] ?? m[2] ?? m[3] ?? "") : undefined;
}

/**
 * Whether a restart unloads the modules. iptables-services up to 1.4.21-28.el7 (RHEL 7.6) ships
 * IPTABLES_MODULES_UNLOAD="yes"; from 1.4.21-29 (7.7, and EL8/EL9) the file and the service no
 * longer have the setting and never unload (RHBZ#1520534): absent means no.
 */
export function unloadsModules(content: string): boolean {
  return (readVar(content, "IPTABLES_MODULES_UNLOAD") ?? "no").toLowerCase() === "yes";
}

export function sysctlLoadList(content: string): string[] {
  return (readVar(content, sysctlLoadListVar) ?? "").split(/\s+/).filter(Boolean);
}

/** Whether `token` (".nf_conntrack") is in the list, exactly or covered by a shorter prefix. */
export function hasToken(content: string, token: string): boolean {
  return sysctlLoadList(content).some((t) => token.startsWith(t));
}

const addedComment = "# Added by pulumi-conntrack: re-apply conntrack sysctls after a restart reloads the module.";

/** The file with `token` added to or removed from the list; only that line changes. */
export function withToken(content: string, token: string, present: boolean): string {
  const list = sysctlLoadList(content);
  if (present === list.includes(token)) return content;
  const next = present ? [...list, token] : list.filter((t) => t !== token);
  const line = new RegExp(`^(\\s*)${sysctlLoadListVar}=.*$`, "m");
  if (!present && next.length === 0) {
    // The line we added ourselves goes away whole, with its comment.
    const ours = new RegExp(`${escape(addedComment)}\\n${sysctlLoadListVar}=.*\\n?`);
    if (ours.test(content)) return content.replace(ours, "");
  }
  if (line.test(content)) return content.replace(line, `$1${sysctlLoadListVar}="${next.join(" ")}"`);
  const sep = content === "" || content.endsWith("\n") ? "" : "\n";
  return `${content}${sep}${addedComment}\n${sysctlLoadListVar}="${next.join(" ")}"\n`;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
