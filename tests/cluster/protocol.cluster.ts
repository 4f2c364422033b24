/**
 * The wire contract across nodes: the protocol case table
 * (`tests/_protocol_cases.ts`, also run in process by `server_test.ts`) run
 * against one CLI server and against a 3-node cluster whose peers connect
 * to different nodes, and heartbeats that pass end to end through a pipe.
 *
 * Run with `deno task test:cluster` (real redis-server and processes).
 */

import assert from "node:assert/strict";
import { startCluster } from "../../dev/cluster.ts";
import { Cli, cliArgs } from "../_cli.ts";
import { TestPeer } from "../_helpers.ts";
import { runProtocolCases } from "../_protocol_cases.ts";
import { answerHeartbeats, clusterSettled, since, views } from "./_support.ts";

Deno.test("protocol cases hold on a single server", async (t) => {
  await using server = new Cli(cliArgs());
  const port = await server.port();
  await runProtocolCases(t, {
    url: (path) => `ws://127.0.0.1:${port}${path}`,
  });
});

Deno.test("protocol cases hold when the peers of a group are on three nodes", async (t) => {
  await using cluster = await startCluster({ nodes: 3, balancer: "none" });
  const url = (path: string, index: number) =>
    `${cluster.nodes[index % 3].url}${path}`;
  await t.step(
    "peer 0's node owns the key, peers 1 and 2 are piped",
    async () => {
      const path = `/layout-${crypto.randomUUID().slice(0, 8)}`;
      await using a = await TestPeer.open(url(path, 0));
      await using b = await TestPeer.open(url(path, 1));
      await using c = await TestPeer.open(url(path, 2));
      assert.equal(await a.join(1), true);
      assert.equal(await b.join(2, [1]), true);
      assert.equal(await c.join(3, [2]), true);
      const all = await views(cluster);
      assert.deepEqual(
        all.map(({ owned, pipedIn, pipedOut }) => ({
          owned,
          pipedIn,
          pipedOut,
        })),
        [
          { owned: 1, pipedIn: 2, pipedOut: 0 },
          { owned: 0, pipedIn: 0, pipedOut: 1 },
          { owned: 0, pipedIn: 0, pipedOut: 1 },
        ],
      );
    },
  );
  await runProtocolCases(t, { url });
  // Each case piped peers to the owner of its key, and every pipe and lease
  // went with the peers.
  await clusterSettled(cluster);
  const served = await Promise.all(
    cluster.nodes.map((node) => node.metric("sigver_connections_total")),
  );
  assert.ok(served.every((n) => n > 0), `connections by node: ${served}`);
});

Deno.test("heartbeats pass end to end through a pipe: a silent piped peer gets two then 4742", async () => {
  // The owner beats every second, the edge every 3 s: a piped peer's beats
  // show whose they are.
  await using cluster = await startCluster({
    nodes: 2,
    balancer: "none",
    nodeArgs: (i) => ["--heartbeat-interval", i === 0 ? "1" : "3"],
  });
  const [owner, edge] = cluster.nodes;
  const key = `beat-${crypto.randomUUID().slice(0, 8)}`;
  await using member = await TestPeer.open(`${owner.url}/${key}`);
  using _answer = answerHeartbeats(member);
  assert.equal(await member.join(1), true);

  const opened = performance.now();
  const [silent, answering, local] = await Promise.all([
    TestPeer.open(`${edge.url}/${key}`, { keepHeartbeats: true }),
    TestPeer.open(`${edge.url}/${key}`, { keepHeartbeats: true }),
    // The edge's own group: beats at the edge's interval.
    TestPeer.open(`${edge.url}/${key}-edge`, { keepHeartbeats: true }),
  ]);
  await using _peers = {
    [Symbol.asyncDispose]: () =>
      Promise.all([silent, answering, local].map((p) => p.close())).then(
        () => {},
      ),
  };
  const piped = await views(cluster);
  assert.equal(piped[1].pipedOut, 2, "two peers piped from the edge");
  assert.equal(piped[0].pipedIn, 2, "two peers piped into the owner");

  /** The arrival times of a peer's next `n` heartbeats, since the open. */
  const beats = async (peer: TestPeer, n: number, answer: boolean) => {
    const times: number[] = [];
    while (times.length < n) {
      const message = await peer.next();
      assert.equal(message.type, "heartbeat");
      times.push(since(opened));
      if (answer) peer.sendHeartbeat();
    }
    return times;
  };

  const [silentBeats, silentClose, answered, localFirst] = await Promise.all([
    beats(silent, 2, false),
    silent.waitClosed(15_000).then((info) => ({ ...info, at: since(opened) })),
    // Four owner periods, answered: more than the three a silent peer gets.
    beats(answering, 4, true),
    beats(local, 1, false),
  ]);
  assert.equal(silentClose.code, 4742, silentClose.reason);
  assert.equal(silent.heartbeats, 2, "exactly two heartbeats, then the close");
  assert.ok(
    silentBeats[0] >= 700 && silentBeats[1] - silentBeats[0] >= 700,
    `heartbeats at ${silentBeats} ms: one per owner period`,
  );
  // The edge, at 3 s a beat, would send its first at 3 s and close at 9 s.
  assert.ok(
    silentBeats[1] < 2_900,
    `heartbeats at ${silentBeats} ms come from the owner, not the edge`,
  );
  assert.ok(
    silentClose.at >= 2_700 && silentClose.at < 6_000,
    `closed with 4742 at ${silentClose.at} ms: three owner periods`,
  );
  assert.ok(localFirst[0] >= 2_700, `the edge's own beat at ${localFirst} ms`);

  assert.ok(!answering.isClosed, `answered at ${answered} ms and still open`);
  // Silent after its fourth answer: two more heartbeats, then 4742.
  const info = await answering.waitClosed(15_000);
  assert.equal(info.code, 4742);
  assert.equal(answering.heartbeats, 4 + 2);
  assert.equal(member.isClosed, false, "the member answered all along");
});
