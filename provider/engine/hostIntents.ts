/**
 * What a resource needs left in place on its host, or takes away, beyond the items it claims: a
 * module another resource unloads, a service another stops. Words are shared across resource
 * types: "module nf_conntrack", "service netfilter-persistent".
 */
export interface Intents {
  needs: string[];
  removes: string[];
  /**
   * Item (as a preview names it) → the value this resource wants there. Two resources of one
   * program wanting different values clash here, before either is applied: the host's ledger
   * would only refuse the second one half way through the up.
   */
  values?: Record<string, string>;
}

/**
 * Intents declared in this provider process, per host and resource label. The engine checks every
 * resource of an operation in one provider process, so the later of two resources that clash
 * fails its check, naming both, before either touches the host. Across stacks, each kind's
 * `want` reads the host's ledger instead.
 */
const declared = new Map<string, Map<string, Intents>>();

/** Records `label`'s intents on the host and returns a message for each clash with another resource's. */
export function declareIntents(hostKey: string, label: string, intents: Intents): string[] {
  const host = declared.get(hostKey) ?? new Map<string, Intents>();
  declared.set(hostKey, host);
  host.set(label, intents);
  const clashes: string[] = [];
  for (const [other, theirs] of host) {
    if (other === label) continue;
    for (const thing of intents.removes.filter((t) => theirs.needs.includes(t))) clashes.push(`${label} removes ${thing}, which ${other} needs`);
    for (const thing of intents.needs.filter((t) => theirs.removes.includes(t))) clashes.push(`${other} removes ${thing}, which ${label} needs`);
    for (const [item, value] of Object.entries(intents.values ?? {})) {
      const theirValue = theirs.values?.[item];
      if (theirValue !== undefined && theirValue !== value) clashes.push(`${label} wants ${item} = ${value} and ${other} wants ${theirValue}`);
    }
  }
  return clashes;
}
