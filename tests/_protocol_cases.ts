/**
 * The wire contract (`docs/PROTOCOL.md`) as one table of cases, run against
 * every deployment that speaks it (in the spirit of hono's
 * `src/router/common.case.test.ts`): the server in this process
 * (`tests/server_test.ts`), the CLI server and a cluster whose peers connect
 * to different nodes (`tests/cluster/protocol.cluster.ts`). A target says
 * where the i-th peer of a case connects; on a cluster, peer i goes to node
 * i mod N, and the first peer of a case to open its socket (index 0) makes
 * that node the owner of the case's key, so peers 1, 2... reach the group
 * through pipes.
 *
 * The cases look at what peers see, and, when the server runs in this
 * process, at what it holds too (stats, keys, dropped messages). "Nothing
 * arrives" is never checked by waiting: a peer that sent something that
 * must be dropped then sends a `connect`, whose reply proves the server
 * handled what came before it on that socket; the peer that must not
 * receive it then gets a marker, or a `connected` reply of its own, which
 * must be its next message.
 *
 * ```ts ignore
 * await runProtocolCases(t, { url: (path, i) => `ws://127.0.0.1:${ports[i % 3]}${path}` });
 * ```
 *
 * @module
 */

import { hubOf } from "../deno/handler.ts";
import assert from "node:assert/strict";
import { deadline } from "../lib/deadline.ts";
import type { HubStats } from "../lib/netflux/hub.ts";
import { decodeMessage, encodeMessage } from "../lib/netflux/wire.ts";
import {
  bindTo,
  closedBy,
  type CloseInfo,
  fromJoiner,
  RawSocket,
  TestPeer,
  type TestServer,
  toJoiner,
  WAIT_TIMEOUT,
  waitFor,
} from "./_helpers.ts";

/** Where peers connect. */
export interface ProtocolTarget {
  /**
   * The `ws://` URL of a request target for the i-th peer of a case.
   *
   * @param path The request target: `/key`, `/key?favored`.
   * @param index The peer's index in its case (0 opens first).
   * @returns The URL.
   */
  url(path: string, index: number): string;
  /**
   * The server, when it runs in this process (`startServer()`), fresh for
   * the case: a close it starts is then awaited by driving its clock, and
   * the case also checks what it holds. Absent for servers in other
   * processes, which a case sees only through its peers.
   */
  server?: TestServer;
}

/** One case of the table. */
export interface ProtocolCase {
  /** "thing does X when Y". */
  name: string;
  /**
   * Runs the case; it closes every peer it opened.
   *
   * @param target Where peers connect.
   */
  run(target: ProtocolTarget): Promise<void>;
}

const ERR_KEY = 4741;
const _OP_BINARY = 2;
const ERR_MESSAGE = 4743;
const ERR_BLOCKING_MEMBER = 4744;

/**
 * The peers of one case, on keys of their own, and what the case may ask of
 * an in-process server (every check is skipped on other targets); disposing
 * closes the peers.
 */
class _Peers implements AsyncDisposable {
  readonly key: string;
  readonly #target: ProtocolTarget;
  readonly #open: TestPeer[] = [];

  constructor(target: ProtocolTarget) {
    this.#target = target;
    this.key = `case-${crypto.randomUUID().slice(0, 8)}`;
  }

  /**
   * Opens peer `index` on this case's key (or on `path` as given).
   *
   * @param index Where it connects (see {@linkcode ProtocolTarget.url}).
   * @param suffix Appended to `/<key>`: `?favored`, `/nested`.
   */
  async open(index: number, suffix = ""): Promise<TestPeer> {
    const peer = await TestPeer.open(
      this.#target.url(`/${this.key}${suffix}`, index),
    );
    this.#open.push(peer);
    return peer;
  }

  /** A peer that opens without waiting (for closes right after the open). */
  start(index: number, path: string): TestPeer {
    const peer = new TestPeer(this.#target.url(path, index));
    this.#open.push(peer);
    return peer;
  }

  /** Waits until the server closed `peer` (driving an in-process clock). */
  closedByServer(peer: TestPeer): Promise<CloseInfo> {
    const server = this.#target.server;
    return server ? closedBy(server, peer) : peer.waitClosed();
  }

  /** Checks some of an in-process server's stats. */
  expectStats(expected: Partial<HubStats>): void {
    const server = this.#target.server;
    if (server === undefined) return;
    assert.deepEqual(_pick(server.handler.stats(), expected), expected);
  }

  /** Waits until some of an in-process server's stats are as expected. */
  async waitStats(expected: Partial<HubStats>, what: string): Promise<void> {
    const server = this.#target.server;
    if (server === undefined) return;
    await waitFor(() => {
      const stats = _pick(server.handler.stats(), expected);
      return JSON.stringify(stats) === JSON.stringify(expected);
    }, what);
  }

  /** The keys of an in-process server's peers, sorted. */
  expectKeys(expected: string[]): void {
    const server = this.#target.server;
    if (server === undefined) return;
    const keys = [...hubOf(server.handler).peers()].map((p) => p.key);
    assert.deepEqual(keys.sort(), [...expected].sort());
  }

  /** How many content messages an in-process server has dropped. */
  dropped(): number {
    const handler = this.#target.server?.handler;
    return handler === undefined ? 0 : hubOf(handler).counters.dropped;
  }

  /** Checks that an in-process server dropped `n` more since `before`. */
  expectDropped(before: number, n: number): void {
    if (this.#target.server === undefined) return;
    assert.equal(this.dropped(), before + n, "dropped content messages");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#open.map((peer) => peer.close()));
  }
}

function _pick(stats: HubStats, expected: Partial<HubStats>) {
  return Object.fromEntries(
    Object.keys(expected).map((name) => [name, stats[name as keyof HubStats]]),
  );
}

/** A peer spoken by hand, for request targets a `WebSocket` would rewrite. */
class _RawPeer implements Disposable {
  readonly #raw: RawSocket;

  private constructor(raw: RawSocket) {
    this.#raw = raw;
  }

  /** Upgrades on `path`, as peer `index` of a case. */
  static async open(
    target: ProtocolTarget,
    path: string,
    index: number,
  ): Promise<_RawPeer> {
    const port = Number(new URL(target.url("/", index)).port);
    return new _RawPeer(await RawSocket.upgrade({ addr: { port } }, path));
  }

  /** The handshake's HTTP status. */
  get status(): number {
    return this.#raw.status;
  }

  /** The handshake's response head. */
  get head(): string {
    return this.#raw.head;
  }

  /** Sends `connect` and returns the `connected` reply. */
  async join(id: number, members: number[] = []): Promise<boolean> {
    await this.#raw.sendFrame(
      _OP_BINARY,
      encodeMessage({ type: "connect", connect: { id, members } }),
    );
    for (;;) {
      const frame = await deadline(this.#raw.readFrame(), WAIT_TIMEOUT);
      assert.ok(frame !== null, "the connection ended");
      if (frame.opcode !== _OP_BINARY) continue;
      const message = decodeMessage(frame.payload);
      if (message?.type === "heartbeat") continue;
      assert.equal(message?.type, "connected", JSON.stringify(message));
      return message.type === "connected" && message.connected;
    }
  }

  [Symbol.dispose](): void {
    this.#raw[Symbol.dispose]();
  }
}

/** Where the only member sits: on the owner, or piped to it. */
const _LAYOUTS = [
  { name: "on the owner node", anchor: false },
  { name: "piped to the owner", anchor: true },
] as const;

/**
 * Opens the member of a case: peer 0 itself, or, piped, peer 1 after peer
 * 0 opened a socket that never joins (it only makes its node the owner).
 * Returns the member and the index the next peer should take.
 */
async function _member(
  peers: _Peers,
  anchor: boolean,
): Promise<{ member: TestPeer; next: number }> {
  if (!anchor) return { member: await peers.open(0), next: 1 };
  await peers.open(0);
  return { member: await peers.open(1), next: 2 };
}

/** Frames a server must close a peer for with 4743, by what is wrong. */
const _BAD_FRAMES: Record<string, string | number[]> = {
  "a text frame": "hello",
  "truncated content": [0x12, 0x05, 0x08],
  "a varint longer than 10 bytes": [0x08, ...Array(10).fill(0xff), 0x01],
  "a wire type not matching the field": [0x0a, 0x00],
  "a truncated tag": [0x80],
  "field number 0": [0x00, 0x01],
  "no type: an empty frame": [],
  "no type: an unknown varint field only": [0x28, 0x01],
  "no type: an unknown length-delimited field only": [0x2a, 0x01, 0x00],
};

/** The table. */
export const PROTOCOL_CASES: readonly ProtocolCase[] = [
  // Membership (PROTOCOL.md rules 1 to 4)
  {
    name:
      "connect creates the group and replies true when the key has no group",
    async run(target) {
      await using peers = new _Peers(target);
      const a = await peers.open(0);
      const b = await peers.open(1);
      assert.equal(await a.join(7), true, "rule 1");
      peers.expectStats({ groups: 1, members: 1 });
      // A is the group's member, with group id 7.
      await bindTo(b, a, 8);
      assert.equal(await b.join(8, [7]), true);
    },
  },
  {
    name: "connect replies true when the only member asks again",
    async run(target) {
      await using peers = new _Peers(target);
      const a = await peers.open(0);
      const b = await peers.open(1);
      assert.equal(await a.join(1), true);
      assert.equal(await a.join(1, [42]), true, "rule 2a");
      assert.equal(await a.join(1), true, "rule 2a");
      peers.expectStats({ members: 1 });
      assert.equal(await b.join(2, [1]), true, "A is still member 1");
    },
  },
  {
    name: "connect adds the peer when it lists any member of the group",
    async run(target) {
      await using peers = new _Peers(target);
      const [a, b, c, d] = [
        await peers.open(0),
        await peers.open(1),
        await peers.open(2),
        await peers.open(3),
      ];
      assert.equal(await a.join(1), true);
      assert.equal(await b.join(2, [9, 1]), true, "rule 2b");
      peers.expectStats({ members: 2, bindings: 0 });
      // Lists only the second member.
      assert.equal(await c.join(3, [2]), true, "rule 3");
      peers.expectStats({ members: 3 });
      // A member asking again with a member in common stays.
      assert.equal(await b.join(2, [3]), true, "rule 3 keeps a member");
      peers.expectStats({ members: 3 });
      // D lists nobody: bound to the first member in join order.
      await bindTo(d, a, 4);
      assert.equal(await d.join(4, [3]), true);
    },
  },
  {
    name:
      "connect replies false and binds the peer to a member when it lists none",
    async run(target) {
      await using peers = new _Peers(target);
      const a = await peers.open(0);
      const b = await peers.open(1);
      assert.equal(await a.join(1), true);
      assert.equal(await b.join(2, [5, 6]), false, "rule 4");
      peers.expectStats({ members: 1, bindings: 1 });
      b.sendContent({ data: "offer" });
      const got = await a.nextContent();
      assert.equal(got.data, "offer");
      assert.ok(got.senderId >= 1 && got.senderId <= 0x7fffffff);
    },
  },
  {
    name: "connect removes a member from its group when it lists no member",
    async run(target) {
      await using peers = new _Peers(target);
      const a = await peers.open(0);
      const b = await peers.open(1);
      const c = await peers.open(2);
      assert.equal(await a.join(1), true);
      assert.equal(await b.join(2, [1]), true);
      assert.equal(await b.join(2, [77]), false, "rule 4 for a member");
      peers.expectStats({ members: 1 });
      // B is no member any more: listing it does not let C in.
      assert.equal(await c.join(3, [2]), false);
      // B was bound to A, the only member left.
      b.sendContent({ data: "again" });
      assert.equal((await a.nextContent()).data, "again");
    },
  },
  ..._LAYOUTS.map(({ name, anchor }): ProtocolCase => ({
    name:
      `connect closes the only member with 4744 when a joiner that tried it connects again (member ${name})`,
    async run(target) {
      await using peers = new _Peers(target);
      const { member: m, next } = await _member(peers, anchor);
      const j = await peers.open(next);
      assert.equal(await m.join(1), true);
      const s = await bindTo(j, m, 2);
      // J tried M and M still is the only member: J replaces it.
      assert.equal(await j.join(2), true, "rule 2c");
      assert.equal((await peers.closedByServer(m)).code, ERR_BLOCKING_MEMBER);
      // J was still listening to M, so it hears that M is gone.
      assert.deepEqual(await j.nextContent(), toJoiner(s, ""));
      // J is now the member, with its own group id.
      const k = await peers.open(next + 1);
      assert.equal(await k.join(3, [2]), true);
      peers.expectStats({ members: 2 });
    },
  })),
  {
    name:
      "connect steers a joiner to favored members first, in join order, then starts over",
    async run(target) {
      await using peers = new _Peers(target);
      const p1 = await peers.open(0);
      const f1 = await peers.open(1, "?favored");
      const f2 = await peers.open(2, "?x=1&favored=0");
      const j = await peers.open(3);
      assert.equal(await p1.join(1), true);
      assert.equal(await f1.join(2, [1]), true);
      assert.equal(await f2.join(3, [1]), true);
      const ids: number[] = [];
      for (const [round, member] of [f1, f2, p1, f1].entries()) {
        assert.equal(await j.join(9), false);
        j.sendContent({ data: `round ${round}` });
        const got = await member.nextContent();
        assert.equal(got.data, `round ${round}`);
        ids.push(got.senderId);
      }
      // Every binding gave the joiner a fresh signaling id.
      assert.equal(new Set(ids).size, ids.length);
    },
  },
  {
    name: "connect clears the tried list when a peer becomes a member",
    async run(target) {
      await using peers = new _Peers(target);
      const m1 = await peers.open(0);
      const m2 = await peers.open(1);
      const j = await peers.open(2);
      assert.equal(await m1.join(1), true);
      await bindTo(j, m1, 2); // J tried M1
      assert.equal(await j.join(2, [1]), true);
      assert.equal(await m2.join(3, [1]), true);
      // J leaves; with a cleared tried list it goes to M1 first again.
      assert.equal(await j.join(2), false);
      j.sendContent({ data: "back" });
      assert.equal((await m1.nextContent()).data, "back");
    },
  },

  // Binding and relaying
  {
    name: "relay rewrites ids both ways between a joiner and its member",
    async run(target) {
      await using peers = new _Peers(target);
      const m = await peers.open(0);
      const j = await peers.open(1);
      assert.equal(await m.join(1), true);
      assert.equal(await j.join(2), false);
      j.sendContent({ senderId: 999, recipientId: 777, data: "offer" });
      const got = await m.nextContent();
      assert.equal(got.recipientId, 0);
      assert.equal(got.data, "offer");
      assert.equal(got.lastData, false);
      const s = got.senderId;
      assert.notEqual(s, 999);
      assert.ok(s >= 1 && s <= 0x7fffffff);
      m.sendContent({ senderId: 5, recipientId: s, data: "answer" });
      assert.deepEqual(await j.nextContent(), toJoiner(s, "answer"));
      // Payload bytes go through untouched, whatever they are.
      const bytes = crypto.getRandomValues(new Uint8Array(1000));
      j.sendContent({ data: bytes });
      const raw = await m.next();
      assert.equal(raw.type, "content");
      assert.deepEqual(
        raw.type === "content" ? new Uint8Array(raw.content.data) : undefined,
        bytes,
      );
    },
  },
  {
    name: "relay stops the joiner-to-member direction after lastData",
    async run(target) {
      await using peers = new _Peers(target);
      const m = await peers.open(0);
      const j = await peers.open(1);
      const j2 = await peers.open(2);
      assert.equal(await m.join(1), true);
      assert.equal(await j.join(2), false);
      j.sendContent({ data: "last", lastData: true });
      const got = await m.nextContent();
      assert.equal(got.data, "last");
      assert.equal(got.lastData, false, "lastData is not forwarded");
      const before = peers.dropped();
      j.sendContent({ data: "too late" });
      // Its reply proves the server handled "too late" (the binding lives on).
      assert.equal(await j.join(2, [1]), true);
      peers.expectDropped(before, 1);
      // The other direction still works.
      m.sendContent({ recipientId: got.senderId, data: "answer" });
      assert.equal((await j.nextContent()).data, "answer");
      // M's next message is the reply to its own connect, not "too late".
      assert.equal(await m.join(1, [2]), true);
      // Marker: the next thing M receives is another joiner's offer.
      assert.equal(await j2.join(3), false);
      j2.sendContent({ data: "marker" });
      assert.equal((await m.nextContent()).data, "marker");
    },
  },
  {
    name: "relay stops the member-to-joiner direction after lastData",
    async run(target) {
      await using peers = new _Peers(target);
      const m = await peers.open(0);
      const j = await peers.open(1);
      assert.equal(await m.join(1), true);
      const s = await bindTo(j, m, 2);
      m.sendContent({ recipientId: s, data: "last", lastData: true });
      assert.deepEqual(await j.nextContent(), toJoiner(s, "last"));
      const before = peers.dropped();
      m.sendContent({ recipientId: s, data: "too late" });
      assert.equal(await m.join(1), true, "M's frames were handled");
      peers.expectDropped(before, 1);
      // The other direction still works.
      j.sendContent({ data: "candidate" });
      assert.equal((await m.nextContent()).data, "candidate");
      // J's next message is the reply to its own connect, not "too late".
      assert.equal(await j.join(2, [1]), true);
    },
  },
  ..._LAYOUTS.map(({ name, anchor }): ProtocolCase => ({
    name:
      `relay tells the joiner its member is gone when the member closes (member ${name})`,
    async run(target) {
      await using peers = new _Peers(target);
      const { member: m, next } = await _member(peers, anchor);
      const j = await peers.open(next);
      assert.equal(await m.join(1), true);
      const s = await bindTo(j, m, 2);
      await m.close();
      assert.deepEqual(await j.nextContent(), toJoiner(s, ""));
      // The group went with its last member: J starts one.
      await peers.waitStats({ groups: 0 }, "the group to go");
      peers.expectStats({ bindings: 0 });
      assert.equal(await j.join(2), true);
    },
  })),
  ..._LAYOUTS.map(({ name, anchor }): ProtocolCase => ({
    name:
      `relay tells the member a joiner is gone when the joiner closes (member ${name})`,
    async run(target) {
      await using peers = new _Peers(target);
      const { member: m, next } = await _member(peers, anchor);
      const j = await peers.open(next);
      assert.equal(await m.join(1), true);
      const s = await bindTo(j, m, 2);
      await j.close();
      assert.deepEqual(await m.nextContent(), fromJoiner(s, ""));
    },
  })),
  {
    name:
      "relay keeps several joiners of one member apart by their signaling ids",
    async run(target) {
      await using peers = new _Peers(target);
      const m = await peers.open(0);
      const joiners = [
        await peers.open(1),
        await peers.open(2),
        await peers.open(3),
      ];
      assert.equal(await m.join(1), true);
      const ids: number[] = [];
      for (const [i, j] of joiners.entries()) {
        ids.push(await bindTo(j, m, 10 + i, `offer ${i}`));
      }
      assert.equal(new Set(ids).size, 3);
      // Answer in reverse order: each joiner gets its own answer only.
      for (const i of [2, 1, 0]) {
        m.sendContent({ recipientId: ids[i], data: `answer ${i}` });
      }
      for (const [i, j] of joiners.entries()) {
        assert.deepEqual(
          await j.nextContent(),
          toJoiner(ids[i], `answer ${i}`),
        );
      }
      // A gone joiner is reported with its own id.
      await joiners[1].close();
      assert.deepEqual(await m.nextContent(), fromJoiner(ids[1], ""));
    },
  },
  {
    name: "relay keeps a binding when the joiner becomes a member",
    async run(target) {
      await using peers = new _Peers(target);
      const m = await peers.open(0);
      const j = await peers.open(1);
      assert.equal(await m.join(1), true);
      const s = await bindTo(j, m, 2);
      assert.equal(await j.join(2, [1]), true);
      j.sendContent({ data: "candidate" });
      assert.deepEqual(await m.nextContent(), fromJoiner(s, "candidate"));
      m.sendContent({ recipientId: s, data: "candidate back" });
      assert.equal((await j.nextContent()).data, "candidate back");
    },
  },
  {
    name:
      "relay sends a member's answer to its own joiner only, not to its old member",
    async run(target) {
      await using peers = new _Peers(target);
      const m = await peers.open(0);
      const j = await peers.open(1, "?favored");
      const k = await peers.open(2);
      assert.equal(await m.join(1), true);
      const sj = await bindTo(j, m, 2);
      assert.equal(await j.join(2, [1]), true); // J is a member, still bound to M
      // K is steered to J, the favored member.
      const sk = await bindTo(k, j, 3);
      j.sendContent({ recipientId: sk, data: "answer for K" });
      assert.deepEqual(await k.nextContent(), toJoiner(sk, "answer for K"));
      // J's own binding to M still works; M's next message is this, not K's
      // answer.
      j.sendContent({ data: "for M" });
      assert.deepEqual(await m.nextContent(), fromJoiner(sj, "for M"));
    },
  },
  {
    name: "relay drops content that matches no binding",
    async run(target) {
      await using peers = new _Peers(target);
      const a = await peers.open(0);
      const j = await peers.open(1);
      const b = await peers.open(2);
      const stranger = await peers.open(3, "-elsewhere");
      assert.equal(await a.join(1), true);
      const s = await bindTo(j, a, 3);
      assert.equal(await b.join(2, [1]), true);
      const before = peers.dropped();
      // B is bound to nobody and J is A's joiner, not B's.
      b.sendContent({ data: "to nobody" });
      b.sendContent({ recipientId: s, data: "not my joiner" });
      // A peer that never sent connect.
      stranger.sendContent({ recipientId: s, data: "stranger" });
      // The replies prove both were handled before the markers below.
      assert.equal(await b.join(2, [1]), true);
      assert.equal(await stranger.join(9), true);
      peers.expectDropped(before, 3);
      a.sendContent({ recipientId: s, data: "marker for J" });
      assert.equal((await j.nextContent()).data, "marker for J");
      j.sendContent({ data: "marker for A" });
      assert.equal((await a.nextContent()).data, "marker for A");
      assert.equal(b.pending + stranger.pending, 0);
    },
  },

  // Keys
  {
    name: "key keeps percent-encoding as it arrives",
    async run(target) {
      await using peers = new _Peers(target);
      const a = await peers.open(0, "%20b");
      const b = await peers.open(1, "%20b");
      const c = await peers.open(2, "%2Fb");
      const d = await peers.open(3, "/b");
      assert.equal(await a.join(1), true);
      assert.equal(await b.join(2), false, "same key, same group");
      // Decoded, `%2Fb` would be `/b`: they must stay two groups.
      assert.equal(await c.join(3), true);
      assert.equal(await d.join(4), true);
      const { key } = peers;
      peers.expectKeys([`${key}%20b`, `${key}%20b`, `${key}%2Fb`, `${key}/b`]);
    },
  },
  {
    name: "key includes every path segment when the path is nested",
    async run(target) {
      await using peers = new _Peers(target);
      const ab = await peers.open(0, "/a/b");
      const a = await peers.open(1, "/a");
      const b = await peers.open(2, "/b");
      const ab2 = await peers.open(3, "/a/b");
      assert.equal(await ab.join(1), true);
      assert.equal(await a.join(2), true);
      assert.equal(await b.join(3), true);
      assert.equal(await ab2.join(4), false, "same nested key, same group");
      peers.expectStats({ groups: 3 });
    },
  },
  {
    name: "key leaves out the query string when the URL has one",
    async run(target) {
      await using peers = new _Peers(target);
      const a = await peers.open(0, "?favored");
      const b = await peers.open(1);
      const c = await peers.open(2, "?x=1");
      assert.equal(await a.join(1), true);
      assert.equal(await b.join(2), false);
      assert.equal(await c.join(3), false);
      peers.expectStats({ groups: 1 });
      peers.expectKeys([peers.key, peers.key, peers.key]);
      b.sendContent({ data: "b" });
      c.sendContent({ data: "c" });
      const got = [(await a.nextContent()).data, (await a.nextContent()).data];
      assert.deepEqual(got.sort(), ["b", "c"]);
    },
  },

  {
    name:
      "key keeps a path that URL parsing would rewrite (dot segments, backslash, braces)",
    async run(target) {
      // A WebSocket client normalizes its URL before sending it; a raw one
      // sends the path as it is, and the server takes it as it arrives.
      const key = `case-${crypto.randomUUID().slice(0, 8)}`;
      for (const suffix of ["/x/../y", "/./z", "\\b", "{1}"]) {
        const path = `/${key}${suffix}`;
        using member = await _RawPeer.open(target, path, 0);
        using joiner = await _RawPeer.open(target, path, 1);
        assert.equal(member.status, 101, `${path}: ${member.head}`);
        assert.equal(joiner.status, 101, `${path}: ${joiner.head}`);
        assert.equal(await member.join(1), true, path);
        assert.equal(await joiner.join(2), false, `${path}: the same group`);
      }
    },
  },

  // Close codes
  {
    name:
      "server closes with 4741 after the socket opened when the key is empty or too long",
    async run(target) {
      await using peers = new _Peers(target);
      const paths = [
        "/",
        "/?favored",
        "/?a=1",
        "/" + "k".repeat(513),
        // 171 percent-encoded bytes, measured as they arrive.
        "/" + "%41".repeat(171),
      ];
      for (const [i, path] of paths.entries()) {
        const peer = peers.start(i, path);
        await peer.opened; // an HTTP error would reject: the socket opened
        assert.equal((await peers.closedByServer(peer)).code, ERR_KEY, path);
      }
      const ok = await peers.open(
        paths.length,
        "k".repeat(512 - peers.key.length),
      );
      assert.equal(await ok.join(1), true, "512 characters is accepted");
    },
  },
  ..._LAYOUTS.map(({ name, anchor }): ProtocolCase => ({
    name:
      `server closes with 4743 a peer that sends a text or undecodable frame (peer ${name})`,
    async run(target) {
      await using peers = new _Peers(target);
      const first = anchor ? 1 : 0;
      if (anchor) await peers.open(0);
      for (const [i, [what, frame]] of Object.entries(_BAD_FRAMES).entries()) {
        // The same node each time: the owner's, or one that pipes to it.
        const peer = await peers.open(first + i * 3);
        await peer.join(10 + i);
        peer.sendRaw(typeof frame === "string" ? frame : new Uint8Array(frame));
        const info = await peers.closedByServer(peer);
        assert.equal(info.code, ERR_MESSAGE, what);
        assert.notEqual(info.reason, "", "the reason comes with the code");
      }
    },
  })),
];

/**
 * Runs every case as a step of `t`, all against one target.
 *
 * @param t The test.
 * @param target Where peers connect.
 */
export async function runProtocolCases(
  t: Deno.TestContext,
  target: ProtocolTarget,
): Promise<void> {
  for (const c of PROTOCOL_CASES) {
    await t.step(c.name, () => c.run(target));
  }
}
