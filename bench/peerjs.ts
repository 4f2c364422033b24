/**
 * `deno task bench --only peerjs`: sigver's PeerJS mount against the
 * original PeerServer (`peer` 1.0.2's CLI, run with Node, installed with
 * npm into the gitignored `bench/results/.originals/peer/` at bench time,
 * never by the server), in the same run, each pinned to CPU 1 while the
 * load runs on CPU 0:
 *
 * - server CPU per relayed message: pairs of clients bounce a CANDIDATE (as
 *   peerjs 1.5.5 sends one) back and forth, each waiting for the other's;
 * - server CPU per new connection: `GET <path>/peerjs/id`, the socket,
 *   OPEN, one HEARTBEAT, the close;
 * - server RSS per idle connected client.
 *
 * Targets (issue 19): a relayed message costs sigver at most 0.8x the
 * original's CPU; an idle client costs at most the original's RSS + 2 KB.
 *
 * ```sh
 * deno run -A bench/peerjs.ts [--quick] [--runs <n>]
 * ```
 *
 * @module
 */

import { cpuMicros, fmt } from "./stats.ts";
import { freePort, pinSelf, readStat, ROOT } from "./proc.ts";
import { run, spawn } from "../dev/process.ts";

/** The original server, as npm serves it. */
const ORIGINAL = "peer@1.0.2";
const ORIGINALS = `${ROOT}bench/results/.originals/peer`;
/** Both servers serve PeerJS under this path. */
const PATH = "/peerjs";

/** One server under test. */
interface Server {
  readonly name: string;
  readonly pid: number;
  readonly base: string;
  stop(): Promise<void>;
}

/** What one server measured. */
export interface PeerjsResult {
  server: string;
  /** µs of server CPU per relayed message. */
  relay: number;
  /** µs of server CPU per connection (id, socket, OPEN, close). */
  connection: number;
  /** Bytes of server RSS per idle connected client. */
  rssPerPeer: number;
}

/** Installs the original server once; returns the path of its CLI. */
async function _original(): Promise<string> {
  const bin = `${ORIGINALS}/node_modules/peer/dist/bin/peerjs.js`;
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
): Promise<Server> {
  const child = spawn("taskset", {
    name,
    args: ["-c", "1", command, ...args],
    cwd: ROOT,
    outputLimit: 8192,
  });
  await child.waitForPort(port, 20_000);
  return {
    name,
    pid: child.pid,
    base: `127.0.0.1:${port}${PATH}`,
    stop: async () => {
      await child.stop();
    },
  };
}

let _ids = 0;

/** A client's socket, open once the server said OPEN. */
function _client(server: Server, id: string): Promise<WebSocket> {
  const socket = new WebSocket(
    `ws://${server.base}/peerjs?key=peerjs&id=${id}&token=t${id}&version=1.5.5`,
  );
  return new Promise((resolve, reject) => {
    socket.onmessage = (e) => {
      if (e.data === '{"type":"OPEN"}') resolve(socket);
      else reject(new Error(`Cannot open ${id}: ${e.data}`));
    };
    socket.onerror = () => reject(new Error(`Cannot open ${id}`));
  });
}

/** Opens `n` clients, 100 at a time. */
async function _openMany(server: Server, n: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = Array.from(
      { length: Math.min(100, n - i) },
      () => _client(server, `bench-${_ids++}`),
    );
    sockets.push(...await Promise.all(batch));
  }
  return sockets;
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

/** A CANDIDATE as peerjs 1.5.5's negotiator sends one. */
function _candidate(dst: string): string {
  return JSON.stringify({
    type: "CANDIDATE",
    payload: {
      candidate: {
        candidate:
          "candidate:1793560066 1 udp 2122194687 192.168.1.20 37004 typ host generation 0 ufrag Hz10 network-id 3",
        sdpMLineIndex: 0,
        sdpMid: "0",
        usernameFragment: "Hz10",
      },
      type: "data",
      connectionId: "dc_8c1mvd9qkbo",
    },
    dst,
  });
}

/**
 * Server CPU per relayed message: `pairs` pairs bounce a CANDIDATE
 * `rounds` times each way, each send waiting for the one before it.
 */
async function _relayCost(
  server: Server,
  pairs: number,
  rounds: number,
): Promise<number> {
  const sockets = await _openMany(server, 2 * pairs);
  const first = _ids - 2 * pairs;
  const cpu = _cpu(server.pid);
  await Promise.all(Array.from({ length: pairs }, (_, p) => {
    const a = sockets[2 * p], b = sockets[2 * p + 1];
    const toA = _candidate(`bench-${first + 2 * p}`);
    const toB = _candidate(`bench-${first + 2 * p + 1}`);
    return new Promise<void>((resolve) => {
      let left = 2 * rounds;
      b.onmessage = () => {
        if (--left === 0) resolve();
        else b.send(toA);
      };
      a.onmessage = () => {
        if (--left === 0) resolve();
        else a.send(toB);
      };
      a.send(toB);
    });
  }));
  const micros = cpu();
  await _closeAll(sockets);
  return micros / (2 * rounds * pairs);
}

/** Server CPU per connection: the id, the socket, OPEN, a beat, the close. */
async function _connectionCost(server: Server, n: number): Promise<number> {
  const cpu = _cpu(server.pid);
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, async () => {
        const id = await (await fetch(`http://${server.base}/peerjs/id`))
          .text();
        const socket = await _client(server, id);
        socket.send('{"type":"HEARTBEAT"}');
        return socket;
      }),
    );
    await _closeAll(batch);
  }
  return cpu() / n;
}

/** Server RSS per idle connected client. */
async function _rssPerPeer(server: Server, n: number): Promise<number> {
  const page = 4096;
  const rss = () => readStat(server.pid).rssPages * page;
  await new Promise((r) => setTimeout(r, 500));
  const before = rss();
  const sockets = await _openMany(server, n);
  await new Promise((r) => setTimeout(r, 1000));
  const held = rss();
  await _closeAll(sockets);
  return (held - before) / n;
}

async function _measure(server: Server, quick: boolean): Promise<PeerjsResult> {
  const pairs = 50;
  const rounds = quick ? 100 : 400;
  // A warm-up first: the JIT, and sockets' buffers.
  await _relayCost(server, pairs, Math.round(rounds / 5));
  const relay = await _relayCost(server, pairs, rounds);
  await _connectionCost(server, 100);
  const connection = await _connectionCost(server, quick ? 500 : 2000);
  const rssPerPeer = await _rssPerPeer(server, quick ? 1000 : 4000);
  return { server: server.name, relay, connection, rssPerPeer };
}

/**
 * Runs the comparison and prints a markdown table (and one JSON line per
 * run to stdout).
 *
 * @param args `--quick`, `--runs <n>`.
 * @returns The exit code.
 */
export async function peerjsMain(args: string[]): Promise<number> {
  const quick = args.includes("--quick");
  const runsAt = args.indexOf("--runs");
  const runs = runsAt === -1 ? (quick ? 1 : 3) : Number(args[runsAt + 1]);
  const bin = await _original();
  await pinSelf(0);
  const results: PeerjsResult[][] = [];
  for (let n = 0; n < runs; n++) {
    const pair: PeerjsResult[] = [];
    for (const kind of ["sigver", "original"]) {
      const port = freePort();
      const server = kind === "sigver"
        ? await _start("sigver", Deno.execPath(), [
          "run",
          "-A",
          `${ROOT}server.ts`,
          "--host",
          "127.0.0.1",
          "--port",
          String(port),
          "--log-level",
          "warn",
        ], port)
        : await _start("original", "node", [
          bin,
          "--host",
          "127.0.0.1",
          "--port",
          String(port),
          "--path",
          PATH,
        ], port);
      try {
        pair.push(await _measure(server, quick));
      } finally {
        await server.stop();
      }
    }
    console.log(JSON.stringify(pair));
    results.push(pair);
  }
  const med = (f: (r: PeerjsResult) => number, i: number) => {
    const v = results.map((p) => f(p[i])).sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)];
  };
  const rows: [string, (r: PeerjsResult) => number, string][] = [
    ["CPU per relayed message (µs)", (r) => r.relay, "x"],
    [
      "CPU per connection: id, socket, OPEN, close (µs)",
      (r) => r.connection,
      "x",
    ],
    ["RSS per idle connected client (bytes)", (r) => r.rssPerPeer, "-"],
  ];
  const lines = [
    `PeerJS, median of ${runs} run(s): sigver vs ${ORIGINAL} (node ${
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

if (import.meta.main) Deno.exit(await peerjsMain(Deno.args));
