import { describe, expect, it } from "vitest";
import { unhealthy, readingOf, type Reading } from "../../provider/fleet/health";
import { rolloutSchema, splitIntoWaves } from "../../sdk/fleet.schema";
import { Fleet } from "../../sdk/fleet";

const hosts = Array.from({ length: 10 }, (_, i) => `h${i + 1}`);
const tracked = (count: number, max: number, drop: number | null = 0, earlyDrop: number | null = 0, insertFailed: number | null = 0): Reading =>
  readingOf({ tracking: true, count, max, buckets: 1024, drop: drop ?? undefined, earlyDrop: earlyDrop ?? undefined, insertFailed: insertFailed ?? undefined, tableFull: [] });

describe("Fleet waves", () => {
  it("sizes waves by count or by percentage of all hosts, rounded up, the last size repeating", () => {
    expect(splitIntoWaves(hosts, [1, "25%", "100%"]).map((w) => w.length)).toEqual([1, 3, 6]);
    expect(splitIntoWaves(hosts, [3]).map((w) => w.length)).toEqual([3, 3, 3, 1]);
    expect(splitIntoWaves(hosts, ["100%"])).toEqual([hosts]);
    expect(splitIntoWaves(hosts, ["1%", 2]).map((w) => w.length)).toEqual([1, 2, 2, 2, 2, 1]);
    expect(splitIntoWaves(hosts, [1, 2]).flat()).toEqual(hosts);
  });

  it("refuses bad rollout options, naming the field", () => {
    const issues = (r: unknown) => rolloutSchema.safeParse(r).error?.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    expect(issues({ waves: [0] })).toEqual(["waves.0: a wave has at least 1 host"]);
    expect(issues({ waves: ["120%"] })?.[0]).toMatch(/^waves\.0: a percentage wave is written like "25%"/);
    expect(issues({ waves: [] })).toEqual(["waves: waves needs at least one size"]);
    expect(issues({ maxFailures: -1 })).toEqual(["maxFailures: maxFailures can't be negative"]);
    expect(issues({ healthCheck: { maxUsage: 1.5 } })).toEqual(["healthCheck.maxUsage: maxUsage is a fraction of nf_conntrack_max, at most 1"]);
    expect(issues({ healthCheck: { soak: 3 } })?.[0]).toMatch(/^healthCheck: Unrecognized key/);
    expect(issues({ waves: [1, "25%"], maxFailures: 2, healthCheck: { maxUsage: 0.8, noNewDrops: true, soakSeconds: 0 } })).toBeUndefined();
  });

  it("refuses a bad declaration when constructed, before any resource exists", () => {
    const connection = { host: "192.0.2.1" };
    expect(() => new Fleet("f", { hosts: [], conntrack: { max: 1 } })).toThrow("Fleet f: hosts: list at least one host");
    expect(() => new Fleet("f", { hosts: [{ name: "a;b", connection }], conntrack: { max: 1 } })).toThrow(/hosts\[0\]\.name: a host's name is 1-63 letters/);
    expect(() => new Fleet("f", { hosts: [{ name: "a", connection }, { name: "a", connection }], conntrack: { max: 1 } })).toThrow("hosts[1].name: a is listed twice");
    expect(() => new Fleet("f", { hosts: [{ name: "a", connection }] })).toThrow("declare at least one of conntrack, notrack, firewall, modules");
    expect(() => new Fleet("f", { hosts: [{ name: "a", connection }], conntrack: { max: 1 }, rollout: { waves: [0] } })).toThrow("rollout.waves.0: a wave has at least 1 host");
  });
});

describe("Fleet health gate", () => {
  const check = { maxUsage: 0.8, noNewDrops: true };

  it("passes a healthy host, and one that tracks nothing", () => {
    expect(unhealthy(tracked(10, 100, 5), tracked(50, 100, 5), check)).toEqual([]);
    expect(unhealthy(undefined, { tracking: false }, check)).toEqual([]);
  });

  it("fails a host above maxUsage, with its reading", () => {
    expect(unhealthy(tracked(10, 100), tracked(90, 100), check)).toEqual(["usage 0.90 (90/100) is above maxUsage 0.8"]);
    expect(unhealthy(tracked(10, 100), tracked(90, 100), { noNewDrops: true })).toEqual([]);
  });

  it("fails a host whose drop counters rose since the baseline, each with before → after", () => {
    expect(unhealthy(tracked(16, 16, 3, 0, 1), tracked(16, 16, 40, 0, 2), { noNewDrops: true })).toEqual(["drop rose by 37 (3 → 40)", "insertFailed rose by 1 (1 → 2)"]);
    expect(unhealthy(tracked(16, 16, 3), tracked(16, 16, 40), { noNewDrops: false })).toEqual([]);
  });

  it("counts from 0 where there was no baseline or nothing was tracked before", () => {
    expect(unhealthy(undefined, tracked(1, 100, 2), check)).toEqual(["drop rose by 2 (0 → 2)"]);
    expect(unhealthy({ tracking: false }, tracked(1, 100, 2), check)).toEqual(["drop rose by 2 (0 → 2)"]);
    expect(unhealthy({ error: "x" }, tracked(1, 100, 0), check)).toEqual([]);
  });

  it("fails a host that couldn't be read, with the reason", () => {
    expect(unhealthy(tracked(1, 100), { error: "root@h:22: no answer" }, check)).toEqual(["couldn't be read: root@h:22: no answer"]);
  });

  it("ignores counters the kernel doesn't have", () => {
    expect(unhealthy(tracked(1, 100, null), tracked(1, 100, null), check)).toEqual([]);
  });
});
