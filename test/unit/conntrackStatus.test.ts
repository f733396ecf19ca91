import { describe, expect, it } from "vitest";
import { conntrackStatusReader, sumPerCpu } from "../../provider/facts/conntrackStatus";

// The header as kernel 6.x prints it (read on this machine's kernel), with two CPUs' rows.
const stat = `entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000013  00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000002 0000003a 00000001 00000000  00000000 00000000 00000000 00000000
00000013  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000036 00000000 00000000  00000000 00000000 00000000 00000000
`;
const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("conntrack status", () => {
  it("sums the per-CPU counters by the header's column names (hex)", () => {
    expect(sumPerCpu(stat)).toMatchObject({ drop: 0x3a + 0x36, early_drop: 1, insert_failed: 2, invalid: 3 });
  });

  it("parses the reader's output, table-full lines included", () => {
    const full = "[  101.5] nf_conntrack: nf_conntrack: table full, dropping packet\n[  101.6] nf_conntrack: nf_conntrack: table full, dropping packet\n";
    const facts = conntrackStatusReader.parse(["count 19", "max 4096", "buckets 4096", `stat ${b64(stat)}`, `full ${b64(full)}`]);
    expect(facts).toEqual({ tracking: true, count: 19, max: 4096, buckets: 4096, drop: 112, earlyDrop: 1, insertFailed: 2, tableFull: full.trim().split("\n") });
  });

  it("knows a host that tracks nothing, and refuses garbage", () => {
    expect(conntrackStatusReader.parse(["not-tracking"])).toEqual({ tracking: false });
    expect(() => conntrackStatusReader.parse(["count x", "max 1", "buckets 1", "full "])).toThrow(/count is "x"/);
  });
});
