import type { FactReader } from "./reader";

/** What one firewalld zone opens, as `firewall-cmd --info-zone` prints it (runtime). */
export interface FirewalldZone {
  /** What befalls a packet the zone doesn't open: "default", "%%REJECT%%", "REJECT", "DROP", or "ACCEPT" (everything passes). */
  target: string;
  services: string[];
  /** "80/tcp", "8000-8100/udp". */
  ports: string[];
  /** Rich rules as printed: 'rule family="ipv4" source address="10.0.0.0/8" port port="80" protocol="tcp" accept'. */
  richRules: string[];
  /** firewalld's DNAT: "port=80:proto=tcp:toport=8080:toaddr=". */
  forwardPorts: string[];
}

/**
 * A running firewalld's default zone, the ports open in it and its direct rules, runtime and
 * permanent; what each zone that takes traffic (the default one and the active ones) opens, and
 * the ports of the services they list (firewall-cmd only reads here). Empty when firewalld isn't
 * running.
 */
export interface FirewalldFacts {
  running: boolean;
  zone: string;
  runtimePorts: string[];
  permanentPorts: string[];
  /** Direct rules as `firewall-cmd --direct --get-all-rules` prints them: "ipv4 raw PREROUTING 0 -p tcp ...". */
  runtimeDirect: string[];
  permanentDirect: string[];
  /** By zone name: the default zone and every active one. */
  zones: Record<string, FirewalldZone>;
  /** By service name (those the zones list): its ports, "22/tcp". */
  servicePorts: Record<string, string[]>;
}

// One Python process asks firewalld over D-Bus (its own client library, the one firewall-cmd is
// built on) for everything below: under emulation or on a slow host each firewall-cmd run costs
// seconds, and the shell fallback needs about a dozen. It prints firewall-cmd's own spellings
// (joinArgs quotes direct-rule arguments as --get-all-rules does; --list-ports sorts, --info-zone
// doesn't), and all or nothing: any failure (no python3, an older or newer client API) prints
// nothing and the firewall-cmd fallback runs.
// -I -B: no user site or environment, no .pyc written (reading never changes the host).
const pythonReader = `
import re, sys
from firewall.client import FirewallClient
from firewall.functions import joinArgs
fw = FirewallClient()
if not fw.connected:
    sys.exit(3)
name = re.compile(r"^[A-Za-z0-9_.-]+$")
ports = lambda pairs: " ".join("%s/%s" % (p[0], p[1]) for p in pairs)
listed = lambda pairs: " ".join(sorted("%s/%s" % (p[0], p[1]) for p in pairs))
out = []
z = fw.getDefaultZone()
out.append("zone " + z)
out.append("runtime-ports " + listed(fw.getZoneSettings(z).getPorts()))
out.append("permanent-ports " + listed(fw.config().getZoneByName(z).getSettings().getPorts()))
for prefix, rules in (("runtime-direct", fw.getAllRules()), ("permanent-direct", fw.config().direct().getAllRules())):
    for r in rules:
        out.append("%s %s %s %s %d %s" % (prefix, r[0], r[1], r[2], r[3], joinArgs(r[4])))
services = set()
for a in sorted(a for a in {z} | set(fw.getActiveZones()) if name.match(a)):
    s = fw.getZoneSettings(a)
    out.append("zone-info %s target: %s" % (a, s.getTarget()))
    out.append("zone-info %s services: %s" % (a, " ".join(sorted(s.getServices()))))
    out.append("zone-info %s ports: %s" % (a, ports(s.getPorts())))
    out += ["zone-info %s port=%s:proto=%s:toport=%s:toaddr=%s" % ((a,) + tuple(f)) for f in s.getForwardPorts()]
    out += ["zone-info %s %s" % (a, r) for r in s.getRichRules()]
    services.update(x for x in s.getServices() if name.match(x))
for x in sorted(services):
    out.append("service-ports %s %s" % (x, ports(fw.getServiceSettings(x).getPorts())))
sys.stdout.write("\\n".join(out) + "\\n")
`;

// Zone and service names are file names of firewalld's (letters, digits, "_", "-", "."), so they
// are safe in the sed expression and the argument below.
export const firewalldReader: FactReader<FirewalldFacts> = {
  name: "firewalld",
  script: `
if command -v firewall-cmd >/dev/null 2>&1 && systemctl is-active --quiet firewalld 2>/dev/null; then
  if ! python3 -I -B - 2>/dev/null <<'PCT_FIREWALLD_PY'
${pythonReader.trim()}
PCT_FIREWALLD_PY
  then
  z=$(firewall-cmd --get-default-zone 2>/dev/null)
  echo "zone $z"
  echo "runtime-ports $(firewall-cmd --zone="$z" --list-ports 2>/dev/null)"
  echo "permanent-ports $(firewall-cmd --permanent --zone="$z" --list-ports 2>/dev/null)"
  firewall-cmd --direct --get-all-rules 2>/dev/null | sed 's/^/runtime-direct /'
  firewall-cmd --permanent --direct --get-all-rules 2>/dev/null | sed 's/^/permanent-direct /'
  zones=$( { echo "$z"; firewall-cmd --get-active-zones 2>/dev/null | awk '/^[^[:space:]]/ { print $1 }'; } | grep -E '^[A-Za-z0-9_.-]+$' | sort -u)
  for a in $zones; do firewall-cmd --info-zone="$a" 2>/dev/null | sed "s/^/zone-info $a /"; done
  for s in $(for a in $zones; do firewall-cmd --zone="$a" --list-services 2>/dev/null; done | tr ' ' '\\n' | grep -E '^[A-Za-z0-9_.-]+$' | sort -u); do
    echo "service-ports $s $(firewall-cmd --info-service="$s" 2>/dev/null | sed -n 's/^[[:space:]]*ports:[[:space:]]*//p')"
  done
  fi
fi
true
`,
  parse(lines) {
    const field = (name: string) => lines.find((l) => l === name || l.startsWith(`${name} `))?.slice(name.length + 1).trim();
    const all = (name: string) => lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
    const words = (text: string | undefined) => (text ?? "").split(/\s+/).filter(Boolean);
    const zone = field("zone") ?? "";
    const servicePorts: Record<string, string[]> = {};
    for (const line of all("service-ports")) {
      const [name, ...ports] = words(line);
      servicePorts[name] = ports;
    }
    return {
      running: zone !== "",
      zone,
      runtimePorts: words(field("runtime-ports")),
      permanentPorts: words(field("permanent-ports")),
      runtimeDirect: all("runtime-direct"),
      permanentDirect: all("permanent-direct"),
      zones: parseZoneInfo(lines.filter((l) => l.startsWith("zone-info "))),
      servicePorts,
    };
  },
};

/**
 * `zone-info <zone> <line of firewall-cmd --info-zone>` lines → each zone's openings. A line
 * "  key: value" starts a key; rich rules and forward ports may follow their key one per line
 * (firewalld 0.9 and later print them so), or share its line (older ones).
 */
function parseZoneInfo(lines: string[]): Record<string, FirewalldZone> {
  const zones: Record<string, FirewalldZone> = {};
  for (const line of lines) {
    const [, name, rest] = /^zone-info (\S+) ?(.*)$/.exec(line) ?? [];
    if (name === undefined) continue;
    const zone = (zones[name] ??= { target: "default", services: [], ports: [], richRules: [], forwardPorts: [] });
    const text = rest.trim();
    const keyed = /^([a-z][a-z -]*):\s*(.*)$/.exec(text);
    if (text.startsWith("rule ")) zone.richRules.push(text);
    else if (text.startsWith("port=")) zone.forwardPorts.push(...text.split(/\s+/));
    else if (keyed) {
      const [, key, value] = keyed;
      if (key === "target") zone.target = value;
      else if (key === "services") zone.services = value.split(/\s+/).filter(Boolean);
      else if (key === "ports") zone.ports = value.split(/\s+/).filter(Boolean);
      else if (key === "forward-ports") zone.forwardPorts.push(...value.split(/\s+/).filter(Boolean));
      else if (key === "rich rules" && value.startsWith("rule ")) zone.richRules.push(value);
    }
  }
  return zones;
}
