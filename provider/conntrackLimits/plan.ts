import type { ConntrackLimitsSettings, TimeoutName } from "../../sdk/conntrackLimits.schema";
import { sysctlDirs, type ConntrackFacts } from "../facts/conntrack";
import { iptablesConfigPath, readIptablesConfig, withSysctlLoadToken } from "../persistence/iptablesConfig";
import { idOfOwnedPath, ownedPaths, renderFiles } from "./files";
import { hashsizeKey, sysctlKey, type ModuleName } from "./keys";
import { estimateMemory, type MemoryEstimate } from "./memory";

/** What one resource wants on a host, normalised to the kernel's own key names. */
export interface DesiredState {
  owner: string;
  id: string;
  settings: ConntrackLimitsSettings;
  /** Values found before the first change (key → value), written into our files' headers. */
  previous: Record<string, string>;
  /** Original content of files we edit but don't own (path → content). */
  previousFiles: Record<string, string>;
}

export interface KeyChange {
  key: string;
  from?: string;
  to: string;
}

export interface ConntrackPlan {
  module: ModuleName;
  loadModule: boolean;
  /** Desired value per key (sysctl keys and "<module>.hashsize"). */
  desired: Record<string, string>;
  changes: KeyChange[];
  writeFiles: Record<string, string>;
  removeFiles: string[];
  warnings: string[];
  /** Reasons the plan can't be applied on this host at all. */
  blockers: string[];
  memory: MemoryEstimate;
}

const notLoaded = "(module not loaded)";

/** Normalises the settings into key → value in the host kernel's names. */
export function desiredValues(settings: ConntrackLimitsSettings, module: ModuleName): Record<string, string> {
  const out: Record<string, string> = {};
  if (settings.max !== undefined) out[sysctlKey("max", module)] = String(settings.max);
  for (const [name, seconds] of Object.entries(settings.timeouts ?? {})) {
    if (seconds !== undefined) out[sysctlKey(name as TimeoutName, module)] = String(seconds);
  }
  if (settings.hashsize !== undefined) out[hashsizeKey(module)] = String(settings.hashsize);
  return out;
}

/** The live value of a key in the facts ("<module>.hashsize" included). */
export function liveValue(facts: ConntrackFacts, key: string): string | undefined {
  if (key === hashsizeKey(facts.module.name)) return facts.hashsize === undefined ? undefined : String(facts.hashsize);
  return facts.sysctl[key];
}

/** The order systemd-sysctl applies files at boot: by file name, /etc/sysctl.conf last (procps). */
function bootOrder(file: string): string {
  if (file === "/etc/sysctl.conf") return "\uffff";
  return file.slice(file.lastIndexOf("/") + 1);
}

function precedenceWarnings(facts: ConntrackFacts, ourSysctlFile: string, desired: Record<string, string>): string[] {
  const ours = bootOrder(ourSysctlFile);
  const warnings: string[] = [];
  for (const s of facts.sysctlFiles) {
    if (idOfOwnedPath(s.file) || !(s.key in desired) || s.value === desired[s.key]) continue;
    if (!sysctlDirs.some((d) => s.file.startsWith(`${d}/`)) && s.file !== "/etc/sysctl.conf") continue;
    if (bootOrder(s.file) > ours) {
      warnings.push(`${s.file} line ${s.line} sets ${s.key} = ${s.value} and is applied after ours at boot, so the host would come up with ${s.value}: remove or change that line`);
    }
  }
  return warnings;
}

function ownerWarnings(facts: ConntrackFacts, desired: Record<string, string>): string[] {
  const keys = Object.keys(desired);
  const warnings: string[] = [];
  for (const owner of facts.otherOwners) {
    if (owner === "kube-proxy" && keys.some((k) => /conntrack_(max|tcp_timeout_established|tcp_timeout_close_wait)$/.test(k))) {
      warnings.push("kube-proxy runs here and sets nf_conntrack_max and the tcp established/close-wait timeouts when it starts: set the same values in kube-proxy's conntrack configuration, or it will reset them");
    }
    if (owner.startsWith("tuned ")) {
      warnings.push(`tuned runs profile "${owner.slice(6)}", whose [sysctl] section may reset these keys when tuned starts: check /etc/tuned/${owner.slice(6)}/tuned.conf and the profiles it includes`);
    }
  }
  return warnings;
}

/**
 * The pure heart of ConntrackLimits: what must change on this host so that it holds the desired
 * values now and after restarts, reloads and reboots. No I/O: preview, apply and tests share it.
 */
export function planConntrackLimits(want: DesiredState, facts: ConntrackFacts): ConntrackPlan {
  const module = facts.module.name;
  const desired = desiredValues(want.settings, module);
  const blockers: string[] = [];
  const warnings: string[] = [];

  if (facts.module.state === "absent") {
    blockers.push("the kernel has no nf_conntrack module (modinfo nf_conntrack finds nothing): install the kernel's modules package");
  }
  const globals = [want.settings.max !== undefined && "max", want.settings.hashsize !== undefined && "hashsize"].filter(Boolean);
  if (!facts.initialNetns && globals.length > 0) {
    blockers.push(`${globals.join(" and ")} are global to the kernel but this host is a network namespace of another machine: manage them on that machine, or drop them here (timeouts are per namespace and fine)`);
  }

  const loadModule = facts.module.state === "available";
  const changes: KeyChange[] = [];
  for (const [key, to] of Object.entries(desired)) {
    const from = loadModule ? notLoaded : liveValue(facts, key);
    if (from !== to) changes.push({ key, from, to });
  }

  const wantedFiles: Record<string, string> = {};
  if (want.settings.persist) {
    const sysctlOnly = Object.fromEntries(Object.entries(desired).filter(([k]) => k !== hashsizeKey(module)));
    Object.assign(wantedFiles, renderFiles({ owner: want.owner, id: want.id, module, sysctl: sysctlOnly, hashsize: want.settings.hashsize, previous: want.previous }));
    if (facts.iptablesConfig !== undefined && Object.keys(sysctlOnly).length > 0) {
      const token = module === "ip_conntrack" ? ".ip_conntrack" : ".nf_conntrack";
      const edited = withSysctlLoadToken(facts.iptablesConfig, token);
      if (edited !== undefined && readIptablesConfig(facts.iptablesConfig).unloadsModules) wantedFiles[iptablesConfigPath] = edited;
    }
    warnings.push(...precedenceWarnings(facts, ownedPaths(want.id).sysctl, desired));
    if (!facts.udevadm && Object.keys(sysctlOnly).length > 0 && facts.initialNetns) {
      warnings.push("this host has no udev: sysctl.d re-applies the values at boot, but not after nf_conntrack is unloaded and loaded again");
    }
  } else {
    warnings.push("persist is false: the values fall back to the kernel's defaults at the next iptables restart, module reload or reboot");
  }
  const writeFiles: Record<string, string> = {};
  for (const [path, content] of Object.entries(wantedFiles)) {
    const current = path === iptablesConfigPath ? facts.iptablesConfig : facts.owned[path];
    if (current !== content) writeFiles[path] = content;
  }
  const removeFiles = Object.keys(facts.owned).filter((p) => idOfOwnedPath(p) === want.id && !(p in wantedFiles));
  if (!want.settings.persist && facts.iptablesConfig !== undefined && want.previousFiles[iptablesConfigPath] !== undefined) {
    writeFiles[iptablesConfigPath] = want.previousFiles[iptablesConfigPath];
  }

  for (const m of facts.modprobeOptions) {
    if (want.settings.hashsize !== undefined && m.module === module && /\bhashsize=/.test(m.options) && !idOfOwnedPath(m.file)) {
      warnings.push(`${m.file} line ${m.line} also sets ${module} hashsize (${m.options}); which one wins depends on file order: remove it`);
    }
  }
  warnings.push(...ownerWarnings(facts, desired));

  const memory = estimateMemory({
    max: Number(desired[sysctlKey("max", module)] ?? facts.sysctl[sysctlKey("max", module)] ?? 0),
    buckets: Number(desired[hashsizeKey(module)] ?? facts.hashsize ?? 0),
    entryBytes: facts.entryBytes,
    memTotalBytes: facts.memTotalBytes,
  });
  warnings.push(...memory.warnings);

  return { module, loadModule, desired, changes, writeFiles, removeFiles, warnings, blockers, memory };
}

/**
 * What destroy must do: put back the values found before the first change, except keys another
 * pulumi-conntrack resource now manages (a replacement), and remove exactly our files.
 */
export function planRestore(want: Pick<DesiredState, "id" | "previous" | "previousFiles">, facts: ConntrackFacts): ConntrackPlan {
  const module = facts.module.name;
  const managedByOthers = new Set<string>();
  for (const s of facts.sysctlFiles) {
    const id = idOfOwnedPath(s.file);
    if (id && id !== want.id) managedByOthers.add(s.key);
  }
  for (const m of facts.modprobeOptions) {
    const id = idOfOwnedPath(m.file);
    if (id && id !== want.id && /\bhashsize=/.test(m.options)) managedByOthers.add(hashsizeKey(m.module as ModuleName));
  }
  const desired: Record<string, string> = {};
  const changes: KeyChange[] = [];
  const loaded = facts.module.state === "loaded" || facts.module.state === "builtin";
  for (const [key, value] of Object.entries(want.previous)) {
    if (managedByOthers.has(key) || !loaded || value === notLoaded) continue;
    desired[key] = value;
    const from = liveValue(facts, key);
    if (from !== value) changes.push({ key, from, to: value });
  }
  // Files that existed before we first wrote them go back byte for byte; the rest of ours go.
  const writeFiles: Record<string, string> = {};
  const current = (path: string) => (path === iptablesConfigPath ? facts.iptablesConfig : facts.owned[path]);
  for (const [path, original] of Object.entries(want.previousFiles)) {
    if (current(path) !== undefined && current(path) !== original) writeFiles[path] = original;
  }
  const removeFiles = Object.keys(facts.owned).filter((p) => idOfOwnedPath(p) === want.id && want.previousFiles[p] === undefined);
  const memory = estimateMemory({ max: 0, buckets: 0 });
  return { module, loadModule: false, desired, changes, writeFiles, removeFiles, warnings: [], blockers: [], memory };
}
