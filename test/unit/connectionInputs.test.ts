import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { splitConnection } from "../../sdk/internal/connectionInputs";

pulumi.runtime.setMocks({
  newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
  call: () => ({}),
});

// The SDK's own way to wait for an output's value (no engine here).
const valueOf = <T>(o: pulumi.Output<T>): Promise<T> => (o as unknown as { promise(): Promise<T> }).promise();

describe("splitting a connection", () => {
  it("shares the outputs of one connection object among the resources given it", () => {
    const connection = { host: "10.0.0.1", user: "root", privateKey: pulumi.secret("KEY-TEXT") };
    const first = splitConnection(connection);
    expect(splitConnection(connection)).toBe(first);
  });
  it("splits again an object changed since, taking the values it holds now", async () => {
    const connection: { host: string; user: string; privateKey: string; proxy?: { host: string; user: string } } = { host: "10.0.0.1", user: "root", privateKey: "KEY-TEXT" };
    const first = splitConnection(connection);
    connection.host = "10.0.0.2";
    const second = splitConnection(connection);
    expect(second).not.toBe(first);
    connection.proxy = { host: "bastion", user: "jump" };
    const third = splitConnection(connection);
    connection.proxy.host = "bastion2";
    const fourth = splitConnection(connection);
    expect(new Set([first, second, third, fourth]).size).toBe(4);
    expect((await valueOf(first.connection)).host).toBe("10.0.0.1");
    expect((await valueOf(second.connection)).host).toBe("10.0.0.2");
    expect(((await valueOf(third.connection)).proxy as { host: string }).host).toBe("bastion");
    expect(((await valueOf(fourth.connection)).proxy as { host: string }).host).toBe("bastion2");
    expect((await valueOf(fourth.credentials)).privateKey).toBe("KEY-TEXT");
    expect(await (fourth.credentials as unknown as { isSecret: Promise<boolean> }).isSecret).toBe(true);
  });
  it("sends nested secrets (sudo's password, the bastion's key and password, given as outputs) to the secret credentials only", async () => {
    const connection = {
      host: "10.0.0.1",
      user: "ops",
      sudo: { password: pulumi.secret("SUDO-PASSWORD") },
      proxy: { host: pulumi.output("bastion"), user: "jump", privateKey: pulumi.secret("PROXY-KEY"), password: pulumi.output("PROXY-PASSWORD") },
    };
    const { connection: shown, credentials } = splitConnection(connection);
    const publicHalf = await valueOf(shown);
    expect(publicHalf).toEqual({ host: "10.0.0.1", user: "ops", sudo: true, proxy: { host: "bastion", user: "jump" } });
    expect(await (shown as unknown as { isSecret: Promise<boolean> }).isSecret).toBe(false);
    expect(await valueOf(credentials)).toMatchObject({ sudoPassword: "SUDO-PASSWORD", proxy: { privateKey: "PROXY-KEY", password: "PROXY-PASSWORD" } });
    expect(await (credentials as unknown as { isSecret: Promise<boolean> }).isSecret).toBe(true);
  });
});
