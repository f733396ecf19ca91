import { parseNftRuleset, type NftRuleset } from "./nftRules";
import type { FactReader } from "./reader";

/**
 * The host's native nftables ruleset, read only when nf_tables is already in the kernel (a first
 * nf_tables request would load it) and `nft` is installed.
 */
export interface NftablesFacts {
  /** `nft` is installed and nf_tables is loaded: `ruleset` is what the kernel holds. */
  readable: boolean;
  ruleset: NftRuleset;
  /** The JSON exactly as `nft -j list ruleset` printed it. */
  json: string;
}

export const nftablesReader: FactReader<NftablesFacts> = {
  name: "nftables",
  script: `
if command -v nft >/dev/null 2>&1 && { [ -d /sys/module/nf_tables ] || [ ! -e /proc/modules ]; }; then
  echo "ruleset $(nft -j list ruleset 2>/dev/null | base64 -w0)"
fi
true
`,
  parse(lines) {
    const line = lines.find((l) => l === "ruleset" || l.startsWith("ruleset "));
    if (line === undefined) return { readable: false, ruleset: { chains: [], rules: [] }, json: "" };
    const json = Buffer.from(line.slice("ruleset ".length), "base64").toString("utf8");
    try {
      return { readable: true, ruleset: parseNftRuleset(json), json };
    } catch {
      // Output that isn't nft's JSON (an nft too old for -j prints an error): unreadable, not fatal.
      return { readable: false, ruleset: { chains: [], rules: [] }, json };
    }
  },
};
