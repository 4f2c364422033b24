/**
 * A small run of the fuzzer (`deno task fuzz` runs a million inputs): the
 * decoder on random and mutated bytes, and an in-process server on random
 * opens, closes and frames. Seeds are fixed so that a failure reproduces.
 */

import assert from "node:assert/strict";
import {
  checkServer,
  EXPECTED_CLOSE_CODES,
  fuzzDecoder,
  fuzzServer,
} from "../../fuzz/fuzz.ts";
import { EMPTY_STATS, settled, startServer } from "../_helpers.ts";
import { systemClock } from "../../lib/clock.ts";

Deno.test("decoder throws only SyntaxError on 20000 random and mutated inputs", () => {
  const report = fuzzDecoder({ count: 20_000, seed: 20261126 });
  assert.deepEqual(report.failures, []);
  assert.equal(report.otherErrors, 0);
  assert.equal(report.disagreements, 0);
  assert.equal(report.roundTripMismatches, 0);
  assert.equal(report.oversized, 0);
  // The inputs reach both sides of the decoder.
  assert.ok(report.decoded > 1000, `${report.decoded} decoded`);
  assert.ok(report.syntaxErrors > 1000, `${report.syntaxErrors} refused`);
});

Deno.test("server keeps serving and keeps no state after 10000 random inputs", async () => {
  // The real clock: the fuzzer drives hundreds of sockets in real time and
  // counts on the server's closes going out by themselves while it goes on
  // (each within a second, concurrently with the run). A driven clock
  // would send heartbeats and 4742s to peers the fuzzer keeps busy.
  await using server = startServer({
    maxMessageSize: 4096,
    clock: systemClock,
  });
  const report = await fuzzServer({
    port: server.addr.port,
    count: 10_000,
    seed: 20261126,
    maxMessageSize: 4096,
  });
  assert.deepEqual(report.errors, []);
  for (const code of Object.keys(report.serverCloses)) {
    assert.ok(EXPECTED_CLOSE_CODES.includes(Number(code)), `code ${code}`);
  }
  // The run met the limits and the protocol errors it aims at.
  assert.ok((report.serverCloses[4743] ?? 0) > 0);
  assert.ok((report.serverCloses[1009] ?? 0) > 0);
  const check = await checkServer(server.addr.port);
  assert.deepEqual(check, {
    healthy: true,
    relays: true,
    peers: 0,
    groups: 0,
    bound: 0,
    problems: [],
  });
  await settled(server);
  assert.deepEqual(server.handler.stats(), EMPTY_STATS);
});
