import { describe, expect, it } from "vitest";
import { conntrackLimitsProvider } from "../../provider/conntrackLimits/provider";
import { unknown } from "../../provider/dynamic";
import type { BaseInputs, BaseOutputs } from "../../provider/engine/resource";

const stored = (connection: Record<string, unknown>): BaseOutputs =>
  ({ resourceType: "ConntrackLimits", owner: "edge", connection, max: 262144, persist: true, previous: {}, live: {}, files: [] }) as BaseOutputs;
const declared = (connection: Record<string, unknown>): BaseInputs => ({ resourceType: "ConntrackLimits", owner: "edge", connection, max: 262144, persist: true });

const replacesOf = async (before: Record<string, unknown>, after: Record<string, unknown>) =>
  (await conntrackLimitsProvider.diff!("id", stored(before), declared(after))).replaces ?? [];

describe("a change of the host's address replaces the resource", () => {
  it("replaces when `port: 2222` is removed: the port goes back to 22, another sshd", async () => {
    expect(await replacesOf({ host: "10.0.0.1", port: 2222 }, { host: "10.0.0.1" })).toEqual(["connection"]);
  });
  it("replaces when the host changes, or a port is given that differs from the default", async () => {
    expect(await replacesOf({ host: "10.0.0.1" }, { host: "10.0.0.2" })).toEqual(["connection"]);
    expect(await replacesOf({ host: "10.0.0.1" }, { host: "10.0.0.1", port: 2222 })).toEqual(["connection"]);
    expect(await replacesOf({ host: "10.0.0.1" }, { host: unknown })).toEqual(["connection"]);
  });
  it("updates in place when only the spelling of the same address changes (port 22 given or left out)", async () => {
    expect(await replacesOf({ host: "10.0.0.1", port: 22 }, { host: "10.0.0.1" })).toEqual([]);
    expect(await replacesOf({ host: "10.0.0.1" }, { host: "10.0.0.1", port: 22 })).toEqual([]);
    expect(await replacesOf({ host: "10.0.0.1", user: "root" }, { host: "10.0.0.1", user: "ops", sudo: true })).toEqual([]);
  });
});
