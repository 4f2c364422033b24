/**
 * The scenarios of the benchmark: relay (ping-pong between member/joiner
 * pairs), capacity (idle peers answering heartbeats), churn (peers that join
 * a group through the bind/relay handshake and leave), soak (many cycles of
 * connect, join, relay and leave, for leaks). Each one speaks the
 * sigver protocol with `lib/wire.ts` and counts every protocol error and
 * unexpected close in a {@linkcode Tally}.
 *
 * @module
 */

import {
  encodeContent,
  encodeMessage,
  FrameReader,
  TYPE_CONNECTED,
  TYPE_CONTENT,
  TYPE_HEARTBEAT,
} from "../lib/netflux/wire.ts";
import { readStat, type ServerProcess } from "./proc.ts";
import {
  type BeatCount,
  type Bottleneck,
  bottleneck,
  cpuMicros,
  cpuPercent,
  Histogram,
  netOfBeats,
  perOp,
  type ProcStat,
  readGauges,
  slope,
  SOAK_GAUGES,
  type SoakVerdict,
  soakVerdict,
} from "./stats.ts";
import { connectSse, type SseClient } from "./sse_client.ts";
import { clientFrame, connect, OP_BINARY, WsClient } from "./ws_client.ts";

/** Protocol errors and unexpected events of a run; any of them fails it. */
export class Tally {
  /** Frames that did not decode, or were not what the protocol says. */
  protocol = 0;
  /** Connections the server closed (or dropped) without being asked. */
  unexpectedClose = 0;
  /** Connections that could not be opened. */
  connectFailed = 0;
  /** Steps that did not complete in time. */
  timeouts = 0;
  /** The first few problems, for the report. */
  readonly samples: string[] = [];

  /** The sum of every count. */
  get total(): number {
    return this.protocol + this.unexpectedClose + this.connectFailed +
      this.timeouts;
  }

  /**
   * Counts one problem.
   *
   * @param kind Which count.
   * @param what A description, kept for the first ten problems.
   */
  add(
    kind: "protocol" | "unexpectedClose" | "connectFailed" | "timeouts",
    what: string,
  ): void {
    this[kind]++;
    if (this.samples.length < 10) this.samples.push(`${kind}: ${what}`);
  }

  /**
   * Adds the counts of another tally (another process's, from its JSON).
   *
   * @param other The other tally's `toJSON()`.
   */
  merge(other: Readonly<Record<string, unknown>>): void {
    for (
      const kind of [
        "protocol",
        "unexpectedClose",
        "connectFailed",
        "timeouts",
      ] as const
    ) {
      const n = Number(other[kind] ?? 0);
      if (n > 0) this[kind] += n;
    }
    for (const sample of (other.samples as string[] | undefined) ?? []) {
      if (this.samples.length < 10) this.samples.push(sample);
    }
  }

  /** The counts, for the JSON line. */
  toJSON(): Record<string, unknown> {
    return {
      protocol: this.protocol,
      unexpectedClose: this.unexpectedClose,
      connectFailed: this.connectFailed,
      timeouts: this.timeouts,
      samples: this.samples,
    };
  }
}

/** CPU, wall time and RSS of the server and of this process over a window. */
export interface Window {
  /** Wall-clock milliseconds. */
  ms: number;
  /** Server CPU, µs. */
  serverCpuUs: number;
  /** The part of it spent in the kernel, µs. */
  serverSysUs: number;
  /** Load generator CPU, µs. */
  loadCpuUs: number;
  /** Server CPU, percent of one core. */
  serverPct: number;
  /** Load generator CPU, percent of one core. */
  loadPct: number;
  /** Which one limited the window. */
  bottleneck: Bottleneck;
}

/** The facts scenarios need from the run. */
export interface Env {
  /** Clock ticks per second. */
  hz: number;
  /** Page size. */
  pageSize: number;
  /** A tag unique to the run, put in group keys. */
  tag: string;
}

/**
 * CPU of the servers (summed when there are several: a cluster's nodes) and
 * of this process over a window.
 */
export class Meter {
  #pids: readonly number[];
  #hz: number;
  #t0 = 0;
  #s0: ProcStat[] = [];
  #l0: ProcStat | undefined;

  /**
   * @param pids The server processes, or one.
   * @param hz Clock ticks per second.
   */
  constructor(pids: number | readonly number[], hz: number) {
    this.#pids = typeof pids === "number" ? [pids] : pids;
    this.#hz = hz;
  }

  /** Starts a window. */
  start(): void {
    this.#t0 = performance.now();
    this.#s0 = this.#pids.map((pid) => readStat(pid));
    this.#l0 = readStat("self");
  }

  /**
   * Ends the window.
   *
   * @returns The window, the servers' CPU summed.
   */
  stop(): Window {
    const ms = performance.now() - this.#t0;
    let serverCpuUs = 0;
    let serverSysUs = 0;
    this.#pids.forEach((pid, i) => {
      const s1 = readStat(pid);
      serverCpuUs += cpuMicros(this.#s0[i], s1, this.#hz);
      serverSysUs += (s1.stime - this.#s0[i].stime) * 1e6 / this.#hz;
    });
    const loadCpuUs = cpuMicros(this.#l0!, readStat("self"), this.#hz);
    const serverPct = cpuPercent(serverCpuUs, ms);
    const loadPct = cpuPercent(loadCpuUs, ms);
    return {
      ms,
      serverCpuUs,
      serverSysUs,
      loadCpuUs,
      serverPct,
      loadPct,
      bottleneck: bottleneck(serverPct, loadPct),
    };
  }
}

/** Windows added up (the bottleneck of the whole is recomputed). */
function _sum(ws: readonly Window[]): Window {
  const t = { ms: 0, serverCpuUs: 0, serverSysUs: 0, loadCpuUs: 0 };
  for (const w of ws) {
    t.ms += w.ms;
    t.serverCpuUs += w.serverCpuUs;
    t.serverSysUs += w.serverSysUs;
    t.loadCpuUs += w.loadCpuUs;
  }
  const serverPct = cpuPercent(t.serverCpuUs, t.ms);
  const loadPct = cpuPercent(t.loadCpuUs, t.ms);
  return {
    ...t,
    serverPct,
    loadPct,
    bottleneck: bottleneck(serverPct, loadPct),
  };
}

const _sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const HEARTBEAT = encodeMessage({ type: "heartbeat", heartbeat: true });
const HEARTBEAT_FRAME = clientFrame(OP_BINARY, HEARTBEAT);

function _connectFrame(id: number, members: number[]): Uint8Array {
  return clientFrame(
    OP_BINARY,
    encodeMessage({ type: "connect", connect: { id, members } }),
  );
}

/**
 * Runs `task` over `items` with at most `limit` running at once.
 */
async function _pool<T>(
  items: number,
  limit: number,
  task: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array(items);
  let next = 0;
  const worker = async () => {
    while (next < items) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(limit, items) }, worker),
  );
  return out;
}

/**
 * Waits until `done()` is true, polling, at most `ms` milliseconds.
 *
 * @returns Whether it became true.
 */
async function _until(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) return false;
    await _sleep(5);
  }
  return true;
}

/**
 * A client connection on either transport: a WebSocket, or a session of the
 * WebSocket-free fallback (SSE down, POST up). `prebuild` makes the bytes
 * that `sendFrame` sends for one message: a frame, or a whole POST.
 */
export type Link = WsClient | SseClient;

/** The transports a peer can use. */
export type Transport = "ws" | "sse";

/** A client whose unexpected closes and bad frames go to the tally. */
interface _Peer {
  link: Link;
  /** `connected` replies received, in order. */
  replies: boolean[];
  /** Heartbeats received. */
  heartbeats: number;
  /** Who waits for the next `connected` reply. */
  wait: ((flag: boolean | undefined) => void) | undefined;
}

/**
 * Opens a client with the default handlers: heartbeats are answered, a
 * `connected` reply is recorded, every other frame goes to `onContent`, and
 * anything the protocol forbids is counted.
 */
async function _open(
  port: number,
  path: string,
  tally: Tally,
  onContent: ((r: FrameReader) => void) | undefined,
  options: {
    localAddress?: string;
    readSize?: number;
    transport?: Transport;
  } = {},
): Promise<_Peer | undefined> {
  let link: Link;
  try {
    link = options.transport === "sse"
      ? await connectSse({
        hostname: "127.0.0.1",
        port,
        path,
        readSize: options.readSize,
      })
      : await connect({
        hostname: "127.0.0.1",
        port,
        path,
        localAddress: options.localAddress,
        readSize: options.readSize,
      });
  } catch (error) {
    tally.add("connectFailed", String((error as Error).message ?? error));
    return undefined;
  }
  const peer: _Peer = { link, replies: [], heartbeats: 0, wait: undefined };
  const reader = new FrameReader();
  const beat = link instanceof WsClient
    ? HEARTBEAT_FRAME
    : link.prebuild(HEARTBEAT);
  link.handlers = {
    onBinary: (payload) => {
      try {
        reader.read(payload);
      } catch (error) {
        tally.add("protocol", `undecodable frame: ${(error as Error).message}`);
        return;
      }
      switch (reader.type) {
        case TYPE_HEARTBEAT:
          peer.heartbeats++;
          link.sendFrame(beat);
          return;
        case TYPE_CONNECTED: {
          peer.replies.push(reader.flag);
          const wait = peer.wait;
          peer.wait = undefined;
          wait?.(reader.flag);
          return;
        }
        case TYPE_CONTENT:
          if (onContent === undefined) {
            tally.add("protocol", `unexpected content on ${path}`);
          } else onContent(reader);
          return;
        default:
          tally.add("protocol", `unexpected message type ${reader.type}`);
      }
    },
    onText: () => tally.add("protocol", "text frame"),
    onError: (m) => tally.add("protocol", `framing: ${m}`),
    onClose: (info) => {
      if (!info.requested) {
        tally.add(
          "unexpectedClose",
          `${path} closed with ${info.code} ${info.reason}`.trim(),
        );
      }
    },
  };
  return peer;
}

/** Sends `connect` and waits for its reply. */
async function _join(
  peer: _Peer,
  id: number,
  members: number[],
  expect: boolean,
  tally: Tally,
  ms = 10000,
): Promise<boolean> {
  const reply = Promise.withResolvers<boolean | undefined>();
  peer.wait = reply.resolve;
  const timer = setTimeout(() => reply.resolve(undefined), ms);
  peer.link.sendFrame(
    peer.link instanceof WsClient
      ? _connectFrame(id, members)
      : peer.link.prebuild(
        encodeMessage({ type: "connect", connect: { id, members } }),
      ),
  );
  const flag = await reply.promise;
  clearTimeout(timer);
  if (flag === undefined) {
    peer.wait = undefined;
    tally.add("timeouts", `no connected reply to connect{${id}}`);
    return false;
  }
  if (flag !== expect) {
    tally.add("protocol", `connected:${flag} for ${id}`);
    return false;
  }
  return true;
}

async function _closeAll(peers: (_Peer | undefined)[], limit = 512) {
  await _pool(peers.length, limit, async (i) => {
    const p = peers[i];
    if (p !== undefined && !p.link.closed) await p.link.close(1000, 5000);
  });
}

// ---------------------------------------------------------------- relay

/** Parameters of one relay measurement. */
export interface RelayConfig {
  /** Member/joiner pairs. */
  pairs: number;
  /** Content payload size, bytes. */
  size: number;
  /** Messages in flight per pair. */
  window: number;
  /** Seconds measured, per server. */
  seconds: number;
  /** Seconds of warm-up before, per server. */
  warmup: number;
  /**
   * Seconds per slice: the servers take turns slice by slice, so that a
   * burst of load from elsewhere on the machine hits both alike.
   */
  slice: number;
}

/**
 * One of the setups a relay measurement compares: a server (or a cluster's
 * nodes), how its peers connect, and where each pair's two peers go.
 */
export interface RelaySide {
  /** The side's name, in group keys and in the results. */
  name: string;
  /** The processes whose CPU is the side's (summed: a cluster's nodes). */
  servers: readonly ServerProcess[];
  /**
   * Whether the peers speak the protocol (sigver: member and bound joiner);
   * the bare relay only forwards content.
   */
  protocol: boolean;
  /**
   * How the peers connect.
   * @default {"ws"}
   */
  transport?: Transport;
  /**
   * The ports pair `i`'s member and joiner connect to (the member first).
   * @default {both on the first server's port}
   */
  ports?: (pair: number) => { member: number; joiner: number };
  /**
   * Called once every pair is open; what it returns, when anything, is
   * counted as a protocol problem (a placement that is not what was meant).
   */
  check?: () => Promise<string | undefined>;
}

/** What one relay measurement gives. */
export interface RelayResult extends Window {
  /** The side's name. */
  name: string;
  /** Payload bytes. */
  size: number;
  /** Messages in flight per pair. */
  window: number;
  /** Relayed messages (each direction counts). */
  messages: number;
  /** Relayed messages per second. */
  rate: number;
  /** Server CPU per relayed message, µs. */
  usPerMsg: number | null;
  /** Load generator CPU per relayed message, µs. */
  loadUsPerMsg: number | null;
  /** Round trip (joiner -> member -> joiner), µs. */
  rttP50: number | null;
  /** Round trip, 99th percentile, µs. */
  rttP99: number | null;
  /** Messages per second each peer sent (against --message-rate). */
  peerRate: number;
}

/** The pairs of one side, which can be started and paused. */
class _RelayRig {
  readonly side: RelaySide;
  #config: RelayConfig;
  #env: Env;
  #tally: Tally;
  #peers: (_Peer | undefined)[] = [];
  #kicks: (() => void)[] = [];
  running = false;
  measuring = false;
  inFlight = 0;
  messages = 0;
  readonly rtt: Histogram = new Histogram(1, 500_000);
  ms = 0;
  serverCpuUs = 0;
  serverSysUs = 0;
  loadCpuUs = 0;

  constructor(
    side: RelaySide,
    config: RelayConfig,
    env: Env,
    tally: Tally,
  ) {
    this.side = side;
    this.#config = config;
    this.#env = env;
    this.#tally = tally;
  }

  /** Opens the pairs (member first, then its joiner). */
  async setup(): Promise<void> {
    const { pairs, size, window } = this.#config;
    const tally = this.#tally;
    const { name, protocol, transport } = this.side;
    const port = this.side.servers[0].port;
    const ports = this.side.ports ?? (() => ({ member: port, joiner: port }));
    const options = { readSize: 65536, transport };
    for (let i = 0; i < pairs; i++) {
      const path = `/relay-${this.#env.tag}-${name}-${size}-${window}-${i}`;
      const at = ports(i);
      // Member: echo every content back to its sender, with a cached frame
      // per slot (the payload of a slot never changes, only the id may).
      const echo: (Uint8Array | undefined)[] = new Array(window);
      let echoTo = -1;
      const member: _Peer | undefined = await _open(
        at.member,
        path,
        tally,
        (r) => {
          if (
            r.dataEnd === r.dataStart && !this.running && r.senderId === echoTo
          ) {
            return; // "Your joiner is gone": the joiner closed first.
          }
          if (this.measuring) this.messages++;
          const slot = r.buf[r.dataStart];
          if (r.dataEnd - r.dataStart !== size || slot >= window) {
            tally.add(
              "protocol",
              `member got ${r.dataEnd - r.dataStart} bytes`,
            );
            return;
          }
          if (r.senderId !== echoTo) {
            if (echoTo !== -1) tally.add("protocol", "joiner id changed");
            echoTo = r.senderId;
            echo.fill(undefined);
          }
          let frame = echo[slot];
          if (frame === undefined) {
            frame = echo[slot] = member!.link.prebuild(
              encodeContent(0, echoTo, r.data),
            );
          }
          member!.link.sendFrame(frame);
        },
        options,
      );
      this.#peers.push(member);
      if (member === undefined) continue;
      if (protocol && !(await _join(member, 1, [], true, tally))) {
        continue;
      }
      const sent = new Float64Array(window);
      const frames: Uint8Array[] = [];
      let sid = -1;
      const joiner: _Peer | undefined = await _open(
        at.joiner,
        path,
        tally,
        (r) => {
          const now = performance.now();
          if (
            r.dataEnd === r.dataStart && !this.running && r.recipientId === sid
          ) {
            return; // "Your member is gone": the member closed first.
          }
          if (this.measuring) this.messages++;
          const slot = r.buf[r.dataStart];
          if (
            r.dataEnd - r.dataStart !== size || slot >= window ||
            r.senderId !== 0
          ) {
            tally.add("protocol", "joiner got a bad echo");
            return;
          }
          if (sid !== r.recipientId) {
            if (sid !== -1) tally.add("protocol", "signaling id changed");
            sid = r.recipientId;
          }
          if (this.measuring) this.rtt.record((now - sent[slot]) * 1000);
          if (this.running) {
            sent[slot] = now;
            joiner!.link.sendFrame(frames[slot]);
          } else this.inFlight--;
        },
        options,
      );
      this.#peers.push(joiner);
      if (joiner === undefined) continue;
      for (let s = 0; s < window; s++) {
        const data = new Uint8Array(size).fill(0xa5);
        data[0] = s;
        frames.push(joiner.link.prebuild(encodeContent(0, 0, data)));
      }
      if (protocol && !(await _join(joiner, 2, [], false, tally))) {
        continue;
      }
      this.#kicks.push(() => {
        for (let s = 0; s < window; s++) {
          sent[s] = performance.now();
          this.inFlight++;
          joiner.link.sendFrame(frames[s]);
        }
      });
    }
    const problem = await this.side.check?.();
    if (problem !== undefined) tally.add("protocol", `${name}: ${problem}`);
  }

  /** Starts every pair's ping-pong. */
  start(): void {
    this.running = true;
    for (const kick of this.#kicks) kick();
  }

  /** Stops sending and waits for the messages in flight. */
  async pause(): Promise<void> {
    this.running = false;
    if (!(await _until(() => this.inFlight <= 0, 5000))) {
      this.#tally.add(
        "timeouts",
        `${this.inFlight} relay messages never came back`,
      );
      this.inFlight = 0;
    }
  }

  /** Runs one measured slice of `seconds`. */
  async slice(seconds: number): Promise<void> {
    this.start();
    // Let the pipeline fill before measuring.
    await _sleep(50);
    const meter = new Meter(
      this.side.servers.map((s) => s.pid),
      this.#env.hz,
    );
    this.measuring = true;
    meter.start();
    await _sleep(seconds * 1000);
    const w = meter.stop();
    this.measuring = false;
    this.ms += w.ms;
    this.serverCpuUs += w.serverCpuUs;
    this.serverSysUs += w.serverSysUs;
    this.loadCpuUs += w.loadCpuUs;
    await this.pause();
  }

  async close(): Promise<void> {
    await _closeAll(this.#peers);
  }

  result(): RelayResult {
    const { size, window, pairs } = this.#config;
    const serverPct = cpuPercent(this.serverCpuUs, this.ms);
    const loadPct = cpuPercent(this.loadCpuUs, this.ms);
    const rate = this.messages / (this.ms / 1000);
    return {
      name: this.side.name,
      ms: this.ms,
      serverCpuUs: this.serverCpuUs,
      serverSysUs: this.serverSysUs,
      loadCpuUs: this.loadCpuUs,
      serverPct,
      loadPct,
      bottleneck: bottleneck(serverPct, loadPct),
      size,
      window,
      messages: this.messages,
      rate,
      usPerMsg: perOp(this.serverCpuUs, this.messages),
      loadUsPerMsg: perOp(this.loadCpuUs, this.messages),
      rttP50: this.rtt.percentile(50),
      rttP99: this.rtt.percentile(99),
      peerRate: rate / (2 * pairs),
    };
  }
}

/**
 * Relay: `pairs` member/joiner pairs per side ping-pong content. Against
 * sigver the pairs first become member and bound joiner; against the bare
 * relay the same content frames are simply forwarded. The sides take turns
 * in slices of `config.slice` seconds until each had `config.seconds`, so
 * that load from elsewhere on the machine hits them alike.
 *
 * @param sides The setups compared: servers, transport, placement.
 * @param config Sizes, window, durations.
 * @param env Run facts.
 * @param tally Where problems are counted.
 * @returns The figures, in the order of `sides`.
 */
export async function relay(
  sides: readonly RelaySide[],
  config: RelayConfig,
  env: Env,
  tally: Tally,
): Promise<RelayResult[]> {
  const rigs = sides.map((s) => new _RelayRig(s, config, env, tally));
  try {
    for (const rig of rigs) {
      await rig.setup();
      rig.start();
      await _sleep(config.warmup * 1000);
      await rig.pause();
    }
    const slices = Math.max(1, Math.round(config.seconds / config.slice));
    const each = config.seconds / slices;
    for (let i = 0; i < slices; i++) {
      // Alternate who goes first, so that neither always follows the other.
      const order = i % 2 === 0 ? rigs : [...rigs].reverse();
      for (const rig of order) await rig.slice(each);
    }
  } finally {
    for (const rig of rigs) await rig.close();
  }
  return rigs.map((r) => r.result());
}

// ------------------------------------------------------------- capacity

/** Parameters of the capacity scenario. */
export interface CapacityConfig {
  /** Idle peers to hold. */
  peers: number;
  /** Peers per group. */
  groupSize: number;
  /** Seconds to hold them and measure the heartbeat CPU. */
  hold: number;
  /** Handshakes in progress at once. */
  concurrency: number;
  /** Source addresses to spread over (127.0.0.2 onwards); 0: Deno.connect. */
  sources: number;
}

/** What the capacity scenario gives. */
export interface CapacityResult {
  /** Peers that were open at the end of the hold. */
  peers: number;
  /** The connect phase. */
  connect: Window;
  /** Server CPU per new connection, µs. */
  usPerConnection: number | null;
  /**
   * The same without the heartbeats that came during the connect phase (when
   * it lasts longer than a heartbeat period), at their cost while holding.
   */
  usPerConnectionNet: number | null;
  /** New connections per second. */
  connectRate: number;
  /** The join phase (sigver only). */
  join: Window | null;
  /** Server CPU per `connect` -> `connected: true`, µs. */
  usPerMemberJoin: number | null;
  /** The hold phase. */
  hold: Window;
  /** Server CPU while holding, percent of one core. */
  holdPct: number;
  /** Heartbeats received while holding. */
  heartbeats: number;
  /** Server RSS before connecting, bytes. */
  rssBefore: number;
  /** Server RSS while holding, bytes. */
  rssHeld: number;
  /** (rssHeld - rssBefore) / peers, bytes. */
  rssPerPeer: number | null;
  /** RSS growth per peer between half and all the peers, bytes. */
  rssSlope: number | null;
  /** Heartbeats that came during the connect phase (they cost CPU too). */
  beatsDuringConnect: number;
}

/**
 * Capacity: `peers` idle peers, each a member of a group, answering
 * heartbeats. Measures the server's CPU per new connection, RSS per peer and
 * CPU while holding them.
 *
 * @param server The server under test.
 * @param protocol Whether to make the peers group members (sigver).
 * @param config Peers, group size, hold time, concurrency, source addresses.
 * @param env Run facts.
 * @param tally Where problems are counted.
 * @returns The figures.
 */
export async function capacity(
  server: ServerProcess,
  protocol: boolean,
  config: CapacityConfig,
  env: Env,
  tally: Tally,
): Promise<CapacityResult> {
  const { peers: n, groupSize } = config;
  const path = (i: number) =>
    `/cap-${env.tag}-${server.kind}-${Math.floor(i / groupSize)}`;
  const source = (i: number) =>
    config.sources > 0 ? `127.0.0.${2 + (i % config.sources)}` : undefined;
  // Warm-up: load the code paths once, so that the baseline RSS has them.
  const warm = await _pool(
    64,
    32,
    (i) =>
      _open(server.port, `/cap-warm-${env.tag}-${i}`, tally, undefined, {
        readSize: 1024,
        localAddress: source(i),
      }),
  );
  if (protocol) {
    await Promise.all(warm.map((p) => p && _join(p, 1, [], true, tally)));
  }
  await _closeAll(warm);
  await _sleep(1000);
  const rssBefore = readStat(server.pid).rssPages * env.pageSize;

  // One pass of connections, as fast as the concurrency allows: it must end
  // before the first heartbeats (5 s), or they count as connection cost.
  // The RSS is also sampled when half the peers are open: the slope from
  // there to the end is the cost of one more peer, free of one-off growth
  // (V8's young generation reaching its full size, code compiled on first
  // use); it is a rough figure, taken while connections are in flight.
  const meter = new Meter(server.pid, env.hz);
  const half = Math.floor(n / 2);
  const peers: (_Peer | undefined)[] = new Array(n);
  let done = 0;
  let rssHalf = 0;
  meter.start();
  await _pool(n, config.concurrency, async (i) => {
    peers[i] = await _open(server.port, path(i), tally, undefined, {
      readSize: 1024,
      localAddress: source(i),
    });
    if (++done === half) rssHalf = readStat(server.pid).rssPages * env.pageSize;
  });
  const connects = [meter.stop()];
  const beatsDuringConnect = peers.reduce(
    (s, p) => s + (p?.heartbeats ?? 0),
    0,
  );
  const joins: Window[] = [];
  if (protocol) {
    meter.start();
    const firsts = peers.filter((_, i) => i % groupSize === 0);
    const others = peers.filter((_, i) => i % groupSize !== 0);
    await _pool(firsts.length, config.concurrency, async (i) => {
      const p = firsts[i];
      if (p !== undefined) await _join(p, 1, [], true, tally, 30000);
    });
    await _pool(others.length, config.concurrency, async (i) => {
      const p = others[i];
      if (p !== undefined) {
        await _join(p, 2 + (i % (groupSize - 1)), [1], true, tally, 30000);
      }
    });
    joins.push(meter.stop());
  }
  await _sleep(1000);
  const rssFull = readStat(server.pid).rssPages * env.pageSize;
  const connect = _sum(connects);
  const join = protocol ? _sum(joins) : null;
  const opened = peers.filter((p) => p !== undefined).length;
  const beats = () => peers.reduce((s, p) => s + (p?.heartbeats ?? 0), 0);
  const beats0 = beats();
  meter.start();
  await _sleep(config.hold * 1000);
  const hold = meter.stop();
  const heartbeats = beats() - beats0;
  const rssHeld = readStat(server.pid).rssPages * env.pageSize;
  const live = peers.filter((p) => p !== undefined && !p.link.closed).length;
  await _closeAll(peers, config.concurrency);
  return {
    peers: live,
    connect,
    usPerConnection: perOp(connect.serverCpuUs, opened),
    usPerConnectionNet: perOp(
      netOfBeats(
        connect.serverCpuUs,
        beatsDuringConnect,
        hold.serverCpuUs,
        heartbeats,
      ),
      opened,
    ),
    connectRate: opened / (connect.ms / 1000),
    join,
    usPerMemberJoin: join && perOp(join.serverCpuUs, opened),
    hold,
    holdPct: hold.serverPct,
    heartbeats,
    rssBefore,
    rssHeld,
    rssPerPeer: perOp(rssHeld - rssBefore, live),
    rssSlope: perOp(rssFull - rssHalf, n - half),
    beatsDuringConnect,
  };
}

// ---------------------------------------------------------------- holder

/** What a {@linkcode PeerHolder} opens, and where. */
export interface HoldPlan {
  /** Node ports: peer `i` connects to `ports[i % ports.length]`. */
  ports: number[];
  /** The start of every group key (unique to the run and the holder). */
  prefix: string;
  /** Source addresses, in turn (none: `Deno.connect` from 127.0.0.1). */
  sources: string[];
  /** Handshakes in progress at once. */
  concurrency: number;
}

/**
 * Idle peers, each alone in its group, answering heartbeats: the load of a
 * `bench/holder.ts` process, which holds them under its own open-file
 * limit. Each peer's key is its own, so the node it connects to owns its
 * group (key affinity by construction).
 */
export class PeerHolder {
  #plan: HoldPlan;
  #tally: Tally;
  #peers: (_Peer | undefined)[] = [];
  #marks: number[] = [];

  /**
   * @param plan Ports, key prefix, sources, concurrency.
   * @param tally Where problems are counted.
   */
  constructor(plan: HoldPlan, tally: Tally) {
    this.#plan = plan;
    this.#tally = tally;
  }

  /**
   * Opens the next `count` peers: each connects and joins its own group
   * (`connect{1, []}`, answered `true`).
   *
   * @param count Peers to add.
   * @returns How many are open and joined now, in all.
   */
  async open(count: number): Promise<number> {
    const { ports, prefix, sources, concurrency } = this.#plan;
    const first = this.#peers.length;
    this.#peers.length += count;
    await _pool(count, concurrency, async (k) => {
      const i = first + k;
      const peer = await _open(
        ports[i % ports.length],
        `/${prefix}-${i}`,
        this.#tally,
        undefined,
        {
          readSize: 1024,
          localAddress: sources.length
            ? sources[i % sources.length]
            : undefined,
        },
      );
      if (peer === undefined) return;
      // A refused join is counted in the tally; the peer stays open.
      await _join(peer, 1, [], true, this.#tally, 30000);
      this.#peers[i] = peer;
    });
    return this.#peers.filter((p) => p !== undefined && !p.link.closed).length;
  }

  /** Starts counting each peer's heartbeats from now. */
  mark(): void {
    this.#marks = this.#peers.map((p) => p?.heartbeats ?? 0);
  }

  /**
   * The heartbeats each open peer got (and answered) since the mark.
   *
   * @returns The count.
   */
  beats(): BeatCount {
    let live = 0;
    let min = Infinity;
    let max = 0;
    let total = 0;
    this.#peers.forEach((p, i) => {
      if (p === undefined || p.link.closed) return;
      const n = p.heartbeats - (this.#marks[i] ?? 0);
      live++;
      min = Math.min(min, n);
      max = Math.max(max, n);
      total += n;
    });
    return { live, min: live ? min : 0, max, total };
  }

  /** Closes every peer (closing handshakes). */
  async close(): Promise<void> {
    await _closeAll(this.#peers, this.#plan.concurrency);
  }
}

// ---------------------------------------------------------------- churn

/** Parameters of the churn scenario. */
export interface ChurnConfig {
  /** Groups of three standing members. */
  groups: number;
  /** Joins in progress at once. */
  concurrency: number;
  /** Seconds measured. */
  seconds: number;
  /** Seconds of warm-up before. */
  warmup: number;
  /** Source addresses to spread over; 0: Deno.connect. */
  sources: number;
}

/** What the churn scenario gives. */
export interface ChurnResult extends Window {
  /** Joins completed in the window (`connected: true` received). */
  joins: number;
  /** Joins per second. */
  rate: number;
  /** Server CPU per join (connect, handshake, leave), µs. */
  usPerJoin: number | null;
  /** Load generator CPU per join, µs. */
  loadUsPerJoin: number | null;
  /** Time from connecting to `connected: true`, µs. */
  joinP50: number | null;
  /** Same, 99th percentile. */
  joinP99: number | null;
  /** "Joiner gone" notices members received. */
  goneNotices: number;
}

const OFFER = new Uint8Array(400).fill(0x6f);
const ANSWER = new Uint8Array(400).fill(0x61);

/**
 * Churn: groups of three members; joiners connect, send `connect` with no
 * members (bound to a member), send an offer, get the answer (`lastData`),
 * send `connect` with the three members, get `connected: true`, then leave.
 *
 * @param server The server under test (sigver).
 * @param config Groups, concurrency, duration.
 * @param env Run facts.
 * @param tally Where problems are counted.
 * @returns The figures.
 */
export async function churn(
  server: ServerProcess,
  config: ChurnConfig,
  env: Env,
  tally: Tally,
): Promise<ChurnResult> {
  const key = (g: number) => `/churn-${env.tag}-${g}`;
  const members: (_Peer | undefined)[] = [];
  let gone = 0;
  for (let g = 0; g < config.groups; g++) {
    for (let m = 1; m <= 3; m++) {
      const peer: _Peer | undefined = await _open(
        server.port,
        key(g),
        tally,
        (r) => {
          if (r.dataEnd === r.dataStart) {
            // "Your joiner is gone": the joiner left without lastData.
            gone++;
            return;
          }
          if (r.dataEnd - r.dataStart !== OFFER.length || r.senderId === 0) {
            tally.add("protocol", "member got a bad offer");
            return;
          }
          peer!.link.send(
            encodeMessage({
              type: "content",
              content: {
                senderId: 0,
                recipientId: r.senderId,
                lastData: true,
                data: ANSWER,
              },
            }),
          );
        },
      );
      members.push(peer);
      if (peer !== undefined) {
        await _join(peer, m, m === 1 ? [] : [1], true, tally);
      }
    }
  }
  let measuring = false;
  let running = true;
  let joins = 0;
  let nextId = 100;
  const latency = new Histogram(10, 200_000);
  const OFFER_FRAME = clientFrame(
    OP_BINARY,
    encodeContent(0, 0, OFFER),
  );
  const one = async (worker: number, n: number): Promise<void> => {
    const id = nextId++;
    const t0 = performance.now();
    let answered = false;
    const done = Promise.withResolvers<void>();
    const peer = await _open(
      server.port,
      key((worker + n) % config.groups),
      tally,
      (r) => {
        if (
          r.senderId !== 0 || r.recipientId === 0 ||
          r.dataEnd - r.dataStart !== ANSWER.length
        ) {
          tally.add("protocol", "joiner got a bad answer");
          return;
        }
        answered = true;
        done.resolve();
      },
      {
        readSize: 4096,
        localAddress: config.sources > 0
          ? `127.0.0.${2 + ((worker + n) % config.sources)}`
          : undefined,
      },
    );
    if (peer === undefined) return;
    try {
      if (!(await _join(peer, id, [], false, tally))) return;
      peer.link.sendFrame(OFFER_FRAME);
      const timer = setTimeout(() => done.resolve(), 10000);
      await done.promise;
      clearTimeout(timer);
      if (!answered) {
        tally.add("timeouts", "no answer to an offer");
        return;
      }
      if (!(await _join(peer, id, [1, 2, 3], true, tally))) return;
      if (measuring) {
        joins++;
        latency.record((performance.now() - t0) * 1000);
      }
    } finally {
      await peer.link.close(1000, 5000);
    }
  };
  const workers = Array.from({ length: config.concurrency }, async (_, w) => {
    for (let n = 0; running && n < 1_000_000; n++) await one(w, n);
  });
  await _sleep(config.warmup * 1000);
  const meter = new Meter(server.pid, env.hz);
  joins = 0;
  measuring = true;
  meter.start();
  await _sleep(config.seconds * 1000);
  const w = meter.stop();
  measuring = false;
  const counted = joins;
  running = false;
  await Promise.race([Promise.all(workers), _sleep(15000)]);
  await _closeAll(members);
  return {
    ...w,
    joins: counted,
    rate: counted / (w.ms / 1000),
    usPerJoin: perOp(w.serverCpuUs, counted),
    loadUsPerJoin: perOp(w.loadCpuUs, counted),
    joinP50: latency.percentile(50),
    joinP99: latency.percentile(99),
    goneNotices: gone,
  };
}

/**
 * The churn floor on the bare relay: the same new connection per join and a
 * few more frames (the joiner's three frames, each echoed back by a standing
 * partner), then the same leave. What Deno itself costs for the network work
 * of a join, to read the absolute churn target against.
 *
 * @param server The bare relay.
 * @param config Concurrency (one standing partner each), duration.
 * @param env Run facts.
 * @param tally Where problems are counted.
 * @returns The figures.
 */
export async function churnBare(
  server: ServerProcess,
  config: ChurnConfig,
  env: Env,
  tally: Tally,
): Promise<ChurnResult> {
  const key = (w: number) => `/churnbare-${env.tag}-${w}`;
  const onClose = (info: { requested: boolean; code: number }) => {
    if (!info.requested) {
      tally.add("unexpectedClose", `bare churn ${info.code}`);
    }
  };
  const partners: WsClient[] = [];
  for (let w = 0; w < config.concurrency; w++) {
    try {
      const m = await connect({
        hostname: "127.0.0.1",
        port: server.port,
        path: key(w),
      });
      m.handlers = { onBinary: (p) => m.send(p), onClose };
      partners.push(m);
    } catch (error) {
      tally.add("connectFailed", String((error as Error).message ?? error));
    }
  }
  const payloads = [
    encodeMessage({ type: "connect", connect: { id: 1000, members: [] } }),
    encodeContent(0, 0, OFFER),
    encodeMessage({
      type: "connect",
      connect: { id: 1000, members: [1, 2, 3] },
    }),
  ];
  const frames = payloads.map((p) => clientFrame(OP_BINARY, p));
  let measuring = false;
  let running = true;
  let joins = 0;
  const latency = new Histogram(10, 200_000);
  const one = async (w: number): Promise<void> => {
    const t0 = performance.now();
    let ws: WsClient;
    try {
      ws = await connect({
        hostname: "127.0.0.1",
        port: server.port,
        path: key(w),
        localAddress: config.sources > 0
          ? `127.0.0.${2 + (w % config.sources)}`
          : undefined,
      });
    } catch (error) {
      tally.add("connectFailed", String((error as Error).message ?? error));
      return;
    }
    let echoed = 0;
    let next = Promise.withResolvers<boolean>();
    ws.handlers = {
      onBinary: (p) => {
        if (p.length !== payloads[echoed]?.length) {
          tally.add("protocol", "bare churn echo of the wrong size");
        }
        echoed++;
        next.resolve(true);
      },
      onClose,
    };
    try {
      for (let i = 0; i < frames.length; i++) {
        next = Promise.withResolvers<boolean>();
        ws.sendFrame(frames[i]);
        const timer = setTimeout(() => next.resolve(false), 10000);
        const ok = await next.promise;
        clearTimeout(timer);
        if (!ok) {
          tally.add("timeouts", "bare churn echo never came");
          return;
        }
      }
      if (measuring) {
        joins++;
        latency.record((performance.now() - t0) * 1000);
      }
    } finally {
      await ws.close(1000, 5000);
    }
  };
  const workers = Array.from({ length: partners.length }, async (_, w) => {
    for (let n = 0; running && n < 1_000_000; n++) await one(w);
  });
  await _sleep(config.warmup * 1000);
  const meter = new Meter(server.pid, env.hz);
  joins = 0;
  measuring = true;
  meter.start();
  await _sleep(config.seconds * 1000);
  const w = meter.stop();
  measuring = false;
  const counted = joins;
  running = false;
  await Promise.race([Promise.all(workers), _sleep(15000)]);
  await Promise.all(partners.map((m) => m.close(1000, 5000)));
  return {
    ...w,
    joins: counted,
    rate: counted / (w.ms / 1000),
    usPerJoin: perOp(w.serverCpuUs, counted),
    loadUsPerJoin: perOp(w.loadCpuUs, counted),
    joinP50: latency.percentile(50),
    joinP99: latency.percentile(99),
    goneNotices: 0,
  };
}

// ----------------------------------------------------------------- soak

/** Parameters of the soak scenario. */
export interface SoakConfig {
  /** Cycles in all, the warm-up's included. */
  cycles: number;
  /** Cycles before the reference RSS is taken. */
  warmup: number;
  /** Cycles in progress at once. */
  concurrency: number;
  /** Source addresses to spread over; 0: Deno.connect. */
  sources: number;
  /** Seconds of quiet before each RSS and gauge reading. */
  settle: number;
}

/** What the soak scenario gives. */
export interface SoakResult extends SoakVerdict {
  /** Cycles run. */
  cycles: number;
  /** Cycles that went through every step. */
  completed: number;
  /** The cycles after the warm-up. */
  window: Window;
  /** Cycles per second after the warm-up. */
  rate: number;
  /** Server CPU per cycle after the warm-up, µs. */
  usPerCycle: number | null;
  /** Server RSS after the warm-up and a quiet spell, bytes. */
  rssWarm: number;
  /** Server RSS at the end, after a quiet spell, bytes. */
  rssEnd: number;
  /** Highest server RSS sampled (once a second), bytes. */
  rssPeak: number;
  /** Server RSS once a second after the warm-up: cycles done, bytes. */
  trace: { cycles: number; rss: number }[];
  /** RSS growth per cycle after the warm-up (least squares), bytes. */
  rssSlope: number | null;
  /** The hub's gauges after the warm-up. */
  gaugesWarm: Record<string, number>;
  /** The hub's gauges at the end. */
  gauges: Record<string, number>;
  /** "Gone" notices received (the leaves that leave one behind). */
  goneNotices: number;
}

/** Resolves with `p`, or with `undefined` after `ms` milliseconds. */
async function _within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) =>
    timer = setTimeout(() => r(undefined), ms)
  );
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function _gauges(port: number): Promise<Record<string, number>> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    return readGauges(await response.text(), SOAK_GAUGES);
  } catch {
    return {};
  }
}

/**
 * Soak: `cycles` times, in a group of its own, a member connects and joins;
 * a joiner connects, is bound to it and sends an offer; then one of four
 * endings, in turn: the member answers (`lastData`), the joiner joins, and
 * the joiner leaves first, or the member does; the joiner leaves before
 * any answer (the member gets "joiner gone"); the member's connection drops
 * without a closing handshake (the joiner gets "member gone"). After the
 * last cycle the hub must hold nothing (its gauges on `/metrics`) and the
 * RSS must be back within 10 % of its level after the warm-up.
 *
 * @param server The server under test (sigver).
 * @param config Cycles, warm-up, concurrency, sources, quiet time.
 * @param env Run facts.
 * @param tally Where problems are counted.
 * @returns The figures and the verdict.
 */
export async function soak(
  server: ServerProcess,
  config: SoakConfig,
  env: Env,
  tally: Tally,
): Promise<SoakResult> {
  const port = server.port;
  const offerFrame = clientFrame(OP_BINARY, encodeContent(0, 0, OFFER));
  let completed = 0;
  let started = 0;
  let gone = 0;
  const rss = () => readStat(server.pid).rssPages * env.pageSize;
  const one = async (i: number): Promise<void> => {
    started++;
    const key = `/soak-${env.tag}-${i}`;
    const options = {
      readSize: 4096,
      localAddress: config.sources > 0
        ? `127.0.0.${2 + (i % config.sources)}`
        : undefined,
    };
    const offer = Promise.withResolvers<number>();
    const answer = Promise.withResolvers<void>();
    const joinerGone = Promise.withResolvers<void>();
    const memberGone = Promise.withResolvers<void>();
    const member = await _open(port, key, tally, (r) => {
      if (r.dataEnd === r.dataStart) {
        gone++;
        joinerGone.resolve();
      } else if (r.senderId === 0 || r.dataEnd - r.dataStart !== OFFER.length) {
        tally.add("protocol", "soak: member got a bad offer");
      } else offer.resolve(r.senderId);
    }, options);
    if (member === undefined) return;
    try {
      if (!(await _join(member, 1, [], true, tally))) return;
      const joiner = await _open(port, key, tally, (r) => {
        if (r.dataEnd === r.dataStart) {
          gone++;
          memberGone.resolve();
        } else if (
          r.senderId !== 0 || r.dataEnd - r.dataStart !== ANSWER.length
        ) {
          tally.add("protocol", "soak: joiner got a bad answer");
        } else answer.resolve();
      }, options);
      if (joiner === undefined) return;
      try {
        if (!(await _join(joiner, 2, [], false, tally))) return;
        joiner.link.sendFrame(offerFrame);
        const sid = await _within(offer.promise, 10000);
        if (sid === undefined) {
          tally.add("timeouts", "soak: no offer");
          return;
        }
        const step = async (p: Promise<unknown>, what: string) => {
          const ok = (await _within(p.then(() => true), 10000)) ?? false;
          if (!ok) tally.add("timeouts", `soak: no ${what}`);
          return ok;
        };
        switch (i % 4) {
          case 0:
          case 1: {
            member.link.send(encodeMessage({
              type: "content",
              content: {
                senderId: 0,
                recipientId: sid,
                lastData: true,
                data: ANSWER,
              },
            }));
            if (!(await step(answer.promise, "answer"))) return;
            if (!(await _join(joiner, 2, [1], true, tally))) return;
            const [first, second] = i % 4 === 0
              ? [joiner, member]
              : [member, joiner];
            await first.link.close(1000, 5000);
            await second.link.close(1000, 5000);
            break;
          }
          case 2:
            await joiner.link.close(1000, 5000);
            if (!(await step(joinerGone.promise, "joiner-gone notice"))) {
              return;
            }
            break;
          default:
            member.link.destroy();
            if (!(await step(memberGone.promise, "member-gone notice"))) {
              return;
            }
        }
        completed++;
      } finally {
        if (!joiner.link.closed) await joiner.link.close(1000, 5000);
      }
    } finally {
      if (!member.link.closed) await member.link.close(1000, 5000);
    }
  };
  const warmup = Math.min(config.warmup, config.cycles);
  await _pool(warmup, config.concurrency, one);
  await _sleep(config.settle * 1000);
  const rssWarm = rss();
  const gaugesWarm = await _gauges(port);
  const trace = [{ cycles: started, rss: rssWarm }];
  const sampler = setInterval(() => {
    trace.push({ cycles: started, rss: rss() });
  }, 1000);
  const meter = new Meter(server.pid, env.hz);
  meter.start();
  try {
    await _pool(
      config.cycles - warmup,
      config.concurrency,
      (i) => one(warmup + i),
    );
  } finally {
    clearInterval(sampler);
  }
  const window = meter.stop();
  await _sleep(config.settle * 1000);
  const rssEnd = rss();
  const gauges = await _gauges(port);
  const after = config.cycles - warmup;
  return {
    cycles: config.cycles,
    completed,
    window,
    rate: after / (window.ms / 1000),
    usPerCycle: perOp(window.serverCpuUs, after),
    rssWarm,
    rssEnd,
    rssPeak: Math.max(rssEnd, ...trace.map((t) => t.rss)),
    trace,
    rssSlope: slope(trace.map((t) => ({ x: t.cycles, y: t.rss }))),
    gaugesWarm,
    gauges,
    goneNotices: gone,
    ...soakVerdict(gauges, rssWarm, rssEnd),
  };
}
