import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { conntrackLimitsFacts } from "../../provider/conntrackLimits/plan";
import { detach, renderScript, writeFile } from "../../provider/engine/commands";
import { waiter } from "../../provider/engine/hostJobs";
import { alwaysRead } from "../../provider/engine/hostFacts";
import { lockScript } from "../../provider/engine/hostLock";
import { floorBlockers, floorCommands, toolsReader } from "../../provider/facts/tools";
import { check } from "../../provider/index";
import { connectionsOpened } from "../../provider/transport/pool";
import { fixture } from "./helpers";

// The host tool floor (docs/api.md, "What a managed host needs"): the tools reader's script and
// parser, the preview's refusal, and the portable forms of what used GNU-only flags, run here
// with the machine's sh (the netns test runs them all on a host with busybox's applets first).
const dir = mkdtempSync(join(tmpdir(), "pct-floor-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sh = (script: string, env: Record<string, string> = {}) => spawnSync("sh", ["-s"], { input: script, encoding: "utf8", env: { ...process.env, ...env } });
const which = (tool: string) => sh(`command -v ${tool}`).stdout.trim();

/** A PATH of one directory holding the floor's commands (but `without`), and `extra` scripts. */
function pathWith(name: string, without: string[], extra: Record<string, string> = {}): string {
  const bin = join(dir, name);
  mkdirSync(bin);
  for (const t of [...floorCommands.map((c) => c.name), "sh"]) if (!without.includes(t)) symlinkSync(which(t), join(bin, t));
  symlinkSync(existsSync("/bin/true") ? "/bin/true" : "/usr/bin/true", join(bin, "true")); // flock runs it (sh's is a builtin)
  for (const [t, text] of Object.entries(extra)) {
    rmSync(join(bin, t), { force: true });
    writeFileSync(join(bin, t), text, { mode: 0o755 });
  }
  return bin;
}
const readTools = (path?: string) => {
  const r = sh(toolsReader.script, path ? { PATH: path } : {});
  expect(r.status).toBe(0);
  return toolsReader.parse(r.stdout.split("\n").filter((l) => l.trim() !== ""));
};

describe("the tools reader", () => {
  it("prints nothing where every tool and flag is there (this machine: util-linux, coreutils)", () => {
    expect(sh(toolsReader.script).stdout).toBe("");
    expect(readTools()).toEqual({ missing: [], lacking: [] });
  });

  it("names a command missing from PATH, and a flag a command lacks", () => {
    expect(readTools(pathWith("no-setsid", ["setsid"]))).toEqual({ missing: ["setsid"], lacking: [] });
    const busyboxLikeFlock = "#!/bin/sh\nfor a in \"$@\"; do case $a in -w|-o) echo \"flock: invalid option -- '${a#-}'\" >&2; exit 1;; esac; done\nexec " + which("flock") + " \"$@\"\n";
    const oldBase64 = "#!/bin/sh\ncase $1 in -w*) echo \"base64: invalid option -- 'w'\" >&2; exit 1;; esac\nexec " + which("base64") + " \"$@\"\n";
    expect(readTools(pathWith("old-tools", [], { flock: busyboxLikeFlock, base64: oldBase64 }))).toEqual({ missing: [], lacking: ["base64", "flock"] });
    expect(readTools(pathWith("old-base64", [], { base64: oldBase64 }))).toEqual({ missing: [], lacking: ["base64"] });
    expect(readTools(pathWith("no-flock", ["flock"]))).toEqual({ missing: ["flock"], lacking: [] });
  });

  it("parses what it printed, ignoring anything else", () => {
    expect(toolsReader.parse(["missing flock", "lacks flock", "lacks base64", "lacks nosuchtool", "missing", "junk line here", "lacks sleep extra"])).toEqual({ missing: ["flock"], lacking: ["base64"] });
    expect(toolsReader.parse([])).toEqual({ missing: [], lacking: [] });
  });

  it("turns what a host lacks into reasons that name the tool, what is needed of it and where it comes from", () => {
    expect(floorBlockers({ missing: [], lacking: [] })).toEqual([]);
    expect(floorBlockers({ missing: ["setsid"], lacking: ["flock"] })).toEqual([
      "needs setsid (util-linux, or busybox), and the host has no setsid on the PATH the scripts run with: install it, then run again",
      "needs flock with -w and -o (util-linux's flock; busybox's has neither flag), and the host's flock (the first on the PATH the scripts run with) lacks that: install one that has it, then run again",
    ]);
  });
});

describe("the preview refuses a host below the floor", () => {
  // The program process's read (the facts of a namespaced lab host), handed to check as the SDK does.
  const connection = { host: "192.0.2.1", port: 22, user: "root" };
  const names = [...new Set([...alwaysRead, ...conntrackLimitsFacts])].sort();
  const news = (output: string) => ({
    connection,
    credentials: { privateKey: "k" },
    timeouts: { udp: 40 },
    __program: { resourceType: "ConntrackLimits", owner: "web", scope: "proj/dev", prefetched: { names, output, preview: true } },
  });
  type Result = { inputs?: Record<string, unknown>; failures?: { property: string; reason: string }[] };
  const facts = fixture("host-facts/netns-host.txt");

  it("plans a host that has every tool", async () => {
    const result = (await check({}, news(facts) as never)) as Result;
    expect(result.failures).toBeUndefined();
    expect(result.inputs?.plan).toMatchObject({ "net.netfilter.nf_conntrack_udp_timeout": "30 → 40" });
  });

  it("refuses one whose flock lacks -w and -o, naming the host, the tool and the fix, before any connection", async () => {
    const result = (await check({}, news(facts.replace("@@section tools\n", "@@section tools\nlacks flock\n")) as never)) as Result;
    expect(result.failures).toEqual([{ property: "connection", reason: `root@192.0.2.1:22: ${floorBlockers({ missing: [], lacking: ["flock"] })[0]}` }]);
    expect(connectionsOpened.size).toBe(0);
  });
});

describe("a change that meets a host below the floor without a preview (pulumi destroy)", () => {
  // The host lock's script is its first command: it says what is wrong with flock, not that
  // someone else holds the lock. Neither case gets as far as opening the lock file.
  const busyboxLikeFlock = "#!/bin/sh\nfor a in \"$@\"; do case $a in -w|-o) echo \"flock: invalid option -- '${a#-}'\" >&2; exit 1;; esac; done\nexec " + which("flock") + " \"$@\"\n";
  it.each([
    ["no flock", () => pathWith("lock-no-flock", ["flock"]), floorBlockers({ missing: ["flock"], lacking: [] })[0]],
    ["busybox's flock", () => pathWith("lock-old-flock", [], { flock: busyboxLikeFlock }), floorBlockers({ missing: [], lacking: ["flock"] })[0]],
  ])("with %s, taking the host lock fails naming flock", (_what, path, message) => {
    const r = sh(lockScript(5), { PATH: path() });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toContain("another pulumi-conntrack change held this host");
  });
});

describe("the portable forms of GNU-only flags", () => {
  it("writeFile keeps an existing file's mode without chmod --reference, and gives a new file its mode", () => {
    const old = join(dir, "existing.conf");
    writeFileSync(old, "old\n");
    chmodSync(old, 0o640);
    const fresh = join(dir, "sub", "new.conf");
    const r = sh(renderScript([...writeFile(old, "new content\n"), ...writeFile(fresh, "fresh\n", "0600")]));
    expect(r.status, r.stderr).toBe(0);
    expect([readFileSync(old, "utf8"), statSync(old).mode & 0o7777]).toEqual(["new content\n", 0o640]);
    expect([readFileSync(fresh, "utf8"), statSync(fresh).mode & 0o7777]).toEqual(["fresh\n", 0o600]);
    expect(existsSync(`${old}.pulumi-conntrack.tmp`)).toBe(false);
  });

  it("detach starts a command in a session of its own without setsid -f, and returns at once", () => {
    const out = join(dir, "detached");
    const step = detach("start it", "sh", "-c", `sleep 0.3; read -r s < /proc/$$/stat; set -- $s; echo "$$ $6" > ${out}`);
    expect(step.shell).not.toMatch(/setsid\s+-f\b/);
    const started = Date.now();
    const r = sh(renderScript([step]));
    expect(r.status, r.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(300);
    const deadline = Date.now() + 5000;
    while (!existsSync(out) && Date.now() < deadline) spawnSync("sleep", ["0.05"]);
    const [pid, session] = readFileSync(out, "utf8").trim().split(" ");
    expect(session).toBe(pid);
  });

  it("waiting for a job polls five times a second, and where sleep takes whole seconds only, once a second within the same bound", () => {
    const noFraction = "#!/bin/sh\ncase $1 in *.*) echo \"sleep: invalid number '$1'\" >&2; exit 1;; esac\nexec " + which("sleep") + " \"$@\"\n";
    const target = { commandTimeout: 2 } as never;
    for (const [name, path] of [["fractions", process.env.PATH!], ["whole seconds", `${pathWith("whole-sleep", [], { sleep: noFraction })}`]] as const) {
      const j = join(dir, `job-${name.replace(" ", "-")}`);
      mkdirSync(j);
      writeFileSync(join(j, "out"), "said\n");
      writeFileSync(join(j, "err"), "");
      // The job ends after 1.2 s: the waiter sees it within a poll, prints what it said and its status.
      spawnSync("sh", ["-c", `(sleep 1.2; echo 3 > ${j}/exit) >/dev/null 2>&1 &`]);
      const started = Date.now();
      const r = sh(`j=${j}\n${waiter(target, "exit")}`, { PATH: path });
      expect([r.status, r.stdout], name).toEqual([3, "said\n"]);
      expect(Date.now() - started, name).toBeLessThan(name === "fractions" ? 2000 : 3000);
    }
    // A job that never ends: the waiter gives up after its polls (commandTimeout × 5 + 25: a target
    // whose commandTimeout makes that 5, one second of them), in both ways of sleeping.
    for (const [name, path] of [["fractions", process.env.PATH!], ["whole seconds", pathWith("whole-sleep-never", [], { sleep: noFraction })]] as const) {
      const never = join(dir, `job-never-${name.replace(" ", "-")}`);
      mkdirSync(never);
      const gaveUp = Date.now();
      const r = sh(`j=${never}\n${waiter({ commandTimeout: -4 } as never, "exit")}`, { PATH: path });
      expect(r.status, name).toBe(124);
      expect(Date.now() - gaveUp, name).toBeGreaterThan(900);
      expect(Date.now() - gaveUp, name).toBeLessThan(2000);
    }
  }, 30_000);

  it("detach fails, saying so, where there is no setsid", () => {
    const r = sh(renderScript([detach("start it", "true")]), { PATH: pathWith("detach-no-setsid", ["setsid"]) });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("setsid: not found");
  });
});
