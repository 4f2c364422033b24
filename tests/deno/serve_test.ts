/**
 * The server survives running out of file descriptors: the CLI runs in a
 * subprocess under `ulimit -n 400`, two peers relay through it, and a flood
 * of connections goes past the limit. Deno's accept loop dies on the first
 * EMFILE; the server must keep its peers relaying, log one error line for
 * the episode, count the errors, and accept again once the flood is gone.
 */

import assert from "node:assert/strict";
import { cliArgs, denoArgs } from "../_cli.ts";
import { type ChildProcess, spawn } from "../../dev/process.ts";
import { TestPeer } from "../_helpers.ts";
import { deadline } from "../../lib/deadline.ts";

/** The descriptor limit the server runs under. */
const LIMIT = 400;
/** Connections the flood holds: well past the limit. */
const FLOOD = 600;

/** A CLI server under a low descriptor limit, its stderr read all along. */
function startLimited(args: string[]): ChildProcess {
  return spawn("bash", {
    name: "server.ts under ulimit",
    args: [
      "-c",
      `ulimit -n ${LIMIT} && exec "$0" "$@"`,
      Deno.execPath(),
      ...denoArgs(cliArgs(...args)),
    ],
    env: { NO_COLOR: "1" },
    stdout: "null",
  });
}

function _tick(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Two peers bound to each other: a member and a joiner. */
async function pair(port: number, key: string) {
  const url = `ws://127.0.0.1:${port}/${key}`;
  const member = await TestPeer.open(url);
  let joiner: TestPeer | undefined;
  try {
    assert.equal(await member.join(1), true);
    joiner = await TestPeer.open(url);
    assert.equal(await joiner.join(2), false);
    joiner.sendContent({ data: "hello" });
    const first = await member.nextContent();
    return { member, joiner, sid: first.senderId };
  } catch (error) {
    // While the server recovers a join may fail: leave no socket behind.
    await joiner?.close();
    await member.close();
    throw error;
  }
}

/** One message each way through the server. */
async function relayOnce(
  p: Awaited<ReturnType<typeof pair>>,
  n: number,
): Promise<void> {
  p.joiner.sendContent({ data: `offer ${n}` });
  assert.equal((await p.member.nextContent()).data, `offer ${n}`);
  p.member.sendContent({ recipientId: p.sid, data: `answer ${n}` });
  assert.equal((await p.joiner.nextContent()).data, `answer ${n}`);
}

/**
 * Opens `count` TCP connections, retrying refused ones (the listener is gone
 * while the server waits for descriptors), for at most `ms`.
 */
async function flood(
  port: number,
  count: number,
  ms: number,
  send?: Uint8Array,
): Promise<{ conns: Deno.TcpConn[]; refused: number }> {
  const conns: Deno.TcpConn[] = [];
  let refused = 0;
  const end = performance.now() + ms;
  while (conns.length < count && performance.now() < end) {
    let conn: Deno.TcpConn | undefined;
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
      if (send !== undefined) await conn.write(send);
      conns.push(conn);
    } catch {
      // A connection the server dropped before the write: closed here too.
      if (conn !== undefined) closeAll([conn]);
      refused++;
      await _tick(5);
    }
  }
  return { conns, refused };
}

function closeAll(conns: Deno.TcpConn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // The server dropped it.
    }
  }
}

/** Joins and relays with new peers, retrying while the server recovers. */
async function joinsAgain(port: number, key: string): Promise<void> {
  const end = performance.now() + 15_000;
  for (;;) {
    try {
      const p = await pair(port, key);
      try {
        await relayOnce(p, 0);
      } finally {
        await p.joiner.close();
        await p.member.close();
      }
      return;
    } catch (error) {
      if (performance.now() > end) throw error;
      await _tick(100);
    }
  }
}

/**
 * Waits until readiness is back and the log shows every episode ended. A
 * short second episode may follow the first while Deno releases the
 * flood's sockets; each must end with an "accepting again" line.
 */
async function readyAgain(
  port: number,
  server: ChildProcess,
): Promise<void> {
  for (;;) {
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    const text = await ready.text();
    if (ready.status === 200) {
      const { errors, recovered } = episodes(server.stderr);
      if (errors.length === recovered.length) return;
    } else {
      assert.equal(
        text,
        "not accepting connections: out of file descriptors\n",
      );
    }
    await _tick(100);
  }
}

function episodes(stderr: string): { errors: string[]; recovered: string[] } {
  const lines = stderr.split("\n");
  return {
    errors: lines.filter((l) => / ERROR accept /.test(l)),
    recovered: lines.filter((l) =>
      / INFO accept state="accepting again"/.test(l)
    ),
  };
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

async function survives(
  t: Deno.TestContext,
  what: string,
  payload: Uint8Array | undefined,
): Promise<void> {
  await using server = startLimited([
    "--heartbeat-interval",
    "60",
    "--message-rate",
    "0",
  ]);
  const listen = await server.waitFor(
    /listen url=ws:\/\/127\.0\.0\.1:(\d+)\//,
    { what: "the listen line", stream: "stderr" },
  );
  const port = Number(listen[1]);
  const p = await pair(port, "room");
  try {
    await t.step(`peers relay while ${what} go past the limit`, async () => {
      const flooding = flood(port, FLOOD, 8_000, payload);
      // Relay all along the flood, and a while after it reached its size.
      let n = 1;
      let done = false;
      flooding.then(() => done = true, () => done = true);
      while (!done) {
        await relayOnce(p, n++);
        await _tick(10);
      }
      const { conns, refused } = await flooding;
      try {
        for (let i = 0; i < 20; i++) {
          await relayOnce(p, n++);
          await _tick(10);
        }
        assert.ok(
          refused > 0 || conns.length >= LIMIT,
          `the flood did not reach the limit (${conns.length} held)`,
        );
        assert.ok(server.running, server.stderr);
      } finally {
        closeAll(conns);
      }
    });
    await t.step(
      "new peers join and relay once the flood is gone",
      async () => {
        await joinsAgain(port, "after");
        await relayOnce(p, 1000);
        assert.ok(await metric(port, "sigver_accept_errors_total") > 0);
        // Ready again once the new listener has stayed up a while.
        await deadline(
          readyAgain(port, server),
          20_000,
          "readiness to come back",
        );
      },
    );
    await t.step(
      "one error line per episode, and the process lives",
      async () => {
        const { errors, recovered } = episodes(server.stderr);
        assert.ok(errors.length >= 1, server.stderr);
        assert.equal(errors.length, recovered.length, server.stderr);
        // One line per episode, not one per failure.
        const failures = await metric(port, "sigver_accept_errors_total");
        assert.ok(failures >= errors.length, `${failures} failures`);
        assert.match(errors[0], /Too many open files/);
        assert.doesNotMatch(server.stderr, /Uncaught|unhandled/i);
        assert.ok(server.running, server.stderr);
      },
    );
  } finally {
    await p.joiner.close();
    await p.member.close();
  }
  const { code } = await server.stop();
  assert.equal(code, 0, server.stderr);
}

Deno.test("server keeps relaying and accepts again after bare TCP connections exhaust its descriptors", async (t) => {
  await survives(t, "bare TCP connections", undefined);
});

Deno.test("server keeps relaying and accepts again after stalled handshakes exhaust its descriptors", async (t) => {
  // Slowloris: half a request, then nothing. Deno has no header timeout.
  const half = new TextEncoder().encode(
    "GET /room HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
  );
  await survives(t, "stalled handshakes", half);
});
