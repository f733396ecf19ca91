// A TCP relay on loopback in front of a lab host's sshd, able to cut connections at a chosen
// moment: a network blip the client can't tell from the real thing. Node built-ins only.
import { createConnection, createServer, type Server, type Socket } from "node:net";

export interface Relay {
  port: number;
  /** Connections the relay has accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/**
 * Relays 127.0.0.1:<port> to `to`. The first `cut` connections are closed (both sides) right after
 * the server's first bytes reach the client: it has seen sshd's greeting, the handshake is under way.
 */
export async function startRelay(to: { host: string; port: number }, cut: number): Promise<Relay> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    accepted++;
    const cutThis = accepted <= cut;
    const upstream = createConnection(to);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream);
    upstream.on("data", (chunk: Buffer) => {
      if (!cutThis) return void client.write(chunk);
      // end, not destroy: the greeting arrives before the FIN (a reset could discard it unread).
      client.end(chunk);
      upstream.destroy();
    });
    upstream.on("end", () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("relay: no port");
  return {
    port: address.port,
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
