// Host-side tools for dropping the SSH sessions of namespaced lab hosts at chosen points of an
// operation. Everything here acts only on the lab's own state directory and on processes found
// from it: a host's sshd listener (its pid file) and that listener's per-connection children. The
// listener itself is never touched.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LabHost } from "./host";

const commandLog = "pcsd-commands";
const holdFile = "pcsd-hold";

/** The host's own state directory, made by lab/netns/hosts.sh: PREFIX dir/h<i>. */
function hostDir(h: LabHost): string {
  const i = /-h(\d+)$/.exec(h.name)?.[1];
  if (!i) throw new Error(`not a namespaced lab host: ${h.name}`);
  return join(dirname(h.knownHostsPath), `h${i}`);
}

/**
 * Makes every SSH command on the host log itself and wait `seconds` before it starts (sshd runs
 * ~/.ssh/rc at the start of each session channel, after the client was told the command runs).
 * The log tells the test which command of an operation is pending; the wait is the window in
 * which a drop lands while that call is pending.
 */
export function holdCommands(h: LabHost, seconds: number): void {
  const d = hostDir(h);
  writeFileSync(join(d, "root", ".ssh", "rc"), `echo "$$" >> /tmp/${commandLog}\nsleep "$(cat /tmp/${holdFile} 2>/dev/null || echo 0.2)"\n`);
  writeFileSync(join(d, "tmp", holdFile), `${seconds}\n`);
}

/** SSH commands the host has started since holdCommands. */
export function commandCount(h: LabHost): number {
  try {
    return readFileSync(join(hostDir(h), "tmp", commandLog), "utf8").split("\n").length - 1;
  } catch {
    return 0;
  }
}

const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const commOf = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
};

const cmdlineOf = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
};

/** The per-connection sshd processes of the host: children of its listener. */
export function sessionProcesses(h: LabHost): number[] {
  return childrenOf(listenerOf(h)).filter((pid) => commOf(pid) === "sshd");
}

/** SSH commands running on the host now (children of its session processes). */
export function commandsRunning(h: LabHost): number {
  return sessionProcesses(h).reduce((n, pid) => n + childrenOf(pid).length, 0);
}

/**
 * A connection to the host is in its key exchange: sshd has sent its greeting and titles the
 * process "sshd: [accepted]" until the client asks to log in ("sshd: root [priv]"), which can only
 * come after the exchange, so a drop now always lands before the connection is ready.
 */
export function keyExchangeRunning(h: LabHost): boolean {
  return sessionProcesses(h).some((pid) => cmdlineOf(pid) === "sshd: [accepted]");
}

/**
 * Ends every SSH session of the host with SIGKILL, as the OOM killer or a crash would: the kernel
 * closes the TCP connections. Commands already started stay (as they would on a real host).
 * Returns the process titles it ended, which tell how far each connection had got.
 */
export function dropSessions(h: LabHost): string[] {
  const ended: string[] = [];
  for (const pid of sessionProcesses(h)) {
    const title = cmdlineOf(pid);
    try {
      process.kill(pid, "SIGKILL");
      ended.push(title.replace(/^\/usr\/sbin\/sshd .* -R$/, "sshd -R (re-exec)"));
    } catch {
      /* already gone */
    }
  }
  return ended;
}

/** When to drop a host's sessions, counting SSH commands from the start of the operation. */
export type DropPoint =
  /** while the n-th command is pending (in its hold window) */
  | { during: number }
  /** once the n-th command has finished and before the next starts: the connection is idle */
  | { idleAfter: number }
  /** while a connection to the host is being opened (in its key exchange) */
  | { connecting: true };

export interface Drop {
  host: LabHost;
  point: DropPoint;
}

export interface Landed {
  host: string;
  point: DropPoint;
  /** The command count when the sessions were dropped. */
  atCommand: number;
  /** Titles of the sshd processes ended ("sshd: [accepted]", "sshd: root@notty", ...). */
  ended: string[];
}

/** Watches the hosts and drops sessions at the given points until stopped; returns what landed. */
export function scheduleDrops(drops: Drop[]): { stop(): Promise<Landed[]> } {
  const base = new Map(drops.map((d) => [d.host.name, commandCount(d.host)]));
  const landed: Landed[] = [];
  const pending = new Set(drops);
  let running = true;
  const loop = (async () => {
    while (running && pending.size > 0) {
      for (const d of [...pending]) {
        const n = commandCount(d.host) - base.get(d.host.name)!;
        const p = d.point;
        const due = "during" in p ? n >= p.during : "idleAfter" in p ? n === p.idleAfter && commandsRunning(d.host) === 0 : keyExchangeRunning(d.host);
        if (!due) continue;
        pending.delete(d);
        landed.push({ host: d.host.name, point: d.point, atCommand: n, ended: dropSessions(d.host) });
      }
      // A handshake on loopback lasts ~30 ms: poll often enough to land inside one.
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return landed;
    },
  };
}

/** The host's sshd listener: only ever the host's own, named so and living in its network namespace. */
function listenerOf(h: LabHost): number {
  const listener = Number(readFileSync(join(hostDir(h), "sshd.pid"), "utf8").trim());
  if (commOf(listener) !== "sshd" || statSync(`/proc/${listener}/ns/net`).ino !== statSync(`/run/netns/${h.name}`).ino) {
    throw new Error(`${h.name}: pid ${listener} from sshd.pid is not this host's sshd`);
  }
  return listener;
}

/**
 * Takes the lock file `path` on the host (in its own /run, /tmp...) and holds it until release(),
 * as a command of the host that sshd didn't start. Resolves once the lock is held.
 */
export async function holdLockOnHost(h: LabHost, path: string): Promise<{ release(): Promise<void> }> {
  // flock runs cat, which ends when its stdin closes; the lock goes with them.
  const child: ChildProcess = spawn("nsenter", ["-t", String(listenerOf(h)), "-m", "-n", "flock", path, "sh", "-c", "echo held; exec cat"], { stdio: ["pipe", "pipe", "ignore"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`${h.name}: flock ${path} ended (${code}) before it held the lock`)));
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    release: () => {
      child.stdin!.end();
      return exited;
    },
  };
}

/** The same, waiting for its output. */
export function onHost(h: LabHost, argv: string[]): string {
  return execFileSync("nsenter", ["-t", String(listenerOf(h)), "-m", "-n", ...argv], { encoding: "utf8" }).trim();
}

/**
 * The client vanishes without a FIN, as when its machine loses power or its network: every packet
 * of the host's open SSH connections is dropped from now on, in both directions, by rules in the
 * host's namespace; new connections still get in. sshd and what it runs live on, unaware.
 * Returns the client ports it cut off.
 */
export function vanishClients(h: LabHost): number[] {
  const peers = onHost(h, ["ss", "-tnH", "state", "established", "( sport = :22 )"]).split("\n").filter(Boolean);
  // "0 0 10.213.0.2:22 10.213.0.1:41234": the peer is the last column.
  const ports = peers.map((line) => Number(/:(\d+)$/.exec(line.trim().split(/\s+/).pop()!)![1]));
  for (const port of ports) {
    onHost(h, ["iptables", "-I", "INPUT", "-p", "tcp", "--dport", "22", "--sport", String(port), "-j", "DROP"]);
    onHost(h, ["iptables", "-I", "OUTPUT", "-p", "tcp", "--sport", "22", "--dport", String(port), "-j", "DROP"]);
  }
  return ports;
}
