import { describe, expect, it } from "vitest";
import type { Diffed } from "../../provider/engine/resource";
import { detailedDiff, propertyPath } from "../../provider/plugin/detailedDiff";

// The provider plugin's per-key diff: what `pulumi preview --diff` shows for each key. The engine
// takes the old value from the stored outputs (inputDiff: false) or inputs (true), the new one
// from what check returned (engine/detailedDiff.go).
const settingFields = ["max", "hashsize", "timeouts", "persist"];
const unchanged: Diffed = { changes: false, replaces: [], settings: [], connection: false, renamed: false, drift: false };
const connection = { host: "10.0.0.1", user: "root", privateKey: "KEY" };

describe("the plugin's detailed diff", () => {
  it("shows a drifted host value from what the host holds to what it will hold, and nothing for a converged one", () => {
    const oldOutputs = { live: { "net.netfilter.nf_conntrack_icmp_timeout": "30", "net.netfilter.nf_conntrack_udp_timeout": "45" } };
    const news = { connection, timeouts: { icmp: 25, udp: 45 }, live: { "net.netfilter.nf_conntrack_icmp_timeout": "25", "net.netfilter.nf_conntrack_udp_timeout": "45" } };
    const diff = detailedDiff({ oldOutputs, oldInputs: { connection, timeouts: { icmp: 25, udp: 45 } }, news, diffed: { ...unchanged, changes: true, drift: true }, settingFields });
    expect(diff).toEqual({ 'live["net.netfilter.nf_conntrack_icmp_timeout"]': { kind: "UPDATE", inputDiff: false } });
  });

  it("adds a newly managed value and deletes a released one; plan steps that aren't values show as added", () => {
    const oldOutputs = { live: { "net.netfilter.nf_conntrack_max": "4096" } };
    const news = {
      live: { "net.netfilter.nf_conntrack_udp_timeout": "20" },
      plan: { "net.netfilter.nf_conntrack_udp_timeout": "30 → 20", "/etc/sysctl.d/90-pulumi-conntrack.conf": "write" },
    };
    const diff = detailedDiff({ oldOutputs, oldInputs: {}, news, diffed: { ...unchanged, changes: true, drift: true }, settingFields });
    expect(diff).toEqual({
      'live["net.netfilter.nf_conntrack_udp_timeout"]': { kind: "ADD", inputDiff: false },
      'live["net.netfilter.nf_conntrack_max"]': { kind: "DELETE", inputDiff: false },
      'plan["/etc/sysctl.d/90-pulumi-conntrack.conf"]': { kind: "ADD", inputDiff: false },
    });
  });

  it("names each changed setting by its own key, as the program wrote it", () => {
    const oldInputs = { connection, timeouts: { icmp: 25, udp: 45 }, persist: true };
    const news = { connection, timeouts: { icmp: 25, udp: 20 }, max: 262144, persist: false };
    const diff = detailedDiff({ oldOutputs: {}, oldInputs, news, diffed: { ...unchanged, changes: true, settings: ["max", "timeouts", "persist"] }, settingFields });
    expect(diff).toEqual({
      max: { kind: "ADD", inputDiff: true },
      "timeouts.udp": { kind: "UPDATE", inputDiff: true },
      persist: { kind: "UPDATE", inputDiff: true },
    });
  });

  it("says that the host or port replaces the resource, and that other connection fields don't", () => {
    const oldInputs = { connection: { ...connection, port: 2222 } };
    const news = { connection: { ...connection, host: "10.0.0.2", user: "ops", sudo: true } };
    const diff = detailedDiff({ oldOutputs: {}, oldInputs, news, diffed: { ...unchanged, changes: true, replaces: ["connection"], connection: true }, settingFields });
    expect(diff).toEqual({
      "connection.host": { kind: "UPDATE_REPLACE", inputDiff: true },
      "connection.port": { kind: "DELETE_REPLACE", inputDiff: true },
      "connection.user": { kind: "UPDATE", inputDiff: true },
      "connection.sudo": { kind: "ADD", inputDiff: true },
    });
  });

  it("blames the whole connection for a replacement when its fields aren't known yet", () => {
    const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
    const diff = detailedDiff({ oldOutputs: {}, oldInputs: { connection }, news: { connection: unknown }, diffed: { ...unchanged, changes: true, replaces: ["connection"], connection: true }, settingFields });
    expect(diff).toEqual({ connection: { kind: "UPDATE_REPLACE", inputDiff: true } });
  });

  it("writes paths the engine parses back into the same keys", () => {
    expect(propertyPath(["live", "net.netfilter.nf_conntrack_max"])).toBe('live["net.netfilter.nf_conntrack_max"]');
    expect(propertyPath(["timeouts", "icmp"])).toBe("timeouts.icmp");
    expect(propertyPath(["plan", 'rule "quoted"'])).toBe('plan["rule \\"quoted\\""]');
    expect(propertyPath(["ports", 0])).toBe("ports[0]");
  });
});
