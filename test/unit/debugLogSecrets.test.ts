import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";

describe("connection secrets in the SDK's debug messages", () => {
  it("are masked, as text and JSON-escaped, before the message leaves the program", async () => {
    const sent: string[] = [];
    const log = pulumi.log as unknown as { debug: (msg: string) => Promise<void> };
    log.debug = async (msg) => void sent.push(msg);
    const { maskInDebugLog } = await import("../../sdk/internal/debugLogSecrets");
    const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn-distinct-body\n-----END OPENSSH PRIVATE KEY-----\n";
    maskInDebugLog(["sudo-pw-1", undefined, key, "ab"]);
    maskInDebugLog(["sudo-pw-10"]);
    await log.debug(`resp: ${key},sudoPassword,,,sudo-pw-10 ${JSON.stringify({ key })} ab`);
    expect(sent).toEqual([`resp: [secret],sudoPassword,,,[secret] {"key":"[secret]"} ab`]);
  });
});
