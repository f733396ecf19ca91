import { nftComment, ourTable } from "../facts/nftRules";
import { splitNftItem } from "../engine/nftItems";
import { header, type FileBackend, type PersistInput } from "./items";

/**
 * Debian's nftables.service loads /etc/nftables.conf, whose `flush ruleset` wipes every rule not
 * in it. Our rules live in a file of ours, included by ONE line we add at the end of
 * nftables.conf (after the host's tables are defined, so our `insert rule` finds their chains);
 * the rest of nftables.conf stays byte for byte, and the line goes when our last rule does.
 */
export const nftablesConfPath = "/etc/nftables.conf";
export const nftIncludePath = "/etc/nftables.pulumi-conntrack.nft";
export const includeLine = `include "${nftIncludePath}"`;

const nftItems = (input: PersistInput) =>
  input.items.filter((i) => i.key.startsWith("nft:") && i.value === "present").map((i) => splitNftItem(i.key.slice(4))).sort((a, b) => `${a.table} ${a.chain} ${a.rule}`.localeCompare(`${b.table} ${b.chain} ${b.rule}`));

export function renderNftInclude(input: PersistInput): string | undefined {
  const items = nftItems(input);
  if (items.length === 0) return undefined;
  const lines = [header("#", input.owners.nft ?? []).trimEnd(), `# Included by the last line of ${nftablesConfPath}.`, ""];
  const own = items.filter((i) => i.family === ourTable.family && i.table === ourTable.name);
  if (own.length > 0) {
    lines.push(`table ${ourTable.family} ${ourTable.name} {`);
    for (const chain of [...new Set(own.map((i) => i.chain))]) {
      lines.push(`\tchain ${chain} {`, `\t\ttype filter hook ${chain} priority raw; policy accept;`);
      for (const i of own.filter((x) => x.chain === chain)) lines.push(`\t\t${i.rule} comment "${nftComment}"`);
      lines.push("\t}");
    }
    lines.push("}");
  }
  for (const i of items.filter((x) => !(x.family === ourTable.family && x.table === ourTable.name))) {
    // `add` of an existing table or chain changes nothing; of a missing one it keeps this file
    // loadable (a failed include would leave the whole nftables.conf unloaded).
    lines.push(`add table ${i.family} ${i.table}`, `add chain ${i.family} ${i.table} ${i.chain}`, `insert rule ${i.family} ${i.table} ${i.chain} ${i.rule} comment "${nftComment}"`);
  }
  return `${lines.join("\n")}\n`;
}

/** nftables.conf with our include line when there are rules to include, without it otherwise. */
export function renderNftablesConf(current: string | undefined, include: boolean): string | undefined {
  if (current === undefined) return undefined; // not a native nftables host: nothing to hook into
  const without = current.split("\n").filter((l) => l !== includeLine).join("\n");
  if (!include) return without;
  return `${without}${without === "" || without.endsWith("\n") ? "" : "\n"}${includeLine}\n`;
}

export const nftIncludeBackend: FileBackend = { path: nftIncludePath, render: (input) => renderNftInclude(input) };
export const nftablesConfBackend: FileBackend = {
  path: nftablesConfPath,
  render: (input, current) => renderNftablesConf(current, nftItems(input).length > 0),
};
