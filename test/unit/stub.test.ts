import { describe, expect, it } from "vitest";
import { providerStub } from "../../sdk/internal/stub";

describe("provider stub stored in state", () => {
  it("is tiny and routes every engine call to the installed provider module", async () => {
    expect(providerStub.length).toBeLessThan(600);
    const calls: string[] = [];
    const fakeModule = new Proxy({}, { get: (_t, method) => (...args: unknown[]) => calls.push(`${String(method)}/${args.length}`) });
    const required: string[] = [];
    const module = { exports: {} as { handler?: () => Record<string, (...a: unknown[]) => unknown> } };
    new Function("exports", "require", "module", providerStub)(module.exports, (name: string) => (required.push(name), fakeModule), module);
    const provider = module.exports.handler!();
    provider.check({}, {});
    provider.diff("id", {}, {});
    provider.create({});
    provider.read("id", {});
    provider.update("id", {}, {});
    provider.delete("id", {});
    expect(calls).toEqual(["check/2", "diff/3", "create/1", "read/2", "update/3", "delete/2"]);
    expect(new Set(required)).toEqual(new Set(["pulumi-conntrack/provider"]));
  });
});
