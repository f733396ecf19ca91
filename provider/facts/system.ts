import type { FactReader } from "./reader";

/** What kind of machine this is: kernel, memory, page size, init, and whether it's a container. */
export interface SystemFacts {
  kernel: string;
  pageSize: number;
  memTotalBytes?: number;
  /** False in a network namespace other than the machine's own (PID 1 in another netns). */
  initialNetns: boolean;
  /** Set when the host looks like a container (docker, lxc, systemd-nspawn, podman...). */
  container?: string;
  systemd: boolean;
  udevadm: boolean;
  /** Absolute path of the sysctl program, for udev rules on hosts without systemd. */
  sysctlPath?: string;
}

// Few forks: every process costs on a busy host, and a fleet preview reads hundreds of hosts.
export const systemReader: FactReader<SystemFacts> = {
  name: "system",
  script: `
echo "kernel $(uname -r)"
echo "pagesize $(getconf PAGESIZE 2>/dev/null)"
sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/memtotal \\1/p' /proc/meminfo
[ "$(readlink /proc/self/ns/net)" = "$(readlink /proc/1/ns/net 2>/dev/null)" ] && echo "netns init" || echo "netns child"
if [ -s /run/systemd/container ]; then echo "container $(cat /run/systemd/container)"
elif [ -e /.dockerenv ]; then echo "container docker"
elif [ -r /proc/1/environ ] && tr '\\0' '\\n' < /proc/1/environ | grep -q '^container='; then echo "container $(tr '\\0' '\\n' < /proc/1/environ | sed -n 's/^container=//p')"
fi
[ -d /run/systemd/system ] && echo "systemd yes"
command -v udevadm >/dev/null 2>&1 && echo "udevadm yes"
echo "sysctl $(command -v sysctl)"
`,
  parse(lines) {
    const field = (name: string) => lines.find((l) => l.startsWith(`${name} `))?.slice(name.length + 1).trim();
    const mem = Number(field("memtotal"));
    const page = Number(field("pagesize"));
    return {
      kernel: field("kernel") ?? "",
      pageSize: Number.isInteger(page) && page > 0 ? page : 4096,
      memTotalBytes: Number.isFinite(mem) && mem > 0 ? mem * 1024 : undefined,
      initialNetns: field("netns") !== "child",
      container: field("container") || undefined,
      systemd: field("systemd") === "yes",
      udevadm: field("udevadm") === "yes",
      sysctlPath: field("sysctl")?.startsWith("/") ? field("sysctl") : undefined,
    };
  },
};
