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

// Few processes: a fork costs more than anything else a fact read does, on hosts that are busy
// and in the lab, where hundreds of "hosts" share two cores (bench/preview-fleet.mjs). So files
// are read with the shell's own `read` and compared with `test -ef`, and the page size comes from
// /proc/self/smaps (getconf only where that file is missing). Same output as uname/sed/readlink/cat
// and getconf printed.
export const systemReader: FactReader<SystemFacts> = {
  name: "system",
  script: `
read -r kernel < /proc/sys/kernel/osrelease; echo "kernel $kernel"
# the page size of this shell's first mapping, as the kernel prints it; getconf where smaps is missing
p=; while read -r k v u; do [ "$k" = KernelPageSize: ] && { [ "$u" = kB ] && p=$((v * 1024)); break; }; done 2>/dev/null < /proc/self/smaps
[ -n "$p" ] || p=$(getconf PAGESIZE 2>/dev/null)
echo "pagesize $p"
while read -r key value unit; do
  if [ "$key" = MemTotal: ]; then [ "$unit" = kB ] && echo "memtotal $value"; break; fi
done < /proc/meminfo
# the same namespace is the same nsfs inode (what readlink prints as net:[INODE])
[ /proc/self/ns/net -ef /proc/1/ns/net ] && echo "netns init" || echo "netns child"
if [ -s /run/systemd/container ]; then read -r c < /run/systemd/container; echo "container $c"
elif [ -e /.dockerenv ]; then echo "container docker"
elif [ -r /proc/1/environ ] && tr '\\0' '\\n' < /proc/1/environ | grep -q '^container='; then echo "container $(tr '\\0' '\\n' < /proc/1/environ | sed -n 's/^container=//p')"
fi
[ -d /run/systemd/system ] && echo "systemd yes"
command -v udevadm >/dev/null 2>&1 && echo "udevadm yes"
printf 'sysctl '; command -v sysctl || echo
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
