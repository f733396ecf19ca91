import type { ConntrackLimitsSettings, TimeoutName } from "../../sdk/conntrackLimits.schema";
import type { HostFacts } from "../facts/host";
import { sysctlDirs } from "../facts/files";
import { run, tryRun, type Step } from "../engine/commands";
import { keptUnloadedBy } from "../engine/moduleItems";
import { currentLedger } from "../engine/plan";
import type { Wanted } from "../engine/transaction";
import { iptablesConfigPath, unloadsModules } from "../persistence/iptablesConfig";
import { sysctlDBackend } from "../persistence/sysctlD";
import { hashsizeKey, sysctlKey, type ModuleName } from "./keys";
import { estimateMemory, type MemoryEstimate } from "./memory";

/** The facts ConntrackLimits reads (besides the engine's own: system and files). */
export const conntrackLimitsFacts = ["conntrackModule", "conntrackSysctl", "conntrackTable", "sysctlFiles", "modprobeOptions", "otherOwners"] as const;

/**
 * The hash table size the kernel will really use: it rounds a request up to whole pages of
 * bucket heads (8 bytes each), i.e. a multiple of PAGE_SIZE/8 buckets (512 with 4 KiB pages,
 * 8192 with 64 KiB pages). Comparing the request itself would never match what the host reads back.
 */
export function effectiveHashsize(requested: number, pageSize: number): number {
  const step = Math.max(1, Math.floor(pageSize / 8));
  return Math.ceil(requested / step) * step;
}

/** Normalises the settings into the host kernel's names: sysctl key or "<module>.hashsize" → value. */
export function desiredValues(settings: ConntrackLimitsSettings, module: ModuleName, pageSize: number): Record<string, string> {
  const out: Record<string, string> = {};
  if (settings.max !== undefined) out[sysctlKey("max", module)] = String(settings.max);
  for (const [name, seconds] of Object.entries(settings.timeouts ?? {})) {
    if (seconds !== undefined) out[sysctlKey(name as TimeoutName, module)] = String(seconds);
  }
  if (settings.hashsize !== undefined) out[hashsizeKey(module)] = String(effectiveHashsize(settings.hashsize, pageSize));
  return out;
}

/** Ledger item key of a value name ("nf_conntrack.hashsize" is a module parameter, the rest sysctls). */
export function itemKey(name: string): string {
  return /^(nf|ip)_conntrack\.hashsize$/.test(name) ? `param:${name}` : `sysctl:${name}`;
}

/** The value name of a ledger item key, as outputs show it. */
export function valueName(item: string): string {
  return item.slice(item.indexOf(":") + 1);
}

export const loadToken = (module: ModuleName) => (module === "ip_conntrack" ? ".ip_conntrack" : ".nf_conntrack");

/**
 * The pure heart of ConntrackLimits: what it claims on this host, what stops it, what to warn
 * about. The engine turns the claims into live changes, files and ledger entries.
 */
export function wantConntrackLimits(settings: ConntrackLimitsSettings, facts: HostFacts, self?: { label: string }): Wanted & { memory: MemoryEstimate; desired: Record<string, string> } {
  const module = facts.conntrackModule.name;
  const desired = desiredValues(settings, module, facts.system.pageSize);
  const blockers: string[] = [];
  const warnings: string[] = [];
  const persist = settings.persist;

  if (facts.conntrackModule.state === "absent") {
    blockers.push("the kernel has no nf_conntrack module (modinfo nf_conntrack finds nothing): install the kernel's modules package");
  }
  const keepers = keptUnloadedBy(currentLedger(facts), module);
  if (keepers.length > 0) blockers.push(`${keepers.join(", ")} keep${keepers.length > 1 ? "" : "s"} ${module} unloaded on this host, which ${self?.label ?? "this ConntrackLimits"} needs (its values live in it): destroy that KernelModuleSet (or set its state to "present") first`);
  const globals = [settings.max !== undefined && "max", settings.hashsize !== undefined && "hashsize"].filter(Boolean).join(" and ");
  if (globals && !facts.system.initialNetns) {
    blockers.push(`${globals} are global to the kernel but this host is a network namespace of another machine: manage them on that machine, or drop them here (timeouts are per namespace and fine)`);
  } else if (globals && (facts.system.container || facts.conntrackSysctl.readOnly.includes(sysctlKey("max", module)))) {
    blockers.push(`${globals} can't be written here: ${facts.system.container ? `this host is a ${facts.system.container} container` : `${sysctlKey("max", module)} is read-only`}; set them on the machine that runs it (timeouts are per network namespace and fine)`);
  }

  const claims: Wanted["claims"] = {};
  for (const [name, value] of Object.entries(desired)) claims[itemKey(name)] = { value, persist };
  const iptablesConfig = facts.files[iptablesConfigPath];
  const hasSysctls = Object.keys(desired).some((k) => !k.endsWith(".hashsize"));
  if (persist && hasSysctls && iptablesConfig !== undefined && unloadsModules(iptablesConfig)) {
    claims[`token:${iptablesConfigPath}:${loadToken(module)}`] = { value: "present", persist: false };
  }

  // Load the module when a value must be set now: a new claim needs its original read, and
  // persist: false has nothing else to apply it. Claims already recorded wait for the module to
  // load (the udev rule and modprobe.d apply them then), so a reboot leaves nothing to do.
  const ledger = currentLedger(facts);
  const prepare: Step[] = [];
  if (facts.conntrackModule.state === "available" && blockers.length === 0) {
    const unknown = Object.keys(claims).some((k) => !k.startsWith("token:") && !ledger.items[k]);
    if (unknown || !persist) prepare.push(run(`load ${module}`, "modprobe", module), tryRun("wait for udev", "udevadm", "settle", "--timeout=30"));
  }

  if (persist) {
    warnings.push(...precedenceWarnings(facts, desired));
    if (!facts.system.udevadm && hasSysctls && facts.system.initialNetns) {
      warnings.push("this host has no udev: sysctl.d re-applies the values at boot, but not after nf_conntrack is unloaded and loaded again");
    }
  } else {
    warnings.push("persist is false: the values fall back to the kernel's defaults at the next iptables restart, module reload or reboot");
  }
  if (settings.hashsize !== undefined) {
    const effective = Number(desired[hashsizeKey(module)]);
    if (effective !== settings.hashsize) warnings.push(`hashsize ${settings.hashsize} becomes ${effective}: the kernel rounds it up to whole ${facts.system.pageSize}-byte pages of buckets`);
    if (facts.conntrackModule.state === "builtin") {
      warnings.push(`${module} is built into this kernel, so modprobe.d can't set its hashsize at boot: add ${module}.hashsize=${effective} to the kernel command line`);
    }
    for (const m of facts.modprobeOptions) {
      if (m.module === module && /\bhashsize=/.test(m.options) && !m.file.includes("pulumi-conntrack")) {
        warnings.push(`${m.file} line ${m.line} also sets ${module} hashsize (${m.options}); which one wins depends on file order: remove it`);
      }
    }
  }
  const count = Number(facts.conntrackSysctl.values[sysctlKey("max", module).replace(/_max$/, "_count")]);
  if (settings.max !== undefined && Number.isFinite(count) && count > settings.max) {
    warnings.push(`max ${settings.max} is below the ${count} connections tracked now: new connections will be dropped until enough entries expire`);
  }
  warnings.push(...ownerWarnings(facts, desired));

  const memory = estimateMemory({
    max: Number(desired[sysctlKey("max", module)] ?? facts.conntrackSysctl.values[sysctlKey("max", module)] ?? 0),
    buckets: Number(desired[hashsizeKey(module)] ?? facts.conntrackTable.hashsize ?? 0),
    entryBytes: facts.conntrackTable.entryBytes,
    memTotalBytes: facts.system.memTotalBytes,
  });
  warnings.push(...memory.warnings);
  return { claims, warnings, blockers, prepare, memory, desired };
}

/** The order systemd-sysctl applies files at boot: by file name, /etc/sysctl.conf last (procps). */
function bootOrder(file: string): string {
  if (file === "/etc/sysctl.conf") return "\uffff";
  return file.slice(file.lastIndexOf("/") + 1);
}

function precedenceWarnings(facts: HostFacts, desired: Record<string, string>): string[] {
  const ours = bootOrder(sysctlDBackend.path);
  const warnings: string[] = [];
  for (const s of facts.sysctlFiles) {
    if (s.file.includes("pulumi-conntrack") || !(s.key in desired) || s.value === desired[s.key]) continue;
    if (!sysctlDirs.some((d) => s.file.startsWith(`${d}/`)) && s.file !== "/etc/sysctl.conf") continue;
    if (bootOrder(s.file) > ours) {
      warnings.push(`${s.file} line ${s.line} sets ${s.key} = ${s.value} and is applied after ours at boot, so the host would come up with ${s.value}: remove or change that line`);
    }
  }
  return warnings;
}

function ownerWarnings(facts: HostFacts, desired: Record<string, string>): string[] {
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
