import { connect, type Socket } from "node:net";

/**
 * A one-process server for a VM's port 80 (sshd under emulation can't greet 40 clients at once):
 * it greets each connection with "hello" and holds it until the client closes it. A client that
 * gave up resets its connection: printing to it must not kill the server (SIGPIPE).
 */
export const helloServer =
  '$SIG{PIPE} = "IGNORE"; use IO::Socket::INET; use IO::Select; my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 128, ReuseAddr => 1) or die "listen: $!"; my $sel = IO::Select->new($s); while (1) { for my $h ($sel->can_read) { if ($h == $s) { my $c = $s->accept or next; syswrite($c, "hello\\n"); $sel->add($c); } elsif (!sysread($h, my $buf, 512)) { $sel->remove($h); close $h; } } }\n';

/** A shell command that writes helloServer to /root/hello.pl (from a file: systemd-run would expand its $ signs). */
export const installHelloServer = `echo ${Buffer.from(helloServer).toString("base64")} | base64 -d > /root/hello.pl`;

/** A shell command that starts the server on port 80 as a transient unit and waits until it listens. */
export const startHelloServer = "systemd-run --quiet --unit pct-hello80 perl /root/hello.pl 80 && for i in $(seq 20); do ss -Hltn 'sport = :80' | grep -q . && exit 0; sleep 0.5; done; exit 1";

/**
 * Opens `n` connections to 127.0.0.1:`port` (the VM's forwarded port 80) from outside, `parallel`
 * at a time (qemu's user-mode port forward listens with a backlog of one: many SYNs at once mostly
 * wait out their retransmits), holds every one open, and counts those greeted within 4 s.
 */
export async function holdConnections(port: number, n: number, parallel = 1): Promise<{ ok: number; close(): void }> {
  const held: Socket[] = [];
  const one = () =>
    new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port });
      held.push(s);
      const timer = setTimeout(() => resolve(false), 4000);
      s.on("data", (d) => { if (d.toString().includes("hello")) { clearTimeout(timer); resolve(true); } });
      s.on("error", () => { clearTimeout(timer); resolve(false); });
    });
  let started = 0;
  let ok = 0;
  const worker = async () => { while (started < n) { started++; if (await one()) ok++; } };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { ok, close: () => held.forEach((s) => s.destroy()) };
}

/** Holds `n` connections to port 80 and counts, while they are held, the tracked ones the VM lists. */
export async function trackedWhileHeld(sh: (command: string) => Promise<string>, port: number, n: number): Promise<{ ok: number; tracked: number }> {
  const held = await holdConnections(port, n);
  try {
    return { ok: held.ok, tracked: Number(await sh("conntrack -L -p tcp --dport 80 2>/dev/null | grep -c ESTABLISHED || true")) };
  } finally {
    held.close();
  }
}
