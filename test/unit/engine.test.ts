import { declareIntents } from "../../provider/engine/hostIntents";
import { describe, expect, it } from "vitest";
import type { HostFacts } from "../../provider/facts/host";
import { spawnSync } from "node:child_process";
import { checkOutcome, removeFile, renderScript, run, stepNotes, writeFile, writeValue } from "../../provider/engine/commands";
import { revertReport } from "../../provider/engine/lockoutGuard";
import { liveValue } from "../../provider/engine/items";
import { ledgerPath, parseLedger, type Claim } from "../../provider/engine/ledger";
import { planHost, type HostPlan } from "../../provider/engine/plan";
import { conntrackLimitsKind } from "../../provider/conntrackLimits/provider";
import { HostError } from "../../provider/transport/errors";
import { facts } from "./helpers";
import { moduleBlockBackend } from "../../provider/persistence/moduleFiles";

const backends = conntrackLimitsKind.backends;
const claim = (value: string, label: string, persist = true): Claim => ({ value, persist, label });
const icmp = "sysctl:net.netfilter.nf_conntrack_icmp_timeout";

/** What the host holds after a plan is applied: the in-memory twin of the apply script. */
function applied(f: HostFacts, plan: HostPlan): HostFacts {
  const files = { ...f.files, ...plan.writeFiles };
  for (const p of plan.removeFiles) delete files[p];
  const values = { ...f.conntrackSysctl.values };
  for (const c of plan.changes) if (c.item.startsWith("sysctl:") && c.to !== null) values[c.item.slice(7)] = c.to;
  return { ...f, files, conntrackSysctl: { ...f.conntrackSysctl, values } };
}

function step(f: HostFacts, owner: string, label: string, claims: Record<string, Claim>): HostFacts {
  const plan = planHost({ owner, labels: [label], claims, facts: f, backends });
  expect(plan.conflicts).toEqual([]);
  return applied(f, plan);
}

describe("ownership ledger", () => {
  it("restores the original only when the last of two owners of a key leaves, in either order", () => {
    for (const order of [["a", "b"], ["b", "a"]]) {
      let f = facts("debian12-vm-loaded");
      f = step(f, "a", "p/s/A", { [icmp]: claim("25", "p/s/A") });
      f = step(f, "b", "p/s/B", { [icmp]: claim("25", "p/s/B") });
      expect(liveValue(icmp, f)).toBe("25");
      expect(parseLedger(f.files[ledgerPath]).items[icmp].original).toBe("30");
      f = step(f, order[0], `p/s/${order[0].toUpperCase()}`, {});
      expect(liveValue(icmp, f)).toBe("25");
      expect(f.files["/etc/sysctl.d/90-pulumi-conntrack.conf"]).toContain("net.netfilter.nf_conntrack_icmp_timeout = 25");
      f = step(f, order[1], `p/s/${order[1].toUpperCase()}`, {});
      expect(liveValue(icmp, f)).toBe("30");
      expect(f.files).toEqual({});
    }
  });

  it("refuses a second owner that wants another value, naming the first", () => {
    const f = step(facts("debian12-vm-loaded"), "a", "p/s/A", { [icmp]: claim("25", "p/s/A") });
    const plan = planHost({ owner: "b", labels: ["p/s/B"], claims: { [icmp]: claim("40", "p/s/B") }, facts: f, backends });
    expect(plan.conflicts).toEqual([{ item: icmp, wanted: "40", other: claim("25", "p/s/A") }]);
    expect(plan.changes).toEqual([]);
  });

  it("keeps two stacks with the same resource name apart (labels carry project and stack)", () => {
    let f = step(facts("debian12-vm-loaded"), "p/dev/x#1", "p/dev/x", { [icmp]: claim("25", "p/dev/x") });
    f = step(f, "p/prod/x#2", "p/prod/x", { [icmp]: claim("25", "p/prod/x") });
    f = step(f, "p/dev/x#1", "p/dev/x", {});
    expect(liveValue(icmp, f)).toBe("25");
    expect(Object.keys(parseLedger(f.files[ledgerPath]).items[icmp].owners)).toEqual(["p/prod/x#2"]);
  });

  it("a replacement or a renamed resource takes over its twin's claims and keeps the original", () => {
    let f = step(facts("debian12-vm-loaded"), "old#1", "p/s/web", { [icmp]: claim("25", "p/s/web") });
    // create-before-delete: the new resource claims first under the same label...
    f = step(f, "new#2", "p/s/web", { [icmp]: claim("20", "p/s/web") });
    expect(parseLedger(f.files[ledgerPath]).items[icmp]).toEqual({ original: "30", owners: { "new#2": claim("20", "p/s/web") } });
    // ...then the old one is deleted and has nothing left to undo.
    f = step(f, "old#1", "p/s/web", {});
    expect(liveValue(icmp, f)).toBe("20");
    // A rename keeps the id and updates the label; the files name the new label.
    const renamed = planHost({ owner: "new#2", labels: ["p/s/web2", "p/s/web"], claims: { [icmp]: claim("20", "p/s/web2") }, facts: f, backends });
    expect(applied(f, renamed).files["/etc/sysctl.d/90-pulumi-conntrack.conf"]).toContain("for: p/s/web2.");
  });

  it("records null for an item that did not exist and never writes it back", () => {
    const f = facts("debian12-vm-loaded");
    const gone = "sysctl:net.netfilter.nf_conntrack_made_up";
    const plan = planHost({ owner: "a", claims: { [gone]: claim("1", "A") }, facts: { ...f, conntrackSysctl: { ...f.conntrackSysctl, values: { ...f.conntrackSysctl.values, "net.netfilter.nf_conntrack_made_up": "1" } } }, backends });
    expect(plan.ledger.items[gone].original).toBe("1");
    expect(() => planHost({ owner: "a", claims: { [gone]: claim("1", "A") }, facts: f, backends })).not.toThrow();
  });

  it("refuses a ledger of another format, naming the fix", () => {
    expect(() => parseLedger('{"format":9,"items":{}}')).toThrow("upgrade the package");
    expect(() => parseLedger("{")).toThrow("not valid JSON");
  });

  it("plans nothing for either owner once two owners of a key that agree have both applied, in either order", () => {
    // Issue 22: each owner's plan re-rendered the ledger with itself last among the key's owners,
    // so one of them always saw a "changed" ledger and the two never converged.
    for (const order of [["a", "b"], ["b", "a"]]) {
      let f = facts("debian12-vm-loaded");
      for (const id of order) f = step(f, id, `p/s/${id}`, { [icmp]: claim("25", `p/s/${id}`) });
      for (const id of ["a", "b"]) {
        const plan = planHost({ owner: id, labels: [`p/s/${id}`], claims: { [icmp]: claim("25", `p/s/${id}`) }, facts: f, backends });
        expect({ id, changes: plan.changes, writeFiles: plan.writeFiles, removeFiles: plan.removeFiles }).toEqual({ id, changes: [], writeFiles: {}, removeFiles: [] });
      }
    }
  });
});

describe("headers of persisted files", () => {
  it("name the owners of the items each file holds: a resource of another type joining the host leaves them as they are", () => {
    // ConntrackLimits persists a sysctl; then a KernelModuleSet on the same host persists a module.
    // Before, every file's header listed every persisting owner, so the second one's arrival
    // changed the first one's files behind its back and its next preview wanted to rewrite them.
    const allBackends = [...backends, moduleBlockBackend];
    let f = facts("debian12-vm-loaded");
    const stepWith = (owner: string, label: string, claims: Record<string, Claim>) => {
      const plan = planHost({ owner, labels: [label], claims, facts: f, backends: allBackends });
      f = applied(f, plan);
    };
    stepWith("a", "p/s/ConntrackLimits/a", { [icmp]: claim("25", "p/s/ConntrackLimits/a") });
    stepWith("k", "p/s/KernelModuleSet/k", { "module:xt_state": claim("absent", "p/s/KernelModuleSet/k") });
    const again = planHost({ owner: "a", labels: ["p/s/ConntrackLimits/a"], claims: { [icmp]: claim("25", "p/s/ConntrackLimits/a") }, facts: f, backends: allBackends });
    expect(again.writeFiles).toEqual({});
    expect(f.files["/etc/sysctl.d/90-pulumi-conntrack.conf"]).not.toContain("KernelModuleSet");
    expect(f.files[moduleBlockBackend.path]).toContain("p/s/KernelModuleSet/k");
  });
});

describe("command layer", () => {
  it("renders steps that stop at the first failure and quote every value", () => {
    const script = renderScript([run("load nf_conntrack", "modprobe", "nf_conntrack"), writeValue("set x", "/proc/sys/x", "1; rm -rf /"), ...writeFile("/etc/a b", "x")]);
    expect(script).toContain("modprobe nf_conntrack || {");
    expect(script).toContain("printf '%s\\n' '1; rm -rf /' > /proc/sys/x");
    expect(script).not.toMatch(/^exec /m);
    expect(script).not.toContain("2>/dev/null");
    // Durable: the new content reaches the disk before the rename, the rename before the next step.
    expect(script).toMatch(/sync '\/etc\/a b\.pulumi-conntrack\.tmp' \|\| sync;[^\n]*\n.*\nmv -f '\/etc\/a b\.pulumi-conntrack\.tmp' '\/etc\/a b'[^\n]*\n.*\n\{ sync \/etc \|\| sync; \}/);
    expect(renderScript([removeFile("/etc/a b")])).toContain("rm -f '/etc/a b' && { sync /etc || sync; }");
  });

  it("names the host, the failed step and the host's own message", () => {
    const stderr = "@@pulumi-conntrack-step write /etc/x\n@@pulumi-conntrack-step set net.x to 5\nsh: 1: cannot create /proc/sys/net/x: Permission denied\n@@pulumi-conntrack-failed 2 set net.x to 5\n";
    const err = (() => { try { checkOutcome("root@h:22", "apply ConntrackLimits", { stdout: "", stderr, code: 1 }); } catch (e) { return e as HostError; } })();
    expect(err).toBeInstanceOf(HostError);
    expect(err!.message).toBe('root@h:22: apply ConntrackLimits: step "set net.x to 5" failed (exit 2): sh: 1: cannot create /proc/sys/net/x: Permission denied');
  });
});

describe("optional steps and the revert's record", () => {
  it("a failing optional step doesn't stop the script; its note keeps the host's words, and the revert report counts what failed", () => {
    const script = renderScript([
      { ...run("put back rule a", "sh", "-c", "echo 'iptables: Bad rule (does a matching rule exist in that chain?).' >&2; exit 1"), optional: true },
      { ...run("put back file b", "true"), optional: true },
      run("write the ledger", "true"),
    ]);
    const r = spawnSync("sh", ["-c", script], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(stepNotes(r.stderr)).toEqual(['step "put back rule a" failed (exit 1), and the change went on without it: iptables: Bad rule (does a matching rule exist in that chain?).']);
    expect(revertReport(r.stderr)).toBe('1 of 3 steps of the revert failed, so part of the change may still be in place: "put back rule a" (exit 1: iptables: Bad rule (does a matching rule exist in that chain?).)');
    expect(revertReport(spawnSync("sh", ["-c", renderScript([run("a", "true"), run("b", "true")])], { encoding: "utf8" }).stderr)).toBe("all 2 steps of the revert succeeded");
    expect(revertReport("")).toBe("the host has no record of its revert");
  });
});

describe("declareIntents", () => {
  it("names both resources and both values when two of one program want different values for an item", () => {
    const icmpShown = "net.netfilter.nf_conntrack_icmp_timeout";
    const limits = (values: Record<string, string>) => ({ needs: ["module nf_conntrack"], removes: [], values });
    expect(declareIntents("hv:22", "p/s/ConntrackLimits/a", limits({ [icmpShown]: "25", "net.netfilter.nf_conntrack_udp_timeout": "20" }))).toEqual([]);
    expect(declareIntents("hv:22", "p/s/ConntrackLimits/b", limits({ [icmpShown]: "25" }))).toEqual([]);
    expect(declareIntents("hv:22", "p/s/ConntrackLimits/c", limits({ [icmpShown]: "40" }))).toEqual([
      `p/s/ConntrackLimits/c wants ${icmpShown} = 40 and p/s/ConntrackLimits/a wants 25`,
      `p/s/ConntrackLimits/c wants ${icmpShown} = 40 and p/s/ConntrackLimits/b wants 25`,
    ]);
    // A resource checked again (preview, then up, in one process) replaces its own declaration.
    expect(declareIntents("hv:22", "p/s/ConntrackLimits/c", limits({ [icmpShown]: "25" }))).toEqual([]);
  });

  it("names both resources when one removes what another on the same host needs, in either order", () => {
    expect(declareIntents("h1:22", "p/s/ConntrackLimits/web", { needs: ["module nf_conntrack"], removes: [] })).toEqual([]);
    expect(declareIntents("h1:22", "p/s/KernelModuleSet/bare", { needs: [], removes: ["module nf_conntrack", "module xt_CT"] })).toEqual([
      "p/s/KernelModuleSet/bare removes module nf_conntrack, which p/s/ConntrackLimits/web needs",
    ]);
    expect(declareIntents("h1:22", "p/s/NotrackRule/http", { needs: ["module nf_conntrack", "service netfilter-persistent"], removes: [] })).toEqual([
      "p/s/KernelModuleSet/bare removes module nf_conntrack, which p/s/NotrackRule/http needs",
    ]);
  });

  it("keeps hosts apart, and a resource never clashes with itself", () => {
    expect(declareIntents("h2:22", "p/s/ConntrackLimits/web", { needs: ["module nf_conntrack"], removes: [] })).toEqual([]);
    expect(declareIntents("h3:22", "p/s/KernelModuleSet/bare", { needs: [], removes: ["module nf_conntrack"] })).toEqual([]);
    expect(declareIntents("h3:22", "p/s/KernelModuleSet/bare", { needs: ["module nf_conntrack"], removes: ["module nf_conntrack"] })).toEqual([]);
  });
});
