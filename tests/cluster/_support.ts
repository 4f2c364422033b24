/**
 * What the cluster tests share: fresh keys, peers closed at the end of a
 * test, a peer that answers the heartbeats it gets, a look at the
 * cluster's keys in Redis, fake Redis servers that answer garbage or
 * nothing, and one-line checks of the nodes' views.
 *
 * @module
 */

import assert from "node:assert/strict";
import { RedisClient } from "../../cluster/redis.ts";
import type { LocalCluster } from "../../dev/cluster/local_cluster.ts";
import type { SigverNode } from "../../dev/cluster/node.ts";
import { bindTo, TestPeer, waitFor } from "../_helpers.ts";

export { waitFor };

/** The cluster's Redis prefix (the nodes run with the default). */
export const PREFIX = "sigver:";

/**
 * A key no other test uses.
 *
 * @param name What the key is for, its prefix.
 * @returns `<name>-<8 random hex digits>`.
 */
export function uniqueKey(name: string): string {
  return `${name}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Closes peers at the end of a test, whatever state they are in: those in
 * `peers` when it is disposed, so a test may push more.
 *
 * @param peers The peers.
 * @returns Closes them when disposed.
 */
export function closing(peers: TestPeer[]): AsyncDisposable {
  return {
    [Symbol.asyncDispose]: async () => {
      await Promise.all(peers.map((peer) => peer.close()));
    },
  };
}

/**
 * Answers every heartbeat a peer receives, as Netflux does, until disposed
 * or the peer closes: for peers that must live longer than three heartbeat
 * periods.
 *
 * @param peers The peers.
 * @returns Stops answering when disposed.
 */
export function answerHeartbeats(...peers: TestPeer[]): Disposable {
  const answered = new Map(peers.map((peer) => [peer, peer.heartbeats]));
  const timer = setInterval(() => {
    for (const [peer, count] of answered) {
      if (peer.isClosed) continue;
      for (let i = count; i < peer.heartbeats; i++) peer.sendHeartbeat();
      answered.set(peer, peer.heartbeats);
    }
  }, 20);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}

/**
 * A new key is served by `node`: a member and a joiner on it, bound, relay
 * an answer.
 *
 * @param node The node.
 * @param peers Where the two peers go, to be closed with the test's.
 * @returns The key, and the milliseconds it took.
 */
export async function newKeyServed(
  node: SigverNode,
  peers: TestPeer[],
): Promise<{ key: string; took: number }> {
  const start = performance.now();
  const key = uniqueKey("new");
  const a = await TestPeer.open(`${node.url}/${key}`);
  const b = await TestPeer.open(`${node.url}/${key}`);
  peers.push(a, b);
  assert.equal(await a.join(1), true);
  const s = await bindTo(b, a, 2);
  a.sendContent({ recipientId: s, data: "answer" });
  assert.equal((await b.nextContent()).data, "answer");
  return { key, took: since(start) };
}

/**
 * The owners of the cluster's leases in Redis: group key to node id.
 *
 * @param url The Redis URL.
 * @returns The `lease:` keys, without the prefix, and their values.
 */
export async function leases(url: string): Promise<Map<string, string>> {
  await using redis = new RedisClient(url, { commandTimeout: 2000 });
  const keys = await redis.command("KEYS", `${PREFIX}lease:*`) as string[];
  if (keys.length === 0) return new Map();
  const owners = await redis.command("MGET", ...keys) as (string | null)[];
  const found = new Map<string, string>();
  for (const [i, key] of keys.entries()) {
    if (owners[i] !== null) {
      found.set(key.slice(`${PREFIX}lease:`.length), owners[i]!);
    }
  }
  return found;
}

/** What a node's `/cluster` view says, for one-line checks. */
export async function views(
  cluster: LocalCluster,
): Promise<
  {
    node: SigverNode;
    id: string;
    owned: number;
    pipedIn: number;
    pipedOut: number;
  }[]
> {
  const running = cluster.nodes.filter((node) => node.running);
  return await Promise.all(running.map(async (node) => {
    const view = await node.view();
    return {
      node,
      id: view.node,
      owned: view.ownedGroups,
      pipedIn: view.pipedIn,
      pipedOut: view.pipedOut,
    };
  }));
}

/**
 * Waits until every node has released every pipe and lease: what each
 * test's peers leave behind once they closed.
 *
 * @param cluster The cluster.
 */
export async function clusterSettled(cluster: LocalCluster): Promise<void> {
  let last = "";
  try {
    await waitFor(async () => {
      const all = await views(cluster);
      last = JSON.stringify(all.map(({ owned, pipedIn, pipedOut }) => ({
        owned,
        pipedIn,
        pipedOut,
      })));
      return all.every((v) => v.owned + v.pipedIn + v.pipedOut === 0);
    }, "the nodes to release every group and pipe");
  } catch (error) {
    throw new Error(`${(error as Error).message}: ${last}`);
  }
}

/** How a fake Redis answers. */
export type FakeRedisMode = "garbage" | "silent";

/**
 * A TCP listener on 127.0.0.1 that passes for Redis badly: `garbage`
 * answers every read with bytes that are no RESP, `silent` accepts and
 * never answers. Dispose of it to close it and every connection.
 *
 * @param mode How it answers.
 * @param port A port to listen on (0: a free one).
 * @returns The listener's URL and port.
 */
export function fakeRedis(
  mode: FakeRedisMode,
  port = 0,
): AsyncDisposable & { url: string; port: number; connections: number } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns = new Set<Deno.Conn>();
  const state = { connections: 0 };
  const serveOne = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        if (mode === "garbage") {
          await conn.write(
            new TextEncoder().encode("%%% not redis\r\n\x00\xff"),
          );
        }
      }
    } catch {
      // Closed by either side.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  const serving: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        state.connections++;
        conns.add(conn);
        serving.push(serveOne(conn));
      }
    } catch {
      // The listener closed.
    }
  })();
  return {
    url: `redis://127.0.0.1:${listener.addr.port}`,
    port: listener.addr.port,
    get connections() {
      return state.connections;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await accepting;
      await Promise.all(serving);
    },
  };
}

/**
 * Milliseconds since `start` (a `performance.now()`), rounded.
 *
 * @param start The start.
 * @returns The time since.
 */
export function since(start: number): number {
  return Math.round(performance.now() - start);
}
