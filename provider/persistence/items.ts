import type { HostFacts } from "../facts/host";

/**
 * How persistence backends see what to keep: the managed items that at least one owner wants
 * persisted, with their agreed value, and the owners' labels for the files' headers.
 * Item keys: "sysctl:<key>" (a sysctl), "param:<module>.<parameter>" (a module parameter).
 */
export interface PersistedItem {
  key: string;
  value: string;
}

export interface PersistInput {
  items: PersistedItem[];
  /**
   * By item kind ("sysctl", "param", "module", "nft", ...), the labels of the owners that persist
   * items of that kind: a file's header names those of the items it holds, so another resource
   * type's owner joining the host doesn't change it (and its owner's next preview stays a no-op).
   */
  owners: Record<string, string[]>;
  /** The host runs systemd (systemd-sysctl exists). */
  systemd: boolean;
  /** Path of sysctl(8) on the host, for hosts without systemd. */
  sysctlPath?: string;
}

/**
 * A backend keeps one file: it renders it from the persisted items (undefined: no file). A file
 * it shares with others (a saved ruleset) gets its current content, to change only our lines.
 */
export interface FileBackend {
  path: string;
  /** `facts`: the host's, for a backend that applies only where the host persists that way. */
  render(input: PersistInput, current?: string, facts?: HostFacts): string | undefined;
}

export function sysctlItems(items: PersistedItem[]): Array<{ key: string; value: string }> {
  return items.filter((i) => i.key.startsWith("sysctl:")).map((i) => ({ key: i.key.slice(7), value: i.value }));
}

export function paramItems(items: PersistedItem[]): Array<{ module: string; param: string; value: string }> {
  return items
    .filter((i) => i.key.startsWith("param:"))
    .map((i) => {
      const [module, param] = i.key.slice(6).split(".");
      return { module, param, value: i.value };
    });
}

/**
 * An owner's label (it holds the Pulumi resource name, which may be anything) as text that stays on
 * its comment line in every file we write: kmod, udev and nft end a line at a newline, systemd's
 * parsers also at a carriage return or a NUL. (A trailing backslash, which joins the next line in
 * kmod and udev, can't happen: the line ends with a period.)
 */
export function oneLine(label: string): string {
  return label.replace(/[\x00-\x1f\x7f\u0085\u2028\u2029]/g, " ");
}

/** The header every file we own starts with: who manages it and how it goes away. */
export function header(comment: string, owners: string[]): string {
  return [
    `${comment} Managed by pulumi-conntrack for: ${owners.map(oneLine).join(", ")}.`,
    `${comment} Edits here are undone by the next \`pulumi up\`; \`pulumi destroy\` of the last owner removes this file.`,
    "",
  ].join("\n");
}
