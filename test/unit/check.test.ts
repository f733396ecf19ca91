import { describe, expect, it } from "vitest";
import { check } from "../../provider/index";
import { connectionsOpened } from "../../provider/transport/pool";

// check() runs in every preview; bad input must fail here, naming the field, before any SSH.
const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
// 192.0.2.1 (TEST-NET-1) would hang if anything tried to dial it: nothing may.
const connection = { host: "192.0.2.1", port: 22, user: "root" };
// As the SDK sends them (sdk/internal/stub.ts): the program's own fields under __program.
const program = { resourceType: "ConntrackLimits", owner: "web", scope: "proj/dev" };
const base = { connection, credentials: { privateKey: "k" }, __program: program };
type Result = { inputs?: Record<string, unknown>; failures?: { property: string; reason: string }[] };
const run = async (news: Record<string, unknown>) => (await check({}, news as never)) as Result;

describe("check", () => {
  it.each([
    [{ max: -5 }, "max", "max must be at least 1"],
    [{ max: 0 }, "max", "max must be at least 1"],
    [{ hashsize: 1.5 }, "hashsize", "hashsize must be a whole number"],
    [{ max: 10 ** 12 }, "max", "max must be at most 268435456"],
    [{ max: "262144" }, "max", "max must be a number, not string"],
    [{ timeouts: { tcpEstablished: 60, tcp_established: 60 } }, "timeouts", "unknown timeout name(s) tcp_established"],
    [{}, "", "nothing to manage: give at least one of max, hashsize, timeouts"],
  ])("refuses %j naming the field and the rule", async (settings, property, reason) => {
    const result = await run({ ...base, ...settings });
    expect(result.failures).toContainEqual({ property, reason: expect.stringContaining(reason) });
    expect(connectionsOpened.size).toBe(0);
  });

  it("reports every problem at once, settings and connection", async () => {
    const result = await run({ ...base, max: 0, connection: { host: "", port: 99999 } });
    expect(result.failures?.map((f) => f.property).sort()).toEqual(["connection.host", "connection.port", "max"]);
  });

  it("tolerates unknown values in preview without contacting the host", async () => {
    for (const news of [
      { ...base, max: unknown },
      { ...base, max: 1000, connection: { ...connection, host: unknown } },
      { ...base, timeouts: { udp: unknown } },
      { ...base, max: 1000, credentials: unknown },
    ]) {
      const result = await run(news);
      expect(result.failures).toBeUndefined();
      expect(result.inputs).toMatchObject({ persist: true });
      expect(result.inputs?.plan).toBeUndefined();
    }
    expect(connectionsOpened.size).toBe(0);
  });

  it("lets a host the program couldn't reach fail at its apply, not in check, and says so in the preview", async () => {
    const error = "root@192.0.2.1:22: unreachable after 1 try (connection refused)";
    const prefetched = (unreachable: boolean) => ({ names: ["system", "files"], error, unreachable, preview: true });
    const result = await run({ ...base, max: 1000, __program: { ...program, prefetched: prefetched(true) } });
    expect(result.failures).toBeUndefined();
    expect(result.inputs).toMatchObject({ plan: { host: `unreachable: ${error}` }, warnings: [error] });
    // Stored as earlier versions stored them: name and scope as properties, the facts nowhere.
    expect(result.inputs).toMatchObject({ resourceType: "ConntrackLimits", owner: "web", scope: "proj/dev" });
    expect(Object.keys(result.inputs ?? {})).not.toContain("prefetched");
    expect(Object.keys(result.inputs ?? {})).not.toContain("__program");
    // Any other failure to read (a refused key, a failed command) still fails check.
    expect((await run({ ...base, max: 1000, __program: { ...program, prefetched: prefetched(false) } })).failures).toEqual([{ property: "connection", reason: error }]);
    expect(connectionsOpened.size).toBe(0);
  });
});
