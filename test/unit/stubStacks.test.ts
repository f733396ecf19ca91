import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";

pulumi.runtime.setMocks({
  newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
  call: () => ({}),
});

// A host that never becomes known: the constructor runs, no fact read starts (that needs the compiled provider).
const unknownHost = () => ({ connection: pulumi.output(new Promise<{ host: string; user: string; privateKey: string }>(() => {})), timeouts: { udp: 45 } });

describe("registering a resource without promise stamps", () => {
  it("leaves the program's stack trace limit as it found it", async () => {
    const { ConntrackLimits } = await import("../../sdk");
    const before = Error.stackTraceLimit;
    new ConntrackLimits("stamps-ok", unknownHost());
    expect(Error.stackTraceLimit).toBe(before);
  });
  it("keeps the caller's frames in an error the SDK throws while registering", async () => {
    const { ConntrackLimits } = await import("../../sdk");
    const before = Error.stackTraceLimit;
    let thrown: Error | undefined;
    function declaredHere() {
      // a parent that isn't a resource: the SDK refuses it in the constructor
      new ConntrackLimits("stamps-bad", unknownHost(), { parent: {} as pulumi.Resource });
    }
    try {
      declaredHere();
    } catch (err) {
      thrown = err as Error;
    }
    expect(thrown?.message).toBeTruthy();
    expect(thrown?.stack).toContain("declaredHere");
    expect(Error.stackTraceLimit).toBe(before);
  });
});

describe("the SDK's promise stamps after a resource is constructed", () => {
  it("carry no stack frames while leaks aren't being debugged, and leave the limit as they found it", async () => {
    const { ConntrackLimits } = await import("../../sdk");
    new ConntrackLimits("stamps-later", unknownHost());
    // the SDK's own stamping function, as it calls it: looked up on its module at each call
    const debuggable = (await import("@pulumi/pulumi/runtime/debuggable")) as unknown as { debuggablePromise(p: Promise<unknown>, ctx: string): Promise<unknown> };
    const stamped = Promise.resolve(1);
    const before = Error.stackTraceLimit;
    await debuggable.debuggablePromise(stamped, "test");
    expect(Error.stackTraceLimit).toBe(before);
    expect(process.env.PULUMI_DEBUG_PROMISE_LEAKS).toBeUndefined();
    const trace = (stamped as unknown as { _debugStackTrace: string })._debugStackTrace;
    expect(trace).toMatch(/^Error/);
    expect(trace).not.toContain(" at ");
    expect(new Error().stack).toContain("\n    at ");
  });
});

describe("the properties a resource registers", () => {
  it("leaves out the settings the program left out, and keeps the outputs and the settings given", async () => {
    const { ConntrackLimits } = await import("../../sdk");
    const limits = new ConntrackLimits("settings-given", unknownHost());
    const own = Object.keys(limits);
    expect(own).toEqual(expect.arrayContaining(["timeouts", "live", "plan", "warnings", "previous", "files", "memoryEstimate"]));
    expect(own).not.toContain("max");
    expect(own).not.toContain("hashsize");
    expect(own).not.toContain("persist");
  });
});
