import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";

// The lines as the SDK (runtime/resource.js) writes them, for one of ours and one of another package.
const ours = "pulumi-nodejs:dynamic/pulumi-conntrack:ConntrackLimits";
const theirs = "aws:ec2/instance:Instance";
const routine = (t: string) => [
  `Registering resource: t=${t}, name=web-1, custom=true, remote=false`,
  `RegisterResource RPC prepared: t=${t}, name=web-1`,
  `RegisterResource RPC finished: resource:web-1[${t}]; err: null, resp: urn:pulumi:dev::p::${t}::web-1,web-1,,`,
];

describe("the SDK's debug messages", () => {
  it("carry no routine registration line of ours, but those of other packages and our failures; secrets masked", async () => {
    const sent: string[] = [];
    const log = pulumi.log as unknown as { debug: (msg: string) => Promise<void> };
    log.debug = async (msg) => void sent.push(msg);
    const { maskInDebugLog, filterDebugLog } = await import("../../sdk/internal/debugLog");
    filterDebugLog();
    const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn-distinct-body\n-----END OPENSSH PRIVATE KEY-----\n";
    maskInDebugLog(["sudo-pw-1", undefined, key, "ab"]);
    maskInDebugLog(["sudo-pw-10"]);
    const failed = `RegisterResource RPC finished: resource:web-1[${ours}]; err: Error: 2 UNKNOWN: sudo-pw-10 refused, resp: undefined`;
    for (const line of [...routine(ours), ...routine(theirs), failed]) await log.debug(line);
    await log.debug(`resp: ${key},sudoPassword,,,sudo-pw-10 ${JSON.stringify({ key })} ab`);
    expect(sent).toEqual([
      ...routine(theirs),
      `RegisterResource RPC finished: resource:web-1[${ours}]; err: Error: 2 UNKNOWN: [secret] refused, resp: undefined`,
      `resp: [secret],sudoPassword,,,[secret] {"key":"[secret]"} ab`,
    ]);
  });
});
