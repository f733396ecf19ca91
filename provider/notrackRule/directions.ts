import type { NotrackRuleSettings } from "../../sdk/notrackRule.schema";

/** One direction of the traffic a port carries: where its packets are filtered, and by which port field. */
export interface Direction {
  chain: "INPUT" | "OUTPUT";
  field: "dport" | "sport";
  /** The packets that open a connection (a NEW-state accept gates them) or its replies. */
  opens: boolean;
}

export function directions(side: NotrackRuleSettings["side"]): Direction[] {
  const server: Direction[] = [{ chain: "INPUT", field: "dport", opens: true }, { chain: "OUTPUT", field: "sport", opens: false }];
  const client: Direction[] = [{ chain: "OUTPUT", field: "dport", opens: true }, { chain: "INPUT", field: "sport", opens: false }];
  return side === "server" ? server : side === "client" ? client : [...server, ...client];
}

/** The opening direction whose accepts tell what the replies of `d` were open to (undefined for an opening direction). */
export function openingFor(side: NotrackRuleSettings["side"], d: Direction): Direction | undefined {
  return directions(side).find((o) => o.opens && o.chain !== d.chain && o.field !== d.field);
}
