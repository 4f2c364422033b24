// A property test of lib/hub.ts: random sequences of open, connect, content,
// heartbeat, bad frames, forget, close and tick over many peers and a few keys,
// checked after every step against a model written from PROTOCOL.md.
//
// The model predicts every frame each peer receives, every close code, the
// counters and the stats; on top of that, after every step: a peer is in at
// most one group, no group is empty, ids are unique among live peers,
// bindings link live peers only, and all is empty once every peer closed.
//
// Seeded: set SIGVER_TEST_SEED to try another seed; a failure names the seed,
// the run and the last steps.

import assert from "node:assert/strict";
import {
  CloseError,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_MESSAGE,
  ERR_URL,
  Hub,
  type HubCounters,
  type Peer,
  type PeerTransport,
} from "../../../lib/netflux/hub.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
} from "../../../lib/netflux/wire.ts";
import { EMPTY_STATS } from "../../_helpers.ts";
import { Rng, testSeed } from "../../../dev/rng.ts";

const RUNS = 400;
const STEPS = 150;
const MAX_LIVE = 14;
/** PROTOCOL.md: closed at the third period in a row without a heartbeat. */
const MISSED_LIMIT = 3;
// Mostly one key, so that groups grow; two others to keep them apart.
const KEYS = ["a", "a", "a", "b", "c"];

/** A message as a peer sees it, `data` as a plain array. */
type Seen =
  | { heartbeat: boolean }
  | { connected: boolean }
  | { senderId: number; recipientId: number; lastData: boolean; data: number[] }
  | { other: Message };

function seen(m: Message): Seen {
  switch (m.type) {
    case "heartbeat":
      return { heartbeat: m.heartbeat };
    case "connected":
      return { connected: m.connected };
    case "content":
      return { ...m.content, data: [...m.content.data] };
    default:
      return { other: m };
  }
}

class FakeSocket implements PeerTransport {
  inbox: Seen[] = [];
  closes: number[] = [];
  sentAfterClose = 0;
  /** When set, every send throws it: a broken or too slow socket. */
  failWith: Error | undefined = undefined;
  send(frame: Uint8Array): void {
    if (this.failWith !== undefined) throw this.failWith;
    if (this.closes.length > 0) this.sentAfterClose++;
    const m = decodeMessage(frame);
    this.inbox.push(m ? seen(m) : { other: m as never });
  }
  close(code: number): void {
    this.closes.push(code);
  }
}

/**
 * Checks the fields of `expected` in `actual` (fields added to the hub later
 * are not the model's business), with a readable diff when they differ.
 */
function sameFields<T extends object>(
  actual: T,
  expected: T,
  what: string,
): void {
  const keys = Object.keys(expected) as (keyof T)[];
  if (keys.some((k) => actual[k] !== expected[k])) {
    const picked = Object.fromEntries(keys.map((k) => [k, actual[k]]));
    assert.deepStrictEqual(picked, expected, what);
  }
}

/** The model's view of one peer. */
interface Model {
  readonly name: string;
  readonly peer: Peer;
  readonly socket: FakeSocket;
  readonly key: string;
  readonly favored: boolean;
  readonly openedAt: number;
  live: boolean;
  missed: number;
  /** Signaling id, as learnt from the hub when it was given. */
  sid: number;
  groupId: number;
  tried: Set<number>;
  bound: Model | undefined;
  toMember: boolean;
  fromMember: boolean;
  /** When it was bound: joiners are told "gone" in this order. */
  boundAt: number;
  /** Frames it must have received since the last check. */
  expected: Seen[];
  closes: number[];
  /** The close code the hub must use when a send to it fails. */
  broken: number | undefined;
}

function emptyCounters(): HubCounters {
  return {
    inHeartbeat: 0,
    inContent: 0,
    inConnect: 0,
    inConnected: 0,
    outHeartbeat: 0,
    outContent: 0,
    outConnected: 0,
    bytesRelayed: 0,
    dropped: 0,
  };
}

/** The protocol of PROTOCOL.md, played next to a hub. */
class World {
  readonly hub: Hub;
  readonly slots: number;
  readonly peers: Model[] = [];
  readonly groups: Map<string, Model[]> = new Map();
  readonly counters: HubCounters = emptyCounters();
  ticks = 0;
  #binds = 0;
  /** How often each rule and path was taken, to check the coverage. */
  readonly events: Map<string, number>;

  constructor(r: Rng, events: Map<string, number>) {
    this.events = events;
    this.slots = 1 + r.int(3);
    this.hub = new Hub({
      slots: this.slots,
      // The fake socket decodes each frame at once: reused frames are fine.
      reuseFrames: r.int(2) === 0,
      // Now and then a colliding random source: ids must stay unique.
      random: r.int(4) === 0 ? () => r.int(4) / 4 : () => r.float(),
    });
  }

  #saw(event: string): void {
    this.events.set(event, (this.events.get(event) ?? 0) + 1);
  }

  live(): Model[] {
    return this.peers.filter((p) => p.live);
  }

  // -- Steps: drive the hub, then play the same step on the model. --

  open(key: string, favored: boolean): void {
    const socket = new FakeSocket();
    const peer = this.hub.open(socket, key, favored);
    this.peers.push({
      name: `p${this.peers.length}`,
      peer,
      socket,
      key,
      favored,
      openedAt: this.ticks,
      live: true,
      missed: 0,
      sid: peer.id,
      groupId: 0,
      tried: new Set(),
      bound: undefined,
      toMember: false,
      fromMember: false,
      boundAt: 0,
      expected: [],
      closes: [],
      broken: undefined,
    });
  }

  connect(p: Model, id: number, members: number[]): void {
    this.hub.receive(
      p.peer,
      encodeMessage({ type: "connect", connect: { id, members } }),
    );
    this.counters.inConnect++;
    const g = this.groups.get(p.key);
    let ok = true;
    let blocker: Model | undefined;
    if (g === undefined) {
      this.#saw("rule 1");
      this.groups.set(p.key, [p]);
      this.#member(p, id);
    } else if (g.length === 1 && g[0] === p) {
      this.#saw("rule 2a"); // nothing changes
    } else if (g.some((m) => members.includes(m.groupId))) {
      this.#saw(
        g.includes(p) ? "rule 3, kept" : `rule ${g.length === 1 ? "2b" : "3"}`,
      );
      if (!g.includes(p)) g.push(p);
      this.#member(p, id);
    } else if (g.length === 1 && p.tried.has(g[0].groupId)) {
      this.#saw("rule 2c");
      blocker = g[0];
      this.groups.set(p.key, [p]);
      this.#member(p, id);
    } else {
      this.#saw(g.includes(p) ? "rule 4, member leaves" : "rule 4");
      this.#leave(p);
      this.#bind(p, this.#choose(this.groups.get(p.key)!, p));
      ok = false;
    }
    this.counters.outConnected++;
    this.#deliver(p, { connected: ok });
    if (blocker !== undefined) this.#drop(blocker, ERR_BLOCKING_MEMBER);
  }

  content(
    p: Model,
    recipientId: number,
    lastData: boolean,
    data: number[],
  ): void {
    this.hub.receive(
      p.peer,
      encodeMessage({
        type: "content",
        content: {
          senderId: (recipientId ^ 1) >>> 0,
          recipientId,
          lastData,
          data: new Uint8Array(data),
        },
      }),
    );
    this.counters.inContent++;
    // A member answering one of its joiners: to that joiner only.
    const j = recipientId === 0
      ? undefined
      : this.live().find((j) => j.bound === p && j.sid === recipientId);
    if (j !== undefined) {
      if (!j.fromMember) {
        this.#saw("member -> joiner after lastData");
        this.counters.dropped++;
        return;
      }
      this.#saw(
        p.bound !== undefined && p.toMember
          ? "member -> joiner, itself bound"
          : "member -> joiner",
      );
      if (lastData) this.#saw("member -> joiner lastData");
      if (lastData) {
        j.fromMember = false;
        if (!j.toMember) this.#unbind(j);
      }
      this.#relay(j, { senderId: 0, recipientId, lastData: false, data });
      return;
    }
    const m = p.bound;
    if (m === undefined || !p.toMember) {
      this.#saw(
        m === undefined
          ? "unmatched content"
          : "joiner -> member after lastData",
      );
      this.counters.dropped++;
      return;
    }
    this.#saw(
      p.peer.member ? "joiner -> member, itself a member" : "joiner -> member",
    );
    if (lastData) this.#saw("joiner -> member lastData");
    if (lastData) {
      p.toMember = false;
      if (!p.fromMember) this.#unbind(p);
    }
    this.#relay(m, { senderId: p.sid, recipientId: 0, lastData: false, data });
  }

  heartbeat(p: Model, flag: boolean): void {
    this.hub.receive(
      p.peer,
      encodeMessage({ type: "heartbeat", heartbeat: flag }),
    );
    this.counters.inHeartbeat++;
    p.missed = 0;
  }

  connected(p: Model): void {
    this.hub.receive(
      p.peer,
      encodeMessage({ type: "connected", connected: true }),
    );
    this.counters.inConnected++;
  }

  badFrame(p: Model, frame: Uint8Array): void {
    this.hub.receive(p.peer, frame);
    this.#drop(p, ERR_MESSAGE);
  }

  closeBy(p: Model, code: number): void {
    this.hub.close(p.peer, code, "closed by the test");
    this.#drop(p, code);
  }

  /** From now on, sending to `p` throws; the hub must close it with `code`. */
  breakSocket(p: Model, code: number): void {
    p.socket.failWith = code === ERR_URL
      ? new Error("broken pipe")
      : new CloseError(code, "Cannot send: too slow");
    p.broken = code;
  }

  forget(p: Model): void {
    this.hub.forget(p.peer);
    this.#drop(p, undefined);
  }

  tick(): void {
    this.hub.tick();
    this.ticks++;
    for (const p of this.peers) {
      const age = this.ticks - p.openedAt;
      if (!p.live || age <= 0 || age % this.slots !== 0) continue;
      if (++p.missed >= MISSED_LIMIT) {
        this.#drop(p, ERR_HEARTBEAT);
      } else {
        this.counters.outHeartbeat++;
        this.#deliver(p, { heartbeat: true });
      }
    }
  }

  // -- The model's rules. --

  #member(p: Model, id: number): void {
    p.groupId = id;
    p.tried.clear();
  }

  #leave(p: Model): void {
    const g = this.groups.get(p.key);
    const i = g?.indexOf(p) ?? -1;
    if (g === undefined || i === -1) return;
    g.splice(i, 1);
    if (g.length === 0) this.groups.delete(p.key);
  }

  /** Favored members first, then the others, in join order, untried first. */
  #choose(g: Model[], j: Model): Model {
    const untried = g.filter((m) => !j.tried.has(m.groupId));
    if (untried.length === 0) {
      this.#saw("tried list reset");
      j.tried.clear();
      return this.#choose(g, j);
    }
    return untried.find((m) => m.favored) ?? untried[0];
  }

  #bind(j: Model, m: Model): void {
    if (j.bound !== undefined) this.#saw("bound again");
    this.#unbind(j);
    const before = j.sid;
    j.sid = j.peer.id;
    assert.notEqual(
      j.sid,
      before,
      `${j.name}: a new signaling id on each bind`,
    );
    j.tried.add(m.groupId);
    j.bound = m;
    j.toMember = j.fromMember = true;
    j.boundAt = ++this.#binds;
  }

  #unbind(j: Model): void {
    j.bound = undefined;
    j.toMember = j.fromMember = false;
  }

  #relay(to: Model, content: Seen & { data: number[] }): void {
    this.counters.outContent++;
    this.counters.bytesRelayed += content.data.length;
    this.#deliver(to, content);
  }

  #deliver(to: Model, m: Seen): void {
    // A peer closed earlier in the same cascade gets nothing.
    if (!to.live) return;
    if (to.broken === undefined) {
      to.expected.push(m);
    } else {
      this.#saw("closed after a failed send");
      this.#drop(to, to.broken);
    }
  }

  #drop(p: Model, code: number | undefined): void {
    if (!p.live) return;
    p.live = false;
    if (code !== undefined) p.closes.push(code);
    this.#saw(`closed ${code ?? "by the peer"}`);
    this.#leave(p);
    const m = p.bound;
    if (m !== undefined) {
      const notify = p.toMember;
      this.#unbind(p);
      if (notify) {
        this.#saw("gone -> member");
        this.counters.outContent++;
        this.#deliver(m, {
          senderId: p.sid,
          recipientId: 0,
          lastData: false,
          data: [],
        });
      }
    }
    const joiners = this.peers
      .filter((j) => j.live && j.bound === p)
      .sort((a, b) => a.boundAt - b.boundAt);
    for (const j of joiners) {
      const notify = j.fromMember;
      this.#unbind(j);
      if (notify) {
        this.#saw("gone -> joiner");
        this.counters.outContent++;
        this.#deliver(j, {
          senderId: 0,
          recipientId: j.sid,
          lastData: false,
          data: [],
        });
      }
    }
  }

  // -- The check after every step. --

  check(): void {
    const live = this.live();
    for (const p of this.peers) {
      // (Deep comparisons only when there is something to compare: the
      // check runs for every peer after every step.)
      const got = p.socket.inbox.splice(0);
      const want = p.expected.splice(0);
      if (got.length + want.length > 0) {
        assert.deepStrictEqual(got, want, `frames received by ${p.name}`);
      }
      if (p.socket.closes.join() !== p.closes.join()) {
        assert.deepStrictEqual(
          p.socket.closes,
          p.closes,
          `close codes of ${p.name}`,
        );
      }
      assert.equal(
        p.socket.sentAfterClose,
        0,
        `${p.name}: frame sent after close`,
      );
      assert.equal(p.peer.live, p.live, `${p.name} live`);
      if (!p.live) continue;
      assert.equal(p.peer.id, p.sid, `${p.name}: signaling id`);
      const groups = [...this.groups.values()].filter((g) => g.includes(p));
      assert.ok(groups.length <= 1, `${p.name} in at most one group`);
      assert.equal(p.peer.member, groups.length === 1, `${p.name} member`);
      if (p.bound !== undefined) {
        assert.ok(p.bound.live, `${p.name} bound to a live member`);
        assert.ok(
          p.toMember || p.fromMember,
          `${p.name}: a binding with a direction open`,
        );
      }
    }
    for (const [key, g] of this.groups) {
      assert.ok(g.length > 0, `group ${key} is not empty`);
      assert.ok(
        g.every((m) => m.live && m.key === key),
        `group ${key} holds live peers of its key`,
      );
    }
    const ids = live.map((p) => p.peer.id);
    assert.equal(new Set(ids).size, ids.length, "ids unique among live peers");
    for (const id of ids) {
      assert.ok(id >= 1 && id <= 2 ** 31 - 1, `id ${id} in range`);
    }
    sameFields(this.hub.stats(), {
      peers: live.length,
      groups: this.groups.size,
      members: [...this.groups.values()].reduce((n, g) => n + g.length, 0),
      ids: live.length,
      bindings: live.filter((p) => p.bound !== undefined).length,
      scheduled: live.length,
    }, "stats");
    sameFields(this.hub.counters, this.counters, "counters");
    assert.equal(this.hub.size, live.length);
    const listed = [...this.hub.peers()];
    const livePeers = new Set(live.map((p) => p.peer));
    assert.ok(
      listed.length === live.length && listed.every((p) => livePeers.has(p)),
      "hub.peers() lists the live peers",
    );
  }
}

/** One random step: what it does (for the failure report) and how. */
function step(w: World, r: Rng): [string, () => void] {
  const live = w.live();
  const x = r.float();
  if (live.length < 4 || (x < 0.15 && live.length < MAX_LIVE)) {
    const key = r.pick(KEYS);
    const favored = r.int(4) === 0;
    return [
      `open ${key}${favored ? "?favored" : ""}`,
      () => w.open(key, favored),
    ];
  }
  // Mostly peers with a binding on either side: they have something to say.
  const busy = live.filter((p) =>
    p.bound !== undefined || live.some((j) => j.bound === p)
  );
  const p = busy.length > 0 && r.int(4) !== 0 ? r.pick(busy) : r.pick(live);
  if (x < 0.35) {
    // Group ids from a small pool, and often those of the current members.
    const g = w.groups.get(p.key) ?? [];
    const id = 1 + r.int(6);
    const members = Array.from(
      { length: r.int(2) * r.int(4) },
      () => g.length > 0 && r.int(3) === 0 ? r.pick(g).groupId : r.int(8),
    );
    return [
      `${p.name} connect ${id} [${members}]`,
      () => w.connect(p, id, members),
    ];
  }
  if (x < 0.65) {
    const joiners = live.filter((j) => j.bound === p);
    const y = r.int(10);
    const recipientId = y < 2
      ? 0
      : y < 8 && joiners.length > 0
      ? r.pick(joiners).sid
      : y < 9
      ? r.pick(w.peers).sid
      : r.next();
    const lastData = r.int(6) === 0;
    const data = Array.from({ length: r.int(4) }, () => r.int(256));
    return [
      `${p.name} content to ${recipientId}${lastData ? " lastData" : ""}`,
      () => w.content(p, recipientId, lastData, data),
    ];
  }
  if (x < 0.77) {
    const flag = r.int(2) === 0;
    return [`${p.name} heartbeat ${flag}`, () => w.heartbeat(p, flag)];
  }
  if (x < 0.78) {
    return [`${p.name} connected`, () => w.connected(p)];
  }
  if (x < 0.79) {
    const frame = r.pick([[], [0xff], [0x28, 0x01], [0x0a, 0x00]]);
    return [
      `${p.name} bad frame [${frame}]`,
      () => w.badFrame(p, new Uint8Array(frame)),
    ];
  }
  if (x < 0.85) {
    return [`${p.name} close`, () => w.forget(p)];
  }
  if (x < 0.865) {
    const code = r.pick([ERR_MESSAGE, 4745, 1008]);
    return [`${p.name} closed by the server ${code}`, () => w.closeBy(p, code)];
  }
  if (x < 0.88) {
    const code = r.pick([ERR_URL, 1008]);
    return [`${p.name} socket breaks (${code})`, () => w.breakSocket(p, code)];
  }
  if (x < 0.93) return ["tick", () => w.tick()];
  // Most peers answer in time (the heartbeat check runs after each step).
  const beating = live.filter(() => r.int(5) !== 0);
  return [
    `heartbeats from ${beating.map((p) => p.name)}`,
    () => beating.forEach((p) => w.heartbeat(p, true)),
  ];
}

Deno.test("hub keeps its invariants and matches the model over random sequences", () => {
  const s = testSeed();
  const events = new Map<string, number>();
  for (let run = 0; run < RUNS; run++) {
    const r = new Rng(s + run);
    const w = new World(r, events);
    const log: string[] = [];
    const checked = (what: string, act: () => void) => {
      log.push(what);
      try {
        act();
        w.check();
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        throw new Error(
          `run ${run} (seed ${s}, rerun with SIGVER_TEST_SEED=${s}), step ${log.length}: ${why}\n` +
            `last steps:\n  ${log.slice(-25).join("\n  ")}`,
          { cause: e },
        );
      }
    };
    for (let i = 0; i < STEPS; i++) checked(...step(w, r));
    // Everyone leaves, in random order: nothing may be left behind.
    for (let live = w.live(); live.length > 0; live = w.live()) {
      const p = r.pick(live);
      checked(`${p.name} close (end)`, () => w.forget(p));
    }
    assert.deepStrictEqual(w.hub.stats(), EMPTY_STATS);
    assert.equal(w.groups.size, 0);
  }
  // The sequences must reach every rule and path, many times.
  const expected = [
    "rule 1",
    "rule 2a",
    "rule 2b",
    "rule 2c",
    "rule 3",
    "rule 3, kept",
    "rule 4",
    "rule 4, member leaves",
    "tried list reset",
    "bound again",
    "joiner -> member",
    "joiner -> member, itself a member",
    "joiner -> member lastData",
    "joiner -> member after lastData",
    "member -> joiner",
    "member -> joiner, itself bound",
    "member -> joiner lastData",
    "member -> joiner after lastData",
    "unmatched content",
    "gone -> member",
    "gone -> joiner",
    `closed ${ERR_BLOCKING_MEMBER}`,
    `closed ${ERR_HEARTBEAT}`,
    `closed ${ERR_MESSAGE}`,
    "closed by the peer",
    "closed after a failed send",
  ];
  for (const event of expected) {
    const n = events.get(event) ?? 0;
    assert.ok(
      n >= 20,
      `"${event}" seen ${n} times only: ${JSON.stringify([...events])}`,
    );
  }
});
