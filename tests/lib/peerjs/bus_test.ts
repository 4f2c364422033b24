/**
 * The hub on a cluster, with a fake bus: hubs share ids and carry messages
 * through an in-memory stand-in for Redis, each answer awaited explicitly.
 */

import assert from "node:assert/strict";
import type { PeerTransport } from "../../../lib/protocol.ts";
import type {
  PeerjsBus,
  PeerjsBusEvents,
  PeerjsBusFactory,
} from "../../../lib/peerjs/bus.ts";
import { MSG_TAKEN, PeerjsHub } from "../../../lib/peerjs/hub.ts";

class FakeTransport implements PeerTransport {
  readonly sent: { type: string; src?: string; dst?: string }[] = [];
  closed: { code: number; reason: string } | undefined;

  send(frame: Uint8Array | string): void {
    this.sent.push(JSON.parse(frame as string));
  }

  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }

  types(): string[] {
    return this.sent.map((m) => m.type);
  }
}

/** An in-memory cluster: claims in a map, events handed over directly. */
class FakeCluster {
  readonly claims = new Map<string, { node: number; token: string }>();
  readonly nodes: PeerjsBusEvents[] = [];
  /** Claims are made locally, sends find nobody: Redis is away. */
  down = false;
  #pending: Promise<unknown>[] = [];

  bus(): PeerjsBusFactory {
    return (events) => {
      const node = this.nodes.push(events) - 1;
      return this.#bus(node);
    };
  }

  /** Waits until every answer the buses gave has reached its hub. */
  async settle(): Promise<void> {
    while (this.#pending.length > 0) {
      await Promise.all(this.#pending.splice(0));
    }
  }

  #answer<T>(value: T): Promise<T> {
    const promise = Promise.resolve(value);
    this.#pending.push(promise);
    return promise;
  }

  #bus(node: number): PeerjsBus {
    return {
      claim: (key, id, token) => {
        if (this.down) return this.#answer(true);
        const name = `${key}\n${id}`;
        const held = this.claims.get(name);
        if (held !== undefined && held.token !== token) {
          return this.#answer(false);
        }
        this.claims.set(name, { node, token });
        if (held !== undefined && held.node !== node) {
          this.nodes[held.node].evict(key, id, "replaced");
        }
        for (const [n, events] of this.nodes.entries()) {
          if (n !== node) events.arrived(key, id);
        }
        return this.#answer(true);
      },
      release: (key, id) => {
        const name = `${key}\n${id}`;
        if (this.claims.get(name)?.node === node) this.claims.delete(name);
      },
      send: (key, dst, frame) => {
        const held = this.claims.get(`${key}\n${dst}`);
        if (this.down || held === undefined || held.node === node) {
          return this.#answer(false);
        }
        this.nodes[held.node].deliver(key, dst, frame);
        return this.#answer(true);
      },
      close: () => {},
    };
  }
}

function connect(hub: PeerjsHub, id: string, token = `t-${id}`) {
  const transport = new FakeTransport();
  const client = hub.connect(transport, { key: "peerjs", id, token });
  return { transport, client };
}

const OFFER = (dst: string) =>
  JSON.stringify({ type: "OFFER", dst, payload: { sdp: "v=0" } });

function twoHubs(cluster = new FakeCluster()) {
  const options = { bus: cluster.bus(), expireTicks: 5 };
  return { cluster, a: new PeerjsHub(options), b: new PeerjsHub(options) };
}

Deno.test("PeerjsHub answers OPEN only once the bus holds the id", async () => {
  const { cluster, a } = twoHubs();
  const alice = connect(a, "alice");
  assert.deepEqual(alice.transport.sent, []);
  await cluster.settle();
  assert.deepEqual(alice.transport.types(), ["OPEN"]);
  assert.equal(cluster.claims.get("peerjs\nalice")?.node, 0);
});

Deno.test("PeerjsHub answers ID-TAKEN when another node holds the id with another token", async () => {
  const { cluster, a, b } = twoHubs();
  connect(a, "alice", "t1");
  await cluster.settle();
  const other = connect(b, "alice", "t2");
  await cluster.settle();
  assert.deepEqual(other.transport.sent, [{
    type: "ID-TAKEN",
    payload: { msg: MSG_TAKEN },
  }]);
  assert.equal(other.transport.closed?.code, 1008);
  assert.equal(b.size, 0);
  assert.equal(b.holds("peerjs", "alice"), false);
});

Deno.test("PeerjsHub gives an id up when the same token takes it on another node", async () => {
  const { cluster, a, b } = twoHubs();
  const first = connect(a, "alice", "t1");
  await cluster.settle();
  const second = connect(b, "alice", "t1");
  await cluster.settle();
  assert.deepEqual(second.transport.types(), ["OPEN"]);
  assert.equal(first.transport.closed?.code, 1000);
  assert.equal(a.size, 0);
  assert.equal(a.counters.replaced, 1);
  assert.equal(cluster.claims.get("peerjs\nalice")?.node, 1);
});

Deno.test("PeerjsHub relays to an id on another node with src set by the server", async () => {
  const { cluster, a, b } = twoHubs();
  const alice = connect(a, "alice");
  const bob = connect(b, "bob");
  await cluster.settle();
  a.receive(alice.client!, OFFER("bob"));
  await cluster.settle();
  assert.deepEqual(bob.transport.sent.at(-1), {
    type: "OFFER",
    src: "alice",
    dst: "bob",
    payload: { sdp: "v=0" },
  });
  assert.equal(a.counters.crossed, 1);
  assert.equal(b.counters.received, 1);
});

Deno.test("PeerjsHub holds a pending client's frames until its OPEN", async () => {
  const { cluster, a, b } = twoHubs();
  const bob = connect(b, "bob");
  await cluster.settle();
  const alice = connect(a, "alice");
  a.receive(alice.client!, OFFER("bob"));
  assert.equal(bob.transport.sent.length, 1);
  await cluster.settle();
  assert.deepEqual(alice.transport.types(), ["OPEN"]);
  assert.deepEqual(bob.transport.types(), ["OPEN", "OFFER"]);
});

Deno.test("PeerjsHub forwards what it queued when the id arrives on another node", async () => {
  const { cluster, a, b } = twoHubs();
  const alice = connect(a, "alice");
  await cluster.settle();
  a.receive(alice.client!, OFFER("carol"));
  await cluster.settle();
  assert.equal(a.queued, 1);
  const carol = connect(b, "carol");
  await cluster.settle();
  assert.deepEqual(carol.transport.types(), ["OPEN", "OFFER"]);
  assert.equal(carol.transport.sent[1].src, "alice");
  assert.equal(a.queued, 0);
  for (let i = 0; i < 10; i++) a.tick();
  assert.deepEqual(alice.transport.types(), ["OPEN"]);
});

Deno.test("PeerjsHub sends EXPIRE when the id connects on no node", async () => {
  const { cluster, a } = twoHubs();
  const alice = connect(a, "alice");
  await cluster.settle();
  a.receive(alice.client!, OFFER("carol"));
  await cluster.settle();
  for (let i = 0; i < 10; i++) a.tick();
  assert.deepEqual(alice.transport.sent.at(-1), {
    type: "EXPIRE",
    src: "carol",
    dst: "alice",
  });
});

Deno.test("PeerjsHub serves its own ids when the bus is down", async () => {
  const cluster = new FakeCluster();
  cluster.down = true;
  const { a } = twoHubs(cluster);
  const alice = connect(a, "alice");
  const bob = connect(a, "bob");
  await cluster.settle();
  a.receive(alice.client!, OFFER("bob"));
  assert.deepEqual(bob.transport.types(), ["OPEN", "OFFER"]);
});

Deno.test("PeerjsHub releases an id when its client leaves", async () => {
  const { cluster, a, b } = twoHubs();
  const alice = connect(a, "alice", "t1");
  await cluster.settle();
  a.forget(alice.client!);
  const again = connect(b, "alice", "t2");
  await cluster.settle();
  assert.deepEqual(again.transport.types(), ["OPEN"]);
});

Deno.test("PeerjsHub releases an id whose client left while it was pending", async () => {
  const { cluster, a, b } = twoHubs();
  const alice = connect(a, "alice", "t1");
  a.forget(alice.client!);
  await cluster.settle();
  assert.deepEqual(alice.transport.sent, []);
  const again = connect(b, "alice", "t2");
  await cluster.settle();
  assert.deepEqual(again.transport.types(), ["OPEN"]);
});
