/**
 * `deno task bench --only ywebrtc`: sigver's y-webrtc mount against
 * y-webrtc's own signaling server (bin/server.js of y-webrtc 10.3.0, run
 * with Node, installed with npm into the gitignored
 * `bench/results/.originals/` at bench time, never by the server), in the
 * same run, each pinned to CPU 1 while the load runs on CPU 0:
 *
 * - server CPU per delivered publish, in rooms of 2 and of 10 (every member
 *   publishes in turn, each publish waits for its own echo: the original and
 *   sigver both send it back to its sender);
 * - server CPU per new connection (open, subscribe, ping, pong, close);
 * - server RSS per idle subscribed client.
 *
 * Targets (issue 18): a delivered publish costs sigver at most 0.8x the
 * original's CPU; an idle client costs at most the original's RSS + 2 KB.
 *
 * ```sh
 * deno run -A bench/ywebrtc.ts [--quick]
 * ```
 *
 * @module
 */

import { cpuMicros, fmt } from "./stats.ts";
import { freePort, pinSelf, readStat, ROOT } from "./proc.ts";
import { run, spawn } from "../dev/process.ts";

/** The original server, as npm serves it. */
const ORIGINAL = "y-webrtc@10.3.0";
const ORIGINALS = `${ROOT}bench/results/.originals`;

/** One server under test. */
interface Server {
  readonly name: string;
  readonly pid: number;
  readonly url: string;
  stop(): Promise<void>;
}

/** What one server measured. */
export interface YWebrtcResult {
  server: string;
  /** µs of server CPU per delivered publish, by room size. */
  publish: Record<string, number>;
  /** µs of server CPU per connection opened and closed. */
  connection: number;
  /** Bytes of server RSS per idle subscribed client. */
  rssPerPeer: number;
}

/** Installs the original server once; returns the path of bin/server.js. */
async function _original(): Promise<string> {
  const bin = `${ORIGINALS}/node_modules/y-webrtc/bin/server.js`;
  try {
    Deno.statSync(bin);
    return bin;
  } catch {
    // Not installed yet.
  }
  Deno.mkdirSync(ORIGINALS, { recursive: true });
  const out = await run("npm", {
    args: [
      "install",
      "--no-audit",
      "--no-fund",
      "--prefix",
      ORIGINALS,
      ORIGINAL,
      "ws@8",
    ],
  });
  if (!out.success) {
    throw new Error(`Cannot install ${ORIGINAL}: ${out.stderr}`);
  }
  return bin;
}

async function _start(
  name: string,
  command: string,
  args: string[],
  port: number,
  path: string,
  env: Record<string, string> = {},
): Promise<Server> {
  const child = spawn("taskset", {
    name,
    args: ["-c", "1", command, ...args],
    cwd: ROOT,
    env,
    outputLimit: 8192,
  });
  await child.waitForPort(port, 20_000);
  return {
    name,
    pid: child.pid,
    url: `ws://127.0.0.1:${port}${path}`,
    stop: async () => {
      await child.stop();
    },
  };
}

/** Opens `n` sockets, `batch` at a time. */
async function _openMany(url: string, n: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = Array.from({ length: Math.min(100, n - i) }, () => {
      const socket = new WebSocket(url);
      return new Promise<WebSocket>((resolve, reject) => {
        socket.onopen = () => resolve(socket);
        socket.onerror = () => reject(new Error(`Cannot open ${url}`));
      });
    });
    sockets.push(...await Promise.all(batch));
  }
  return sockets;
}

/** Sends one frame and waits for the next frame on the socket. */
function _roundTrip(socket: WebSocket, frame: string): Promise<void> {
  return new Promise((resolve) => {
    socket.onmessage = () => resolve();
    socket.send(frame);
  });
}

async function _closeAll(sockets: WebSocket[]): Promise<void> {
  await Promise.all(sockets.map((s) =>
    new Promise<void>((resolve) => {
      if (s.readyState === WebSocket.CLOSED) return resolve();
      s.onclose = () => resolve();
      s.close();
    })
  ));
}

function _cpu(pid: number): () => number {
  const before = readStat(pid);
  return () => cpuMicros(before, readStat(pid));
}

/** A signal as y-webrtc sends one: an ICE candidate for one peer. */
function _publish(topic: string, from: number): string {
  return JSON.stringify({
    type: "publish",
    topic,
    data: {
      to: "5b0f3a52-86f2-4c1e-9a3e-3f1d4c8a9b7e",
      from: `peer-${from}-0c6e-4b0e-8f7e-2d4b6a1c9e3f`,
      type: "signal",
      token: 1765160000000.123,
      signal: {
        type: "candidate",
        candidate: {
          candidate:
            "candidate:1793560066 1 udp 2122194687 192.168.1.20 37004 typ host generation 0 ufrag Hz10 network-id 3",
          sdpMLineIndex: 0,
          sdpMid: "0",
        },
      },
    },
  });
}

/**
 * Server CPU per delivered publish: `rooms` rooms of `size`, every member
 * publishing `rounds` times in turn, each publish waiting for its echo.
 */
async function _publishCost(
  server: Server,
  size: number,
  rooms: number,
  rounds: number,
): Promise<number> {
  const sockets = await _openMany(server.url, size * rooms);
  const members = (r: number) => sockets.slice(r * size, (r + 1) * size);
  for (let r = 0; r < rooms; r++) {
    const subscribe = JSON.stringify({
      type: "subscribe",
      topics: [`room-${r}`],
    });
    for (const s of members(r)) s.send(subscribe);
  }
  // Subscribes are not answered: a ping's pong says they were handled.
  await Promise.all(sockets.map((s) => _roundTrip(s, '{"type":"ping"}')));
  const cpu = _cpu(server.pid);
  let delivered = 0;
  await Promise.all(Array.from({ length: rooms }, async (_, r) => {
    const room = members(r);
    const published = room.map((_, i) => _publish(`room-${r}`, i));
    for (let n = 0; n < rounds; n++) {
      for (const [i, s] of room.entries()) {
        // Every member gets it: wait for them all.
        const all = Promise.all(
          room.map((m) =>
            new Promise<void>((resolve) => m.onmessage = () => resolve())
          ),
        );
        s.send(published[i]);
        await all;
        delivered += size;
      }
    }
  }));
  const micros = cpu();
  await _closeAll(sockets);
  return micros / delivered;
}

/** Server CPU per connection: open, subscribe, ping, pong, close. */
async function _connectionCost(server: Server, n: number): Promise<number> {
  const cpu = _cpu(server.pid);
  for (let i = 0; i < n; i += 50) {
    const sockets = await _openMany(server.url, Math.min(50, n - i));
    await Promise.all(sockets.map((s, j) => {
      s.send(JSON.stringify({ type: "subscribe", topics: [`c-${i + j}`] }));
      return _roundTrip(s, '{"type":"ping"}');
    }));
    await _closeAll(sockets);
  }
  return cpu() / n;
}

/** Server RSS per idle client subscribed to a room of 2. */
async function _rssPerPeer(server: Server, n: number): Promise<number> {
  const page = 4096;
  const rss = () => readStat(server.pid).rssPages * page;
  await new Promise((r) => setTimeout(r, 500));
  const before = rss();
  const sockets = await _openMany(server.url, n);
  await Promise.all(sockets.map((s, i) => {
    s.send(JSON.stringify({ type: "subscribe", topics: [`idle-${i >> 1}`] }));
    return _roundTrip(s, '{"type":"ping"}');
  }));
  await new Promise((r) => setTimeout(r, 1000));
  const held = rss();
  await _closeAll(sockets);
  return (held - before) / n;
}

/**
 * Measures one server.
 *
 * @param server The server.
 * @param quick Fewer rounds and peers.
 * @returns What it measured.
 */
async function _measure(
  server: Server,
  quick: boolean,
): Promise<YWebrtcResult> {
  const publish: Record<string, number> = {};
  for (const size of [2, 10]) {
    // About the same number of deliveries in both rooms.
    const rounds = Math.round((quick ? 400 : 2000) / size);
    await _publishCost(server, size, 10, Math.max(2, Math.round(rounds / 10)));
    publish[size] = await _publishCost(server, size, 10, rounds);
  }
  await _connectionCost(server, 100);
  const connection = await _connectionCost(server, quick ? 500 : 2000);
  const rssPerPeer = await _rssPerPeer(server, quick ? 1000 : 4000);
  return { server: server.name, publish, connection, rssPerPeer };
}

/**
 * Runs the comparison and prints a markdown table (and one JSON line per
 * run to stdout).
 *
 * @param args `--quick`, `--runs <n>`.
 * @returns The exit code.
 */
export async function ywebrtcMain(args: string[]): Promise<number> {
  const quick = args.includes("--quick");
  const runsAt = args.indexOf("--runs");
  const runs = runsAt === -1 ? (quick ? 1 : 3) : Number(args[runsAt + 1]);
  const bin = await _original();
  await pinSelf(0);
  const results: YWebrtcResult[][] = [];
  for (let n = 0; n < runs; n++) {
    const pair: YWebrtcResult[] = [];
    for (const kind of ["sigver", "original"]) {
      const port = freePort();
      const server = kind === "sigver"
        ? await _start(
          "sigver",
          Deno.execPath(),
          [
            "run",
            "-A",
            `${ROOT}server.ts`,
            "--host",
            "127.0.0.1",
            "--port",
            String(port),
            "--log-level",
            "warn",
          ],
          port,
          "/y-webrtc",
        )
        : await _start("original", "node", [bin], port, "", {
          PORT: String(port),
        });
      try {
        pair.push(await _measure(server, quick));
      } finally {
        await server.stop();
      }
    }
    console.log(JSON.stringify(pair));
    results.push(pair);
  }
  const med = (f: (r: YWebrtcResult) => number, i: number) => {
    const v = results.map((p) => f(p[i])).sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)];
  };
  const rows: [string, (r: YWebrtcResult) => number, string][] = [
    ["CPU per delivered publish, room of 2 (µs)", (r) => r.publish[2], "x"],
    ["CPU per delivered publish, room of 10 (µs)", (r) => r.publish[10], "x"],
    ["CPU per connection (µs)", (r) => r.connection, "x"],
    ["RSS per idle subscribed client (bytes)", (r) => r.rssPerPeer, "-"],
  ];
  const lines = [
    `y-webrtc, median of ${runs} run(s): sigver vs ${ORIGINAL} bin/server.js (node ${
      (await run("node", { args: ["--version"] })).stdout.trim()
    })`,
    "",
    "| measure | sigver | original | sigver/original or difference |",
    "| --- | --- | --- | --- |",
  ];
  for (const [name, f, how] of rows) {
    const s = med(f, 0), o = med(f, 1);
    lines.push(
      `| ${name} | ${fmt(s)} | ${fmt(o)} | ${
        how === "x" ? `${fmt(s / o)}x` : `${fmt(s - o, 0)} B`
      } |`,
    );
  }
  console.error(lines.join("\n"));
  return 0;
}

if (import.meta.main) Deno.exit(await ywebrtcMain(Deno.args));
