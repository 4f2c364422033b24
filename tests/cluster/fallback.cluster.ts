/**
 * The WebSocket-free fallback on a cluster: a fallback peer that arrives at
 * a node that does not own its group is piped to the owner like a
 * WebSocket peer, and relays with the owner's own peers both ways; the
 * owner's closes come down its stream as close events.
 *
 * The fallback is spoken by hand (fetch, `SseParser`), as in
 * `tests/fallback_test.ts`. Run with `deno task test:cluster` (real
 * redis-server and processes).
 */

import assert from "node:assert/strict";
import { type SigverNode, startCluster } from "../../dev/cluster.ts";
import { deadline } from "../../deadline.ts";
import { type SseEvent, SseParser } from "../../lib/sse.ts";
import { type Content, decodeMessage, encodeMessage } from "../../lib/wire.ts";
import type { Message } from "../../lib/wire.ts";
import { TestPeer, WAIT_TIMEOUT } from "../_helpers.ts";
import { answerHeartbeats, clusterSettled, views } from "./_support.ts";

/**
 * A fallback peer on one node: it reads its stream in the background,
 * answers heartbeats with a POST, and queues every other message.
 */
class FallbackPeer implements AsyncDisposable {
  readonly url: string;
  readonly id: string;
  /** The close event's data, once it came. */
  close: { code: number; reason: string } | undefined;
  readonly #queue: Message[] = [];
  #wake: (() => void) | undefined;
  readonly #reading: Promise<void>;
  readonly #abort: AbortController;
  readonly #answers = new Set<Promise<void>>();

  private constructor(
    url: string,
    id: string,
    reader: ReadableStreamDefaultReader<string>,
    parser: SseParser,
    abort: AbortController,
  ) {
    this.url = url;
    this.id = id;
    this.#abort = abort;
    this.#reading = this.#read(reader, parser);
  }

  static async open(node: SigverNode, path: string): Promise<FallbackPeer> {
    const url = `${node.http}${path}`;
    const abort = new AbortController();
    const response = await fetch(url, {
      headers: { accept: "text/event-stream" },
      signal: abort.signal,
    });
    if (response.status !== 200) {
      throw new Error(`Expected 200, got ${response.status}: ${await response
        .text()}`);
    }
    const reader = response.body!.pipeThrough(new TextDecoderStream())
      .getReader();
    const parser = new SseParser();
    for (;;) {
      const { value, done } = await reader.read();
      assert.ok(!done, "the stream ended before its session event");
      const [first, ...rest] = parser.push(value);
      if (first === undefined) continue;
      assert.equal(first.event, "session");
      const peer = new FallbackPeer(url, first.data, reader, parser, abort);
      peer.#events(rest);
      return peer;
    }
  }

  /** POSTs one message; it must get 204. */
  async send(message: Message | Uint8Array): Promise<void> {
    const body = message instanceof Uint8Array
      ? message
      : encodeMessage(message);
    const response = await fetch(`${this.url}?session=${this.id}`, {
      method: "POST",
      body: body.slice(),
    });
    assert.equal(response.status, 204, await response.text());
  }

  async join(id: number, members: number[] = []): Promise<boolean> {
    await this.send({ type: "connect", connect: { id, members } });
    const reply = await this.next();
    assert.equal(reply.type, "connected", JSON.stringify(reply));
    return (reply as { connected: boolean }).connected;
  }

  async nextContent(): Promise<Omit<Content, "data"> & { data: string }> {
    const message = await this.next();
    assert.equal(message.type, "content", JSON.stringify(message));
    const { content } = message as { content: Content };
    return { ...content, data: new TextDecoder().decode(content.data) };
  }

  /** The next message that is not a heartbeat. */
  async next(): Promise<Message> {
    await deadline(
      (async () => {
        while (this.#queue.length === 0 && this.close === undefined) {
          await new Promise<void>((resolve) => this.#wake = resolve);
        }
      })(),
      WAIT_TIMEOUT,
      "a message",
    );
    const message = this.#queue.shift();
    if (message === undefined) {
      throw new Error(`Expected a message, got close ${this.close?.code}`);
    }
    return message;
  }

  /** Waits for the stream to end, and returns its close event's data. */
  async closed(): Promise<{ code: number; reason: string } | undefined> {
    await deadline(this.#reading, WAIT_TIMEOUT, "the stream to end");
    return this.close;
  }

  /** Answers a heartbeat; a session that ended meanwhile gets 404. */
  #answer(): void {
    this.#answers.add(
      fetch(`${this.url}?session=${this.id}`, {
        method: "POST",
        body: encodeMessage({ type: "heartbeat", heartbeat: true }).slice(),
      }).then((response) => response.body?.cancel()),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#answers);
    if (this.close === undefined) {
      const response = await fetch(`${this.url}?session=${this.id}`, {
        method: "DELETE",
      });
      await response.body?.cancel();
    }
    this.#abort.abort();
    await this.#reading;
  }

  async #read(
    reader: ReadableStreamDefaultReader<string>,
    parser: SseParser,
  ): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#events(parser.push(value));
      }
    } catch {
      // Aborted.
    }
    this.#wake?.();
  }

  #events(events: SseEvent[]): void {
    for (const event of events) {
      if (event.event === "close") {
        this.close = JSON.parse(event.data);
        continue;
      }
      const bytes = Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0));
      const message = decodeMessage(bytes)!;
      if (message.type === "heartbeat") this.#answer();
      else this.#queue.push(message);
    }
    this.#wake?.();
  }
}

Deno.test("a fallback peer on an edge node is piped to the owner and relays with its WebSocket peer", async (t) => {
  await using cluster = await startCluster({ nodes: 2, balancer: "none" });
  const [owner, edge] = cluster.nodes;
  const key = `sse-${crypto.randomUUID().slice(0, 8)}`;
  // The first peer makes its node the owner of the key.
  await using member = await TestPeer.open(`${owner.url}/${key}`);
  using _answer = answerHeartbeats(member);
  assert.equal(await member.join(1), true);

  await t.step("join, bind, relay both ways, gone", async () => {
    const joiner = await FallbackPeer.open(edge, `/${key}`);
    const [ownerView, edgeView] = await views(cluster);
    assert.equal(edgeView.pipedOut, 1, "the edge pipes the session");
    assert.equal(ownerView.pipedIn, 1, "the owner holds it");
    assert.equal(await joiner.join(2), false);
    await joiner.send({
      type: "content",
      content: {
        senderId: 0,
        recipientId: 0,
        lastData: false,
        data: new TextEncoder().encode("offer"),
      },
    });
    const offer = await member.nextContent();
    assert.equal(offer.data, "offer");
    assert.equal(offer.recipientId, 0);
    const s = offer.senderId;
    member.sendContent({ recipientId: s, data: "answer" });
    assert.deepEqual(await joiner.nextContent(), {
      senderId: 0,
      recipientId: s,
      lastData: false,
      data: "answer",
    });
    assert.equal(await joiner.join(2, [1]), true);
    await joiner[Symbol.asyncDispose]();
    assert.deepEqual(await member.nextContent(), {
      senderId: s,
      recipientId: 0,
      lastData: false,
      data: "",
    });
  });

  await t.step("the owner's close comes down the edge's stream", async () => {
    await using peer = await FallbackPeer.open(edge, `/${key}`);
    await peer.send(new Uint8Array([0xff, 0xff]));
    const close = await peer.closed();
    assert.equal(close?.code, 4743);
  });

  await member.close();
  await clusterSettled(cluster);
});

Deno.test("a fallback session's POSTs and DELETE reach it from any node", async (t) => {
  await using cluster = await startCluster({ nodes: 3, balancer: "none" });
  const [home, second, third] = cluster.nodes;
  const key = `sse-${crypto.randomUUID().slice(0, 8)}`;
  await using member = await TestPeer.open(`${home.url}/${key}`);
  using _answer = answerHeartbeats(member);
  assert.equal(await member.join(1), true);
  const peer = await FallbackPeer.open(home, `/${key}`);

  await t.step("frames POSTed to other nodes reach the session", async () => {
    // As a round-robin balancer would spread them: the connect through one
    // node, the content (below) through another.
    const connect = await fetch(`${second.http}/${key}?session=${peer.id}`, {
      method: "POST",
      body: encodeMessage({
        type: "connect",
        connect: { id: 2, members: [] },
      }).slice(),
    });
    assert.equal(connect.status, 204, await connect.text());
    assert.deepEqual(await peer.next(), {
      type: "connected",
      connected: false,
    });
    const response = await fetch(`${third.http}/${key}?session=${peer.id}`, {
      method: "POST",
      body: encodeMessage({
        type: "content",
        content: {
          senderId: 0,
          recipientId: 0,
          lastData: false,
          data: new TextEncoder().encode("offer"),
        },
      }).slice(),
    });
    assert.equal(response.status, 204);
    assert.equal((await member.nextContent()).data, "offer");
  });

  await t.step(
    "another node answers 403 and 404 as the session's own would",
    async () => {
      const other = await fetch(`${second.http}/other?session=${peer.id}`, {
        method: "POST",
        body: new Uint8Array([0x08, 0x01]),
      });
      assert.equal(other.status, 403, await other.text());
      const forged = peer.id.slice(0, 16) + "AAAAAAAAAAAAAAAA";
      const unknown = await fetch(`${second.http}/${key}?session=${forged}`, {
        method: "POST",
        body: new Uint8Array([0x08, 0x01]),
      });
      assert.equal(unknown.status, 404, await unknown.text());
    },
  );

  await t.step("a DELETE through another node ends it", async () => {
    const response = await fetch(`${second.http}/${key}?session=${peer.id}`, {
      method: "DELETE",
    });
    assert.equal(response.status, 204);
    assert.equal(await peer.closed(), undefined, "no close event on DELETE");
    const gone = await member.nextContent();
    assert.equal(gone.data, "", "the member hears the joiner is gone");
  });
  await peer[Symbol.asyncDispose]();
  await member.close();
  await clusterSettled(cluster);
});

Deno.test("a fallback session works through a round-robin balancer", async () => {
  await using cluster = await startCluster({
    nodes: 3,
    balancer: "round-robin",
  });
  const balancer = cluster.balancer!;
  const key = `sse-${crypto.randomUUID().slice(0, 8)}`;
  await using member = await TestPeer.open(`${balancer.url}/${key}`);
  using _answer = answerHeartbeats(member);
  assert.equal(await member.join(1), true);
  const entry = { http: balancer.http } as SigverNode;
  await using joiner = await FallbackPeer.open(entry, `/${key}`);
  // Every request goes to the next node: the session's own on one in three.
  assert.equal(await joiner.join(2), false);
  for (let i = 0; i < 6; i++) {
    await joiner.send({
      type: "content",
      content: {
        senderId: 0,
        recipientId: 0,
        lastData: false,
        data: new TextEncoder().encode(`offer ${i}`),
      },
    });
    assert.equal((await member.nextContent()).data, `offer ${i}`);
  }
  assert.equal(await joiner.join(2, [1]), true);
  await joiner[Symbol.asyncDispose]();
  await member.close();
  await clusterSettled(cluster);
});
