/**
 * The fuzzer's two halves: {@linkcode fuzzDecoder} feeds random and mutated
 * bytes to the codec in this process; {@linkcode fuzzServer} drives a live
 * server over loopback with random opens, closes, frames and raw WebSocket
 * bytes; {@linkcode checkServer} then proves it still serves.
 *
 * @module
 */

import {
  decodeMessage,
  encodeMessage,
  FrameReader,
  type Message,
} from "../lib/netflux/wire.ts";
import { RawSocket } from "../dev/raw_socket.ts";
import { Rng } from "../dev/rng.ts";
import { TestPeer } from "../dev/test_peer.ts";
import { closePayload, OP_CLOSE } from "../dev/bad_frames.ts";
import {
  decoderInput,
  mutate,
  randomBytes,
  randomMessage,
  randomProto,
  randomTarget,
  rawFrames,
} from "./gen.ts";

/** What {@linkcode fuzzDecoder} saw. */
export interface DecoderReport {
  /** Inputs fed, by generator. */
  inputs: Record<string, number>;
  /** Inputs that decoded (with or without a type). */
  decoded: number;
  /** Inputs refused with a `SyntaxError`. */
  syntaxErrors: number;
  /** Any other exception: must stay 0. A few samples in `failures`. */
  otherErrors: number;
  /** FrameReader and decodeMessage disagreeing on an input: must stay 0. */
  disagreements: number;
  /** decode(encode(decode(x))) differing from decode(x): must stay 0. */
  roundTripMismatches: number;
  /** Decoded fields larger than their input (an allocation blow-up). */
  oversized: number;
  /** Descriptions of the first failures, with the input in hex. */
  failures: string[];
  /** Largest input fed, in bytes. */
  largestInput: number;
  /** Slowest single decode, in microseconds (reported, not asserted). */
  slowestMicros: number;
  /**
   * That slowest input decoded again, median of 21 runs, in microseconds:
   * small means the slow decode was a GC pause, not a pathological input.
   */
  slowestAgainMicros: number;
  /** Heap in use before and after, in bytes. */
  heapBefore: number;
  /** Heap in use after. */
  heapAfter: number;
  /** Wall time in milliseconds. */
  ms: number;
}

function _hex(bytes: Uint8Array): string {
  const s = Array.from(
    bytes.subarray(0, 64),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  return bytes.length > 64 ? `${s}... (${bytes.length} bytes)` : s;
}

function _same(a: Message | undefined, b: Message | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.type !== b.type) return false;
  switch (a.type) {
    case "heartbeat":
      return a.heartbeat === (b as typeof a).heartbeat;
    case "connected":
      return a.connected === (b as typeof a).connected;
    case "connect": {
      const c = (b as typeof a).connect;
      return a.connect.id === c.id &&
        a.connect.members.length === c.members.length &&
        a.connect.members.every((m, i) => m === c.members[i]);
    }
    case "content": {
      const x = a.content;
      const y = (b as typeof a).content;
      return x.senderId === y.senderId && x.recipientId === y.recipientId &&
        x.lastData === y.lastData && x.data.length === y.data.length &&
        x.data.every((v, i) => v === y.data[i]);
    }
  }
}

/**
 * Feeds `count` random and mutated inputs to `FrameReader.read` and
 * `decodeMessage`. Only `SyntaxError` may come out; both must agree; what
 * decodes must survive a round trip; no decoded field may outgrow its input.
 *
 * @param options How many inputs, from which seed.
 * @returns What happened.
 */
export function fuzzDecoder(
  options: { count: number; seed: number },
): DecoderReport {
  const rng = new Rng(options.seed);
  const reader = new FrameReader();
  const report: DecoderReport = {
    inputs: {},
    decoded: 0,
    syntaxErrors: 0,
    otherErrors: 0,
    disagreements: 0,
    roundTripMismatches: 0,
    oversized: 0,
    failures: [],
    largestInput: 0,
    slowestMicros: 0,
    slowestAgainMicros: 0,
    heapBefore: Deno.memoryUsage().heapUsed,
    heapAfter: 0,
    ms: 0,
  };
  const fail = (what: string, bytes: Uint8Array) => {
    if (report.failures.length < 10) {
      report.failures.push(`${what}: ${_hex(bytes)}`);
    }
  };
  let slowest: Uint8Array = new Uint8Array(0);
  const start = performance.now();
  for (let i = 0; i < options.count; i++) {
    const { kind, bytes } = decoderInput(rng);
    report.inputs[kind] = (report.inputs[kind] ?? 0) + 1;
    report.largestInput = Math.max(report.largestInput, bytes.length);
    const t0 = performance.now();
    let readerOk = false;
    try {
      reader.read(bytes);
      readerOk = true;
    } catch (error) {
      if (!(error instanceof SyntaxError)) {
        report.otherErrors++;
        fail(`FrameReader threw ${error}`, bytes);
      }
    }
    const micros = (performance.now() - t0) * 1000;
    if (micros > report.slowestMicros) {
      report.slowestMicros = micros;
      slowest = bytes;
    }
    let message: Message | undefined;
    let ok = false;
    try {
      message = decodeMessage(bytes);
      ok = true;
    } catch (error) {
      if (error instanceof SyntaxError) report.syntaxErrors++;
      else {
        report.otherErrors++;
        fail(`decodeMessage threw ${error}`, bytes);
      }
    }
    if (ok !== readerOk) {
      report.disagreements++;
      fail("FrameReader and decodeMessage disagree", bytes);
    }
    if (!ok) continue;
    report.decoded++;
    if (
      message?.type === "connect" &&
        message.connect.members.length > bytes.length ||
      message?.type === "content" && message.content.data.length > bytes.length
    ) {
      report.oversized++;
      fail("decoded field larger than the input", bytes);
    }
    if (message === undefined) continue;
    try {
      const again = decodeMessage(encodeMessage(message));
      if (!_same(message, again)) {
        report.roundTripMismatches++;
        fail("round trip differs", bytes);
      }
    } catch (error) {
      report.otherErrors++;
      fail(`round trip threw ${error}`, bytes);
    }
  }
  report.ms = performance.now() - start;
  report.heapAfter = Deno.memoryUsage().heapUsed;
  const again: number[] = [];
  for (let k = 0; k < 21; k++) {
    const t0 = performance.now();
    try {
      reader.read(slowest);
    } catch {
      // Timed only.
    }
    again.push((performance.now() - t0) * 1000);
  }
  report.slowestAgainMicros = again.sort((a, b) => a - b)[10];
  return report;
}

/** Options of {@linkcode fuzzServer}. */
export interface ServerFuzzOptions {
  /** The server's port on 127.0.0.1. */
  port: number;
  /** Inputs to send: frames, opens, closes and raw writes. */
  count: number;
  /** Seed of the run. */
  seed: number;
  /** The server's `maxMessageSize`, to make frames just over it. */
  maxMessageSize: number;
  /**
   * Most fuzzing sockets open at once.
   * @default {64}
   */
  peers?: number;
  /** Called now and then with the inputs sent so far. */
  onProgress?: (sent: number) => void;
}

/** What {@linkcode fuzzServer} did and saw. */
export interface ServerReport {
  /** Inputs sent, by kind. */
  inputs: Record<string, number>;
  /** Close events of fuzzing sockets the server closed, by code. */
  serverCloses: Record<string, number>;
  /** Close events of sockets the fuzzer closed, by code. */
  clientCloses: Record<string, number>;
  /** Raw sockets, by the handshake's HTTP status. */
  rawStatus: Record<string, number>;
  /**
   * Sockets that sent a frame the server must refuse (text, oversized,
   * undecodable, typeless), by what followed: "4743 as predicted", or
   * "4744 instead of 4743" when another close overtook it.
   */
  verdicts: Record<string, number>;
  /** Errors the fuzzer itself hit (refused connections...): must stay 0. */
  errors: string[];
  /** Wall time in milliseconds. */
  ms: number;
}

/**
 * Close codes the server may use on a fuzzing socket. 0 (Deno's client) and
 * 1006 (browsers) mean dropped without a close frame: Deno drops a server
 * socket that receives a data frame after it started closing, which a
 * fuzzer that never stops sending sometimes meets.
 */
export const EXPECTED_CLOSE_CODES: readonly number[] = [
  0,
  1000,
  1001,
  1005,
  1006,
  1008,
  1009,
  4741,
  4742,
  4743,
  4744,
  4745,
];

interface _Peer {
  socket: WebSocket;
  open: boolean;
  /** Whether it ever opened. */
  opened?: boolean;
  byUs: boolean;
  /** The close code the fuzzer sent, if it closed the socket. */
  code?: number;
  /** Signaling ids seen in content, worth addressing. */
  seen: number[];
  /** The close code a fatal frame it sent must bring. */
  expect?: number;
}

/**
 * Codes that may overtake the one a fatal frame brings: dropped (0, 1006),
 * a limit (1008), heartbeats (4742), replaced (4744), sending failed (4745).
 */
const OVERTAKING = [0, 1006, 1008, 4742, 4744, 4745];

function _count(map: Record<string, number>, key: string | number): void {
  map[key] = (map[key] ?? 0) + 1;
}

/**
 * Drives a live server with `count` random inputs: opens on random keys and
 * query strings, closes in random order (also before the open), valid,
 * mutated, random, empty, text and oversized frames, and raw sockets that
 * write broken WebSocket frames. Closes every socket it opened at the end.
 *
 * @param options The server and the size of the run.
 * @returns What happened.
 */
export async function fuzzServer(
  options: ServerFuzzOptions,
): Promise<ServerReport> {
  const rng = new Rng(options.seed);
  const maxPeers = options.peers ?? 64;
  const report: ServerReport = {
    inputs: {},
    serverCloses: {},
    clientCloses: {},
    rawStatus: {},
    verdicts: {},
    errors: [],
    ms: 0,
  };
  const peers = new Set<_Peer>();
  /** Sockets not open yet: with `live`, the pool that maxPeers bounds. */
  let opening = 0;
  const live: _Peer[] = [];
  const closing = new Set<Promise<void>>();
  const raws = new Set<Promise<void>>();
  const reader = new FrameReader();
  const base = `ws://127.0.0.1:${options.port}`;
  const server = { addr: { port: options.port } };

  const openPeer = (target: string, abort: boolean) => {
    let socket: WebSocket;
    try {
      socket = new WebSocket(base + target);
    } catch (error) {
      // The URL parser refused the target: nothing was sent.
      _count(report.inputs, "bad_url");
      void error;
      return;
    }
    socket.binaryType = "arraybuffer";
    const peer: _Peer = { socket, open: false, byUs: false, seen: [] };
    peers.add(peer);
    opening++;
    const done = Promise.withResolvers<void>();
    closing.add(done.promise);
    socket.onopen = () => {
      opening--;
      peer.open = peer.opened = true;
      live.push(peer);
    };
    socket.onerror = () => {};
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        report.errors.push(`text frame from the server: ${event.data}`);
        return;
      }
      try {
        reader.read(new Uint8Array(event.data));
      } catch (error) {
        report.errors.push(`undecodable frame from the server: ${error}`);
        return;
      }
      if (reader.type === 2) {
        const id = reader.senderId || reader.recipientId;
        if (id !== 0 && !peer.seen.includes(id)) {
          peer.seen.push(id);
          if (peer.seen.length > 8) peer.seen.shift();
        }
      }
    };
    socket.onclose = (event) => {
      if (!peer.open && !peer.opened) opening--;
      peer.open = false;
      peers.delete(peer);
      const at = live.indexOf(peer);
      if (at !== -1) live.splice(at, 1);
      if (!peer.byUs) {
        const code = event.code;
        _count(report.serverCloses, code);
        const expect = peer.expect;
        if (expect === code) _count(report.verdicts, `${code} as predicted`);
        else if (OVERTAKING.includes(code) || code === 4741) {
          if (expect !== undefined) {
            _count(report.verdicts, `${code} instead of ${expect}`);
          }
        } else if (report.errors.length < 20) {
          report.errors.push(
            expect === undefined
              ? `closed with ${code} ${event.reason} after valid frames`
              : `closed with ${code} ${event.reason} instead of ${expect}`,
          );
        }
      } else {
        _count(
          report.clientCloses,
          event.code === peer.code ? "as sent" : event.code,
        );
      }
      closing.delete(done.promise);
      done.resolve();
    };
    if (abort) {
      peer.byUs = true;
      socket.close();
    }
  };

  const closePeer = (peer: _Peer) => {
    if (peer.byUs) return;
    peer.byUs = true;
    const code = rng.chance(0.5) ? 1000 : 3000 + rng.int(2000);
    peer.code = code;
    const reason = rng.chance(0.5) ? "" : "x".repeat(rng.int(100));
    try {
      peer.socket.close(code, reason);
    } catch {
      // Already closing.
    }
  };

  const rawPeer = async (target: string, bytes: Uint8Array) => {
    let raw: RawSocket;
    try {
      raw = await RawSocket.upgrade(server, target);
    } catch (error) {
      report.errors.push(`raw handshake failed: ${error}`);
      return;
    }
    using _ = raw;
    _count(report.rawStatus, raw.status);
    if (raw.status !== 101) return;
    try {
      await raw.sendBytes(bytes);
    } catch {
      return; // The server already dropped it: fine.
    }
    if (rng.chance(0.5)) return; // Gone without a word.
    // Ask for the end, and read until the server ends it (or a while).
    try {
      await raw.sendFrame(OP_CLOSE, closePayload(1000));
    } catch {
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 500);
    });
    const drain = (async () => {
      try {
        while (await raw.readFrame() !== null) { /* discard */ }
      } catch {
        // Reset: fine.
      }
    })();
    await Promise.race([drain, late]);
    clearTimeout(timer);
  };

  const oversize = options.maxMessageSize + 1 +
    Math.min(options.maxMessageSize, 1024);
  const start = performance.now();
  for (let sent = 0; sent < options.count; sent++) {
    if (sent % 64 === 0) {
      // Let sockets open, messages arrive and buffers drain.
      await new Promise((resolve) => setTimeout(resolve, 0));
      let buffered = 0;
      for (const p of live) buffered += p.socket.bufferedAmount;
      while (
        buffered > 4 << 20 || opening > maxPeers / 2 ||
        closing.size > 4 * maxPeers
      ) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        buffered = 0;
        for (const p of live) buffered += p.socket.bufferedAmount;
      }
      if (sent % 8192 === 0) options.onProgress?.(sent);
    }
    if (live.length === 0 && opening >= maxPeers / 4) {
      // Every socket is opening or closing: wait for one, not one more.
      sent--;
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    // Keep the pool topped up: fatal frames and closes keep emptying it.
    if (
      live.length + opening < maxPeers &&
      (live.length === 0 || rng.chance(0.25))
    ) {
      const abort = rng.chance(0.05);
      _count(report.inputs, abort ? "open_abort" : "open");
      openPeer(randomTarget(rng), abort);
      continue;
    }
    const r = rng.float();
    if (r < 0.02) {
      _count(report.inputs, "close");
      closePeer(rng.pick(live));
      continue;
    }
    if (r < 0.03) {
      _count(report.inputs, "raw");
      const p = rawPeer(randomTarget(rng), rawFrames(rng));
      raws.add(p);
      p.finally(() => raws.delete(p));
      if (raws.size >= 16) await Promise.race(raws);
      continue;
    }
    const peer = rng.pick(live);
    if (peer.socket.readyState !== WebSocket.OPEN) {
      sent--;
      await new Promise((resolve) => setTimeout(resolve, 0));
      continue;
    }
    const f = rng.float();
    let frame: Uint8Array | string;
    let kind: string;
    if (f < 0.8) {
      kind = "valid";
      frame = encodeMessage(randomMessage(rng, peer.seen));
    } else if (f < 0.9) {
      kind = "mutated";
      frame = mutate(rng, encodeMessage(randomMessage(rng, peer.seen)));
    } else if (f < 0.93) {
      kind = "proto";
      frame = randomProto(rng);
    } else if (f < 0.95) {
      kind = "random";
      frame = randomBytes(rng);
    } else if (f < 0.96) {
      kind = "empty";
      frame = new Uint8Array(0);
    } else if (f < 0.98) {
      kind = "text";
      frame = rng.chance(0.9) ? "x".repeat(rng.size(100)) : "\u{1F600}";
    } else if (f < 0.995) {
      kind = "oversize";
      frame = rng.bytes(oversize);
    } else {
      kind = "oversize_text";
      frame = "y".repeat(oversize);
    }
    _count(report.inputs, kind);
    peer.socket.send(frame);
    // A frame the server must refuse: expect its close code, and send no
    // more on this socket (the server closes it once it is quiet).
    let fatal: number | undefined;
    if (typeof frame === "string") fatal = 4743;
    else if (frame.length > options.maxMessageSize) fatal = 1009;
    else {
      try {
        reader.read(frame);
        if (reader.type === 0) fatal = 4743;
      } catch {
        fatal = 4743;
      }
    }
    if (fatal !== undefined) {
      peer.expect = fatal;
      live.splice(live.indexOf(peer), 1);
    }
  }
  await Promise.all(raws);
  for (const peer of [...peers]) {
    if (peer.open) closePeer(peer);
    else if (peer.socket.readyState === WebSocket.CONNECTING) {
      peer.byUs = true;
      peer.socket.close();
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("late"), 15000);
  });
  if (await Promise.race([Promise.all(closing), late]) === "late") {
    report.errors.push(`${closing.size} sockets did not close in 15 s`);
  }
  clearTimeout(timer);
  report.ms = performance.now() - start;
  return report;
}

/** What {@linkcode checkServer} found. */
export interface ServerCheck {
  /** `/healthz` answered 200. */
  healthy: boolean;
  /** A fresh member and joiner exchanged an offer and an answer. */
  relays: boolean;
  /** `sigver_peers`, `sigver_groups`, `sigver_bound_joiners` once settled. */
  peers: number;
  /** Groups left. */
  groups: number;
  /** Bound joiners left. */
  bound: number;
  /** Problems met, if any. */
  problems: string[];
}

/**
 * Checks that a server still serves: liveness, a normal member and joiner
 * relaying both ways, and (once they left) no peer, group or binding left.
 *
 * @param port The server's port on 127.0.0.1.
 * @returns What it found.
 */
export async function checkServer(port: number): Promise<ServerCheck> {
  const check: ServerCheck = {
    healthy: false,
    relays: false,
    peers: -1,
    groups: -1,
    bound: -1,
    problems: [],
  };
  const http = `http://127.0.0.1:${port}`;
  try {
    const health = await fetch(`${http}/healthz`);
    await health.body?.cancel();
    check.healthy = health.status === 200;
  } catch (error) {
    check.problems.push(`healthz: ${error}`);
  }
  try {
    check.relays = await _relays(`ws://127.0.0.1:${port}/fuzz-check-room`);
  } catch (error) {
    check.problems.push(`relay: ${error}`);
  }
  const deadline = performance.now() + 10000;
  for (;;) {
    try {
      const text = await (await fetch(`${http}/metrics`)).text();
      const value = (name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? -1);
      check.peers = value("sigver_peers");
      check.groups = value("sigver_groups");
      check.bound = value("sigver_bound_joiners");
    } catch (error) {
      check.problems.push(`metrics: ${error}`);
      break;
    }
    if (check.peers === 0 && check.groups === 0 && check.bound === 0) break;
    if (performance.now() > deadline) {
      check.problems.push("state left after every socket closed");
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check;
}

async function _relays(url: string): Promise<boolean> {
  await using member = await TestPeer.open(url);
  await using joiner = await TestPeer.open(url);
  if (!await member.join(1) || await joiner.join(2)) return false;
  joiner.sendContent({ data: "offer" });
  const offer = await member.nextContent();
  member.sendContent({ recipientId: offer.senderId, data: "answer" });
  const answer = await joiner.nextContent();
  return offer.data === "offer" && answer.data === "answer" &&
    answer.recipientId === offer.senderId;
}
