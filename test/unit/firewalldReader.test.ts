import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { firewalldReader } from "../../provider/facts/firewalld";

// The firewalld reader asks firewalld once through its Python client and falls back to a dozen
// firewall-cmd runs; both paths must give the planners the same facts on every release.
const fixture = (name: string) =>
  readFileSync(path.join(import.meta.dirname, "../fixtures/firewalld", name), "utf8").split("\n").filter((l) => l.trim() !== "");

describe("firewalld reader: the Python client and the firewall-cmd fallback agree", () => {
  for (const release of ["bullseye", "bookworm", "trixie"]) {
    it(`on ${release}`, () => {
      const viaPython = firewalldReader.parse(fixture(`${release}-python.txt`));
      expect(viaPython).toEqual(firewalldReader.parse(fixture(`${release}-firewall-cmd.txt`)));
      expect(viaPython.runtimeDirect).toEqual(["ipv4 raw PREROUTING 0 -p tcp --dport 80 -m comment --comment 'ssh in' -j CT --notrack"]);
      expect(viaPython.runtimePorts).toEqual(["443/tcp", "9001/udp"]);
      expect(Object.keys(viaPython.zones).sort()).toEqual(["public", "trusted"]);
      expect(viaPython.zones.public.richRules).toHaveLength(1);
      expect(viaPython.servicePorts.http).toEqual(["80/tcp"]);
    });
  }

  it("runs the Python client first, and firewall-cmd only when it fails", () => {
    const script = firewalldReader.script;
    expect(script.indexOf("python3 -I -B -")).toBeGreaterThan(-1);
    expect(script.indexOf("python3 -I -B -")).toBeLessThan(script.indexOf("firewall-cmd --get-default-zone"));
    expect(script).toMatch(/if ! python3 [^\n]*\n[\s\S]*\n {2}then\n {2}z=\$\(firewall-cmd --get-default-zone/);
  });
});
