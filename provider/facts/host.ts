import { conntrackModuleReader, conntrackSysctlReader, conntrackTableReader, otherOwnersReader } from "./conntrack";
import { firewallsReader } from "./firewalls";
import { filesReader, modprobeOptionsReader, sysctlFilesReader } from "./files";
import { iptablesReader } from "./iptables";
import { kernelModulesReader } from "./modules";
import { nftablesReader } from "./nftables";
import { firewalldReader } from "./firewalld";
import type { FactReader } from "./reader";
import { systemReader } from "./system";
import { toolsReader } from "./tools";

/** Every reader, by the name a resource asks for it with. */
export const readers = {
  system: systemReader,
  tools: toolsReader,
  conntrackModule: conntrackModuleReader,
  conntrackSysctl: conntrackSysctlReader,
  conntrackTable: conntrackTableReader,
  otherOwners: otherOwnersReader,
  sysctlFiles: sysctlFilesReader,
  modprobeOptions: modprobeOptionsReader,
  files: filesReader,
  iptables: iptablesReader,
  firewalls: firewallsReader,
  kernelModules: kernelModulesReader,
  nftables: nftablesReader,
  firewalld: firewalldReader,
} satisfies Record<string, FactReader<unknown>>;

export type FactName = keyof typeof readers;

/** What the readers found on one host; a resource reads only the facts it asked for. */
export type HostFacts = { [K in FactName]: ReturnType<(typeof readers)[K]["parse"]> };

/** The readers for `names`, each under its fact name, once each and in a stable order. */
export function readerList(names: Iterable<FactName>): FactReader<unknown>[] {
  return [...new Set(names)].sort().map((n) => ({ ...readers[n], name: n }) as FactReader<unknown>);
}
