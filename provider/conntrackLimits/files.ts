import type { ModuleName } from "./keys";
import { udevPrefix } from "./keys";

/**
 * The files a ConntrackLimits resource owns on a host. Each carries its owner and instance id in
 * its name and header, so it is found again and removed exactly; the header also records the
 * values found before the first change, so a replacement inherits them instead of the new ones.
 */
export const marker = "pulumi-conntrack";
const previousTag = "# pulumi-conntrack-previous: ";

export function slug(name: string): string {
  const s = name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
  return s || "resource";
}

export interface OwnedPaths {
  sysctl: string;
  modprobe: string;
  udev: string;
}

export function ownedPaths(id: string): OwnedPaths {
  return {
    sysctl: `/etc/sysctl.d/90-${marker}-${id}.conf`,
    modprobe: `/etc/modprobe.d/${marker}-${id}.conf`,
    udev: `/etc/udev/rules.d/90-${marker}-${id}.rules`,
  };
}

/** The id embedded in one of our file paths, or undefined for anything else. */
export function idOfOwnedPath(path: string): string | undefined {
  const m = new RegExp(`/(?:90-)?${marker}-([a-z0-9-]+)\\.(?:conf|rules)$`).exec(path);
  return m?.[1];
}

function header(owner: string, id: string, previous: Record<string, string>): string {
  return [
    `# Managed by pulumi-conntrack: ConntrackLimits "${owner.replace(/[\r\n]/g, " ")}" (id ${id}).`,
    "# Edits here are undone by the next `pulumi up`; `pulumi destroy` removes this file.",
    `${previousTag}${JSON.stringify(previous)}`,
    "",
  ].join("\n");
}

export function previousRecordedIn(content: string): Record<string, string> | undefined {
  const line = content.split("\n").find((l) => l.startsWith(previousTag));
  if (!line) return undefined;
  try {
    return JSON.parse(line.slice(previousTag.length));
  } catch {
    return undefined;
  }
}

export function ownerRecordedIn(content: string): string | undefined {
  return /^# Managed by pulumi-conntrack: ConntrackLimits "(.*)" \(id [a-z0-9-]+\)\.$/m.exec(content)?.[1];
}

export function renderFiles(args: {
  owner: string;
  id: string;
  module: ModuleName;
  sysctl: Record<string, string>;
  hashsize?: number;
  previous: Record<string, string>;
}): Record<string, string> {
  const paths = ownedPaths(args.id);
  const head = header(args.owner, args.id, args.previous);
  const files: Record<string, string> = {};
  const keys = Object.keys(args.sysctl).sort();
  if (keys.length > 0) {
    files[paths.sysctl] = head + keys.map((k) => `${k} = ${args.sysctl[k]}\n`).join("");
    // systemd-sysctl skips keys of a module that isn't loaded yet at boot, and nothing re-applies
    // them after a reload; this rule (documented in sysctl.d(5)) does, each time the module loads.
    files[paths.udev] =
      head + `ACTION=="add", SUBSYSTEM=="module", KERNEL=="${args.module}", RUN+="/lib/systemd/systemd-sysctl --prefix=${udevPrefix(args.module)}"\n`;
  }
  if (args.hashsize !== undefined) {
    files[paths.modprobe] = head + `options ${args.module} hashsize=${args.hashsize}\n`;
  }
  return files;
}
