import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { wholeScriptOnly } from "../../provider/transport/connection";

const dir = mkdtempSync(join(tmpdir(), "pct-whole-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// What sshd hands `sh -s` when the connection drops while the script is being sent: a prefix.
describe("a script cut short on its way to the host", () => {
  const out = join(dir, "ran");
  const script = [
    "set -e",
    `echo first >> ${out}`,
    `cat <<'EOF' >> ${out}`,
    "from a here-document",
    "EOF",
    `rm -f ${join(dir, "keep")}.d/x && echo second >> ${out}`,
  ].join("\n");
  const whole = wholeScriptOnly(script);

  for (const shell of ["sh", "bash"]) {
    it(`runs nothing under ${shell} unless it arrived whole`, () => {
      for (let cut = 0; cut <= whole.length; cut++) {
        rmSync(out, { force: true });
        spawnSync(shell, ["-s"], { input: whole.slice(0, cut), stdio: ["pipe", "ignore", "ignore"] });
        // Only a cut after the closing brace has the whole script; it runs it all.
        if (cut >= whole.length - 1) expect(readFileSync(out, "utf8"), `cut at ${cut}`).toBe("first\nfrom a here-document\nsecond\n");
        else expect(existsSync(out), `cut at ${cut} of ${whole.length} ran part of the script`).toBe(false);
      }
    });
  }

  it("keeps the script's own exit status", () => {
    expect(() => execFileSync("sh", ["-s"], { input: wholeScriptOnly("exit 75") })).toThrow(expect.objectContaining({ status: 75 }));
  });
});
