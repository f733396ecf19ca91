// Namespaced lab hosts for integration tests: each host is a network namespace with its own sshd,
// /etc (overlay), /run, /root and /tmp, made by lab/netns/hosts.sh (needs root). Node built-ins
// only. The same LabHost shape is used by the VM half of the lab (test/lab/vm.ts).
import { labHostFromJson, runLabScript, sshExec, type ExecResult, type HostJson, type LabHost } from "./host";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type { ExecResult, LabHost } from "./host";

/** Absolute path of lab/netns/hosts.sh. */
export const HOSTS_SCRIPT = join(import.meta.dirname, "..", "..", "lab", "netns", "hosts.sh");

/** Private key text → a file holding it, for system ssh's -i. */
const keyFiles = new Map<string, string>();

function failure(what: string, r: ExecResult): Error {
  return new Error(`${what} failed with exit code ${r.code}:\n${r.stderr.trim()}`);
}

/**
 * Starts `n` (1..100) namespaced hosts named `${prefix}-h1`..`${prefix}-h${n}` and resolves once each
 * one accepts SSH with its pinned host key. Hosts of the same prefix from an earlier run are
 * removed first. `sessionPath`: the PATH of their SSH sessions (what our scripts run there).
 * `labDir`: the lab directory they belong to (the tests' unless given). Needs root.
 */
export async function startHosts(n: number, prefix = "pcl", options: { sessionPath?: string; labDir?: string } = {}): Promise<LabHost[]> {
  const env = options.sessionPath === undefined ? undefined : { PULUMI_CONNTRACK_NETNS_SESSION_PATH: options.sessionPath };
  const r = await runLabScript(HOSTS_SCRIPT, ["up", String(n), prefix], { env, labDir: options.labDir });
  if (r.code !== 0) throw failure(`lab/netns/hosts.sh up ${n} ${prefix}`, r);
  const path = r.stdout.trim().split("\n").pop() ?? "";
  const entries = JSON.parse(await readFile(path, "utf8")) as HostJson[];
  return Promise.all(
    entries.map(async (e) => {
      const host = await labHostFromJson(e);
      keyFiles.set(host.privateKey, e.privateKeyPath);
      return host;
    }),
  );
}

/**
 * Stops and removes the hosts of `prefix` in `labDir` (the tests' unless given), also leftovers of a
 * crashed run. Safe to call when nothing is up.
 */
export async function stopHosts(prefix = "pcl", options: { labDir?: string } = {}): Promise<void> {
  const r = await runLabScript(HOSTS_SCRIPT, ["down", prefix], { labDir: options.labDir });
  if (r.code !== 0) throw failure(`lab/netns/hosts.sh down ${prefix}`, r);
}

async function keyFileFor(privateKey: string): Promise<string> {
  let path = keyFiles.get(privateKey);
  if (!path) {
    const dir = await mkdtemp(join(tmpdir(), "pcl-lab-key-"));
    path = join(dir, "id");
    await writeFile(path, privateKey.endsWith("\n") ? privateKey : `${privateKey}\n`, { mode: 0o600 });
    keyFiles.set(privateKey, path);
  }
  return path;
}

/**
 * Runs `command` (a shell command line, as with `ssh host 'command'`) on `host` through the
 * system's ssh client, verifying the host key against `host.knownHostsPath`. Resolves with the
 * remote exit code (255 when ssh itself fails); never rejects for a non-zero exit.
 */
export async function hostExec(
  host: LabHost,
  command: string,
  options: { input?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return sshExec(host, await keyFileFor(host.privateKey), command, options);
}
