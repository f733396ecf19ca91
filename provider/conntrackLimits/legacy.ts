import { createHash } from "node:crypto";
import type { HostFacts } from "../facts/host";
import { ledgerFormat, ledgerPath, renderLedger, type Ledger } from "../engine/ledger";
import type { FactsView } from "../engine/transaction";
import { currentLedger } from "../engine/plan";
import { hasToken, iptablesConfigPath } from "../persistence/iptablesConfig";
import type { HostTarget } from "../transport/target";
import { itemKey, loadToken } from "./plan";

/**
 * Stacks written by pulumi-conntrack 0.1 (before the ledger): each resource had its own files,
 * named by an id made of its name and host, with the values it found recorded in its outputs
 * (`hostId`, `previous`, `previousFiles`). Such a resource previews as a no-op while the host
 * holds its values, moves into the ledger at its next update, and is destroyed exactly.
 */
export interface LegacyOutputs {
  hostId: string;
  previous?: Record<string, string>;
  previousFiles?: Record<string, string>;
}

const notLoaded = "(module not loaded)";

function slug(name: string): string {
  const s = name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
  return s || "resource";
}

/** The id 0.1 gave a resource on a host (its files carry it in their names). */
export function legacyId(owner: string, target: HostTarget): string {
  const hash = createHash("sha256").update(`${owner}\0${target.host}:${target.port}`).digest("hex").slice(0, 8);
  return `${slug(owner)}-${hash}`;
}

export function legacyPaths(id: string): string[] {
  return [`/etc/sysctl.d/90-pulumi-conntrack-${id}.conf`, `/etc/modprobe.d/pulumi-conntrack-${id}.conf`, `/etc/udev/rules.d/90-pulumi-conntrack-${id}.rules`];
}

export function hasLegacyFiles(facts: HostFacts, id: string): boolean {
  return legacyPaths(id).some((p) => facts.files[p] !== undefined);
}

/** The ledger owner id a 0.1 resource is known by while it is migrated or destroyed. */
export const legacyOwner = (id: string) => `legacy/${id}`;

/**
 * A view of the host in which the 0.1 resource's values are already in the ledger, owned by
 * `legacyOwner(id)` with the originals its outputs recorded, and its old files are due to go.
 * Releasing that owner then restores exactly what 0.1 would have; claiming under a new owner
 * that also releases it keeps the originals.
 */
export function adoptLegacy(outputs: LegacyOutputs, label: string): FactsView {
  return (facts) => {
    const ledger: Ledger = structuredClone(currentLedger(facts));
    const owner = legacyOwner(outputs.hostId);
    for (const [name, original] of Object.entries(outputs.previous ?? {})) {
      const key = itemKey(name);
      const item = (ledger.items[key] ??= { original: original === notLoaded ? null : original, owners: {} });
      const live = key.startsWith("param:") ? facts.conntrackTable.hashsize?.toString() : facts.conntrackSysctl.values[name];
      item.owners[owner] = { value: live ?? original, persist: true, label };
    }
    const originalConfig = outputs.previousFiles?.[iptablesConfigPath];
    if (originalConfig !== undefined && facts.files[iptablesConfigPath] !== undefined) {
      const key = `token:${iptablesConfigPath}:${loadToken(facts.conntrackModule.name)}`;
      const item = (ledger.items[key] ??= { original: hasToken(originalConfig, loadToken(facts.conntrackModule.name)) ? "present" : "absent", owners: {} });
      item.owners[owner] = { value: "present", persist: false, label };
    }
    const files = { ...facts.files, [ledgerPath]: renderLedger({ ...ledger, format: ledgerFormat }) };
    return { facts: { ...facts, files }, removeFiles: legacyPaths(outputs.hostId) };
  };
}
