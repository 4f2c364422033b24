/**
 * The ceiling of the benchmark: a bare Deno WebSocket relay. Sockets that
 * open on the same path are paired in arrival order, and every frame of one
 * is forwarded as it is to the other; a socket whose partner leaves waits
 * for the next one on its path. No protocol work, no heartbeats, and
 * Deno's idle pings off (`idleTimeout: 0`), as in the server under test.
 *
 * ```sh
 * deno run --allow-net bench/bare_relay.ts --host 127.0.0.1 --port 8001
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

interface _Side {
  socket: WebSocket;
  partner: _Side | undefined;
  /** Frames that came before a partner did (a churn race), bounded. */
  early: ArrayBuffer[] | undefined;
}

/**
 * Runs the relay until the process is killed.
 *
 * @param args `--host` and `--port`.
 * @returns Resolves when the server stops.
 */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8001" },
      "heartbeat-interval": { type: "string" },
    },
  });
  const waiting = new Map<string, _Side>();
  // With --heartbeat-interval: the floor of sigver's heartbeats, the same
  // frame sent to every socket once per period (a wheel of 100 ms slots),
  // and the replies read and dropped.
  const period = Number(values["heartbeat-interval"] ?? 0) * 1000;
  const slots = Math.max(1, Math.round(period / 100));
  const wheel: Set<WebSocket>[] = Array.from(
    { length: slots },
    () => new Set(),
  );
  let cursor = 0;
  const beat = new Uint8Array([0x08, 0x01]);
  if (period > 0) {
    setInterval(() => {
      for (const s of wheel[cursor]) s.send(beat);
      cursor = (cursor + 1) % slots;
    }, period / slots);
  }
  const server = Deno.serve({
    hostname: values.host,
    port: Number(values.port),
    onListen: (addr) => console.error(`bare relay listening on ${addr.port}`),
  }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      idleTimeout: 0,
    });
    socket.binaryType = "arraybuffer";
    // The path, without parsing the whole URL: "http://host:port/path?q".
    const url = request.url;
    const start = url.indexOf("/", url.indexOf("//") + 2);
    const key = start < 0 ? "/" : url.slice(start);
    const side: _Side = { socket, partner: undefined, early: undefined };
    const slot = wheel[(cursor + slots - 1) % slots];
    // Pairs a side with the one waiting on its path, or makes it wait.
    const meet = (me: _Side) => {
      const other = waiting.get(key);
      if (
        other !== undefined && other !== me &&
        other.socket.readyState === WebSocket.OPEN
      ) {
        waiting.delete(key);
        other.partner = me;
        me.partner = other;
        for (const [from, to] of [[me, other], [other, me]]) {
          for (const frame of from.early ?? []) to.socket.send(frame);
          from.early = undefined;
        }
      } else waiting.set(key, me);
    };
    socket.onopen = () => {
      if (period > 0) slot.add(socket);
      meet(side);
    };
    socket.onmessage = (event) => {
      if (period > 0) return;
      const p = side.partner;
      if (p !== undefined && p.socket.readyState === WebSocket.OPEN) {
        p.socket.send(event.data);
      } else if (p === undefined && (side.early ??= []).length < 16) {
        side.early.push(event.data);
      }
    };
    socket.onclose = () => {
      slot.delete(socket);
      if (waiting.get(key) === side) waiting.delete(key);
      const partner = side.partner;
      side.partner = undefined;
      if (partner !== undefined) {
        // The survivor waits for the next arrival on the path (churn).
        partner.partner = undefined;
        if (partner.socket.readyState === WebSocket.OPEN) meet(partner);
      }
    };
    socket.onerror = () => {};
    return response;
  });
  // Exit cleanly on SIGTERM, so that `--cpu-prof` writes its profile.
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  await server.finished;
}

if (import.meta.main) await main(Deno.args);
