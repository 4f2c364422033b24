// Unit tests of the load generator's pure parts (bench/). The benchmark
// itself never runs here: timing is not a test.
import assert from "node:assert/strict";
import {
  beatsExpected,
  bottleneck,
  commandWindow,
  cpuMicros,
  cpuPercent,
  expectedPiped,
  fmt,
  Histogram,
  markdownTable,
  median,
  mergeBeats,
  netOfBeats,
  openFileLimits,
  parseCommandStats,
  parseProcStat,
  percentile,
  perOp,
  place,
  type ProcStat,
  ratio,
  readGauges,
  readLabelled,
  shares,
  slope,
  SOAK_GAUGES,
  soakVerdict,
} from "../../bench/stats.ts";
import {
  clientFrame,
  closePayload,
  FrameParser,
  handshakeRequest,
  headEnd,
  OP_BINARY,
  OP_CLOSE,
  OP_CONT,
  OP_PING,
  OP_TEXT,
  statusOf,
} from "../../bench/ws_client.ts";
import {
  beatsAnswered,
  CLUSTER_TARGETS,
  parseConfig,
  RSS_ALLOWANCE,
  type RunResult,
  summarize,
  summarizeCluster,
} from "../../bench/main.ts";
import { ChunkedDecoder, ResponseReader } from "../../bench/sse_client.ts";
import { Tally } from "../../bench/scenarios.ts";
import type { HoldResult } from "../../bench/cluster.ts";
import { FrameReader, TYPE_CONTENT } from "../../lib/netflux/wire.ts";

const STAT =
  "4242 (deno) S 1 4242 4242 0 -1 4194560 9001 0 12 0 1234 567 0 0 20 0 " +
  "9 0 4711 17612345344 33554 18446744073709551615 1 1 0 0 0 0 0 16781312 " +
  "17442 0 0 0 17 1 0 0 0 0 0";

Deno.test("parseProcStat reads utime, stime, threads and rss", () => {
  const s = parseProcStat(STAT);
  assert.deepEqual(s, {
    state: "S",
    utime: 1234,
    stime: 567,
    threads: 9,
    rssPages: 33554,
  });
});

Deno.test("parseProcStat counts fields after the last ')' of the name", () => {
  const tricky = STAT.replace("(deno)", "(a) b (c) d)");
  assert.deepEqual(parseProcStat(tricky).utime, 1234);
  assert.deepEqual(parseProcStat(tricky).rssPages, 33554);
});

Deno.test("parseProcStat throws SyntaxError on a short or odd line", () => {
  assert.throws(() => parseProcStat("42 (x) S 1 2 3"), SyntaxError);
  assert.throws(() => parseProcStat("no name here"), SyntaxError);
  assert.throws(
    () => parseProcStat(STAT.replace(" 1234 ", " x ")),
    SyntaxError,
  );
});

Deno.test("parseProcStat parses this process's own /proc/self/stat", () => {
  const s = parseProcStat(Deno.readTextFileSync("/proc/self/stat"));
  assert.ok(s.rssPages > 0 && s.threads >= 1);
});

Deno.test("cpuMicros converts user plus system ticks to µs", () => {
  const a: ProcStat = {
    state: "S",
    utime: 100,
    stime: 50,
    threads: 1,
    rssPages: 0,
  };
  const b = { ...a, utime: 130, stime: 60 };
  assert.deepEqual(cpuMicros(a, b), 400_000);
  assert.deepEqual(cpuMicros(a, b, 250), 160_000);
});

Deno.test("cpuPercent is percent of one core over the wall time", () => {
  assert.deepEqual(cpuPercent(500_000, 1000), 50);
  assert.deepEqual(cpuPercent(3_000_000, 1500), 200);
  assert.deepEqual(cpuPercent(1, 0), 0);
});

Deno.test("perOp divides, and is null for no operations", () => {
  assert.deepEqual(perOp(1_000_000, 80_000), 12.5);
  assert.deepEqual(perOp(100, 0), null);
});

Deno.test("ratio is server over bare, null when it cannot be computed", () => {
  assert.ok(Math.abs(ratio(13, 11.8)! - 1.1017) < 1e-4);
  assert.deepEqual(ratio(null, 1), null);
  assert.deepEqual(ratio(1, undefined), null);
  assert.deepEqual(ratio(1, 0), null);
  assert.deepEqual(ratio(Infinity, 1), null);
});

Deno.test("median handles odd and even counts and skips missing values", () => {
  assert.deepEqual(median([3, 1, 2]), 2);
  assert.deepEqual(median([4, 1, 3, 2]), 2.5);
  assert.deepEqual(median([null, 5, NaN]), 5);
  assert.deepEqual(median([]), null);
});

Deno.test("percentile uses the nearest rank", () => {
  const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.deepEqual(percentile(xs, 50), 5);
  assert.deepEqual(percentile(xs, 99), 10);
  assert.deepEqual(percentile(xs, 0), 1);
  assert.deepEqual(percentile(xs, 100), 10);
  assert.deepEqual(percentile([], 50), null);
  assert.throws(() => percentile(xs, 101), RangeError);
});

Deno.test("Histogram percentiles match the sorted values to a bucket", () => {
  const h = new Histogram(1, 1000);
  const values: number[] = [];
  for (let i = 0; i < 997; i++) values.push((i * 7919) % 800 + 0.25);
  for (const v of values) h.record(v);
  values.sort((a, b) => a - b);
  for (const p of [1, 50, 90, 99, 100]) {
    const exact = percentile(values, p)!;
    assert.deepEqual(h.percentile(p), Math.floor(exact) + 0.5, `p${p}`);
  }
  assert.deepEqual(h.count, 997);
});

Deno.test("Histogram clamps values above its range into the last bucket", () => {
  const h = new Histogram(10, 10);
  h.record(5);
  h.record(1e9);
  h.record(-3);
  assert.deepEqual(h.count, 3);
  assert.deepEqual(h.clamped, 1);
  assert.deepEqual(h.percentile(100), 95);
  assert.deepEqual(h.percentile(1), 5);
  assert.deepEqual(new Histogram(1, 5).percentile(50), null);
});

Deno.test("Histogram merge adds counts and refuses other shapes", () => {
  const a = new Histogram(1, 100);
  const b = new Histogram(1, 100);
  a.record(10);
  b.record(20);
  b.record(30);
  a.merge(b);
  assert.deepEqual(a.count, 3);
  assert.deepEqual(a.percentile(50), 20.5);
  assert.throws(() => a.merge(new Histogram(2, 100)), RangeError);
});

Deno.test("bottleneck names the saturated process", () => {
  assert.deepEqual(bottleneck(99, 40), "server");
  assert.deepEqual(bottleneck(50, 97), "loadgen");
  assert.deepEqual(bottleneck(90, 98), "loadgen");
  assert.deepEqual(bottleneck(98, 90), "server");
  assert.deepEqual(bottleneck(40, 30), "neither");
});

Deno.test("markdownTable renders ratios, misses and blanks", () => {
  const t = markdownTable([
    {
      metric: "m",
      server: 12.345,
      bare: 11.8,
      ratio: 1.0462,
      target: "<= 1.10x",
      ok: true,
    },
    {
      metric: "n",
      server: 1234.6,
      bare: null,
      ratio: null,
      target: "",
      ok: false,
    },
  ]).split("\n");
  assert.deepEqual(t.length, 4);
  assert.deepEqual(t[2], "| m | 12.35 | 11.80 | 1.046x | <= 1.10x | yes |");
  assert.deepEqual(t[3], "| n | 1235 | - | - |  | **no** |");
  assert.deepEqual(fmt(123.456), "123.5");
  assert.deepEqual(fmt(undefined), "-");
});

Deno.test("openFileLimits reads the soft and hard limits", () => {
  const text = "Limit                     Soft Limit           Hard Limit\n" +
    "Max open files            1024                 20000                files\n";
  assert.deepEqual(openFileLimits(text), { soft: 1024, hard: 20000 });
  assert.deepEqual(
    openFileLimits("Max open files  unlimited  unlimited  files"),
    { soft: Infinity, hard: Infinity },
  );
  assert.deepEqual(openFileLimits("nothing"), undefined);
});

Deno.test("clientFrame masks with the zero key and picks the length form", () => {
  const small = clientFrame(OP_BINARY, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...small], [0x82, 0x83, 0, 0, 0, 0, 1, 2, 3]);
  const mid = clientFrame(OP_BINARY, new Uint8Array(300));
  assert.deepEqual([...mid.subarray(0, 8)], [0x82, 0xfe, 1, 44, 0, 0, 0, 0]);
  assert.deepEqual(mid.length, 8 + 300);
  const big = clientFrame(OP_BINARY, new Uint8Array(70000));
  assert.deepEqual(
    [...big.subarray(0, 10)],
    [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0x11, 0x70],
  );
  assert.deepEqual(big.length, 14 + 70000);
  assert.deepEqual([...closePayload(1000, "ok")], [0x03, 0xe8, 0x6f, 0x6b]);
});

/** A server frame (unmasked). */
function serverFrame(opcode: number, payload: Uint8Array, fin = true) {
  const n = payload.length;
  const head = n < 126 ? [n] : [126, n >> 8, n & 0xff];
  return new Uint8Array([(fin ? 0x80 : 0) | opcode, ...head, ...payload]);
}

function collect() {
  const frames: [number, number[]][] = [];
  const errors: string[] = [];
  const parser = new FrameParser({
    frame: (op, p) => frames.push([op, [...p]]),
    error: (m) => errors.push(m),
  });
  return { frames, errors, parser };
}

Deno.test("FrameParser splits frames however the stream is cut", () => {
  const payload = Array.from({ length: 200 }, (_, i) => i);
  const stream = new Uint8Array([
    ...serverFrame(OP_BINARY, new Uint8Array([8, 1])),
    ...serverFrame(OP_BINARY, new Uint8Array(payload)),
    ...serverFrame(OP_CLOSE, new Uint8Array([0x12, 0x85])),
  ]);
  for (const cut of [1, 2, 3, 5, 7, 64, stream.length]) {
    const { frames, errors, parser } = collect();
    const buf = new Uint8Array(cut);
    for (let i = 0; i < stream.length; i += cut) {
      // The caller reuses its read buffer: the parser must copy what it keeps.
      const part = stream.subarray(i, i + cut);
      buf.set(part);
      parser.feed(buf.subarray(0, part.length));
      buf.fill(0xee);
    }
    assert.deepEqual(errors, [], `cut ${cut}`);
    assert.deepEqual(frames, [
      [OP_BINARY, [8, 1]],
      [OP_BINARY, payload],
      [OP_CLOSE, [0x12, 0x85]],
    ], `cut ${cut}`);
  }
});

Deno.test("FrameParser reassembles fragments around a control frame", () => {
  const { frames, errors, parser } = collect();
  parser.feed(serverFrame(OP_BINARY, new Uint8Array([1, 2]), false));
  parser.feed(serverFrame(OP_PING, new Uint8Array([])));
  parser.feed(serverFrame(OP_CONT, new Uint8Array([3]), true));
  assert.deepEqual(errors, []);
  assert.deepEqual(frames, [[OP_PING, []], [OP_BINARY, [1, 2, 3]]]);
});

Deno.test("FrameParser reports masked frames and stray continuations", () => {
  const masked = collect();
  masked.parser.feed(new Uint8Array([0x82, 0x81, 0, 0, 0, 0, 7]));
  assert.deepEqual(masked.errors, ["server frame is masked"]);
  masked.parser.feed(serverFrame(OP_BINARY, new Uint8Array([1])));
  assert.deepEqual(masked.frames, []);
  const stray = collect();
  stray.parser.feed(serverFrame(OP_CONT, new Uint8Array([1])));
  assert.deepEqual(stray.errors, ["continuation without a start"]);
  const text = collect();
  text.parser.feed(serverFrame(OP_TEXT, new TextEncoder().encode("x")));
  assert.deepEqual(text.frames, [[OP_TEXT, [0x78]]]);
});

Deno.test("a client content frame decodes with lib/wire.ts", () => {
  const { frames, parser } = collect();
  // Unmasked copy of a client frame: drop the mask bit and the zero key.
  const f = clientFrame(OP_BINARY, new Uint8Array([0x12, 0x02, 0x08, 0x07]));
  parser.feed(new Uint8Array([f[0], f[1] & 0x7f, ...f.subarray(6)]));
  const r = new FrameReader();
  r.read(new Uint8Array(frames[0][1]));
  assert.deepEqual([r.type, r.senderId], [TYPE_CONTENT, 7]);
});

Deno.test("handshake helpers find the head end and the status", () => {
  const req = new TextDecoder().decode(handshakeRequest("h:1", "/k", "x=="));
  assert.ok(req.startsWith("GET /k HTTP/1.1\r\nHost: h:1\r\n"));
  assert.ok(req.endsWith("Sec-WebSocket-Version: 13\r\n\r\n"));
  const head = new Uint8Array([
    ...new TextEncoder().encode("HTTP/1.1 101 OK\r\nA: b\r\n\r\n"),
    0x82,
  ]);
  assert.deepEqual(headEnd(head), head.length - 1);
  assert.deepEqual(headEnd(head.subarray(0, 20)), -1);
  assert.deepEqual(statusOf("HTTP/1.1 101 Switching Protocols\r\n"), 101);
  assert.deepEqual(statusOf("HTTP/1.1 503 Service Unavailable"), 503);
  assert.deepEqual(statusOf("garbage"), 0);
});

function fakeRun(
  sigverUs: number,
  bareUs: number,
  joinUs: number,
): RunResult {
  const relay = (us: number) => ({
    ms: 1000,
    serverCpuUs: 0,
    loadCpuUs: 0,
    serverPct: 0,
    loadPct: 0,
    bottleneck: "neither" as const,
    size: 256,
    window: 1,
    messages: 1,
    rate: 1e6 / us,
    usPerMsg: us,
    loadUsPerMsg: null,
    rttP50: 100,
    rttP99: 200,
    peerRate: 1,
  });
  return {
    relay: [{ sigver: relay(sigverUs), bare: relay(bareUs) }],
    churn: { usPerJoin: joinUs, rate: 1000 },
    capacity: null,
  } as unknown as RunResult;
}

Deno.test("summarize takes the median of per-run ratios and checks targets", () => {
  const rows = summarize([
    fakeRun(13, 10, 150),
    fakeRun(12, 12, 250),
    fakeRun(30, 20, 190),
  ]);
  const cpu = rows.find((r) => r.metric.endsWith("server CPU µs/msg"))!;
  assert.deepEqual(cpu.server, 13);
  assert.deepEqual(cpu.bare, 12);
  // Ratios 1.3, 1.0, 1.5: the median ratio, not 13 / 12.
  assert.deepEqual(cpu.ratio, 1.3);
  assert.deepEqual(cpu.ok, false);
  const join = rows.find((r) => r.metric === "churn: server CPU µs/join")!;
  assert.deepEqual([join.server, join.ok], [190, true]);
});

Deno.test("summarize adds the floor rows when the runs measured them", () => {
  const run = (sigverUs: number, floorUs: number) => ({
    ...fakeRun(10, 10, sigverUs),
    churnFloor: { usPerJoin: floorUs, rate: 900 },
  } as unknown as RunResult);
  const rows = summarize([run(300, 250), run(330, 300), run(360, 200)]);
  const floor = rows.find((r) => r.metric.startsWith("churn floor"))!;
  // Ratios 1.2, 1.1, 1.8: the median ratio is 1.2.
  assert.deepEqual([floor.server, floor.bare, floor.ratio], [330, 250, 1.2]);
  assert.equal(
    summarize([fakeRun(10, 10, 300)]).some((r) =>
      r.metric.startsWith("churn floor")
    ),
    false,
  );
});

const EXPOSITION = `# HELP sigver_peers Peers connected.
# TYPE sigver_peers gauge
sigver_peers 0
sigver_groups 2
sigver_members 3
# TYPE sigver_closes_total counter
sigver_closes_total{code="1000",by="client"} 7
sigver_bound_joiners 1e0
sigver_peers_extra 9
`;

Deno.test("readGauges reads unlabelled samples and skips the rest", () => {
  assert.deepEqual(
    readGauges(EXPOSITION, [...SOAK_GAUGES, "sigver_closes_total", "nope"]),
    {
      sigver_peers: 0,
      sigver_groups: 2,
      sigver_members: 3,
      sigver_bound_joiners: 1,
    },
  );
});

Deno.test("soakVerdict passes an empty hub whose RSS came back within 10 %", () => {
  const empty = Object.fromEntries(SOAK_GAUGES.map((g) => [g, 0]));
  assert.deepEqual(soakVerdict(empty, 100, 110), {
    empty: true,
    rssRatio: 1.1,
    rssOk: true,
    pass: true,
  });
  assert.deepEqual(soakVerdict(empty, 100, 111).pass, false);
  assert.deepEqual(soakVerdict(empty, 100, 111).rssOk, false);
  // A peer left behind, or a gauge that was not there, fails.
  assert.deepEqual(
    soakVerdict({ ...empty, sigver_bound_joiners: 1 }, 100, 90).pass,
    false,
  );
  const { sigver_groups: _, ...missing } = empty;
  assert.deepEqual(soakVerdict(missing, 100, 90).empty, false);
  assert.deepEqual(soakVerdict(empty, 0, 90).rssOk, false);
});

Deno.test("slope is the least-squares growth and null without a spread", () => {
  const line = [0, 1, 2, 3].map((x) => ({ x, y: 5 + 2 * x }));
  assert.deepEqual(slope(line), 2);
  // Ups and downs around a flat trend: no growth.
  assert.deepEqual(
    slope([{ x: 0, y: 10 }, { x: 1, y: 12 }, { x: 2, y: 8 }, { x: 3, y: 10 }]),
    -0.4,
  );
  assert.deepEqual(slope([{ x: 1, y: 1 }]), null);
  assert.deepEqual(slope([{ x: 1, y: 1 }, { x: 1, y: 3 }]), null);
});

Deno.test("summarize checks the soak: an empty hub in every run, RSS within 10 %", () => {
  const run = (left: number, rssEnd: number) => {
    const gauges = Object.fromEntries(SOAK_GAUGES.map((g) => [g, 0]));
    gauges.sigver_members = left;
    return {
      ...fakeRun(10, 10, 100),
      soak: {
        cycles: 1000,
        gauges,
        rssWarm: 100,
        rssEnd,
        rate: 500,
        usPerCycle: 400,
        rssSlope: 0.5,
        ...soakVerdict(gauges, 100, rssEnd),
      },
    } as unknown as RunResult;
  };
  const rows = (runs: RunResult[]) => {
    const all = summarize(runs);
    return [
      all.find((r) => r.metric.startsWith("soak: peers"))!,
      all.find((r) => r.metric.startsWith("soak: server RSS at the end"))!,
    ];
  };
  const [state, rss] = rows([run(0, 105), run(0, 108), run(0, 103)]);
  assert.deepEqual([state.ok, rss.ok, rss.ratio], [true, true, 1.05]);
  const [leaked, grown] = rows([run(0, 105), run(2, 130), run(0, 103)]);
  assert.deepEqual([leaked.ok, grown.ok], [false, false]);
  assert.match(leaked.target, /0 \/ 0 \/ 2 \/ 0/);
});

Deno.test("summarize holds the idle-peer RSS to bare + the heartbeat allowance", () => {
  const run = (sigverRss: number) => ({
    ...fakeRun(10, 10, 100),
    capacity: {
      sigver: { rssPerPeer: sigverRss, usPerConnection: 100, holdPct: 10 },
      bare: { rssPerPeer: 17000, usPerConnection: 100, holdPct: 0 },
      floor: null,
    },
  } as unknown as RunResult);
  const row = (rss: number) =>
    summarize([run(rss)]).find((r) =>
      r.metric === "capacity: server RSS bytes/idle peer"
    )!;
  assert.deepEqual(row(17000 + RSS_ALLOWANCE).ok, true);
  assert.deepEqual(row(17001 + RSS_ALLOWANCE).ok, false);
});

Deno.test("netOfBeats takes out the heartbeats at their cost while holding", () => {
  // 40 µs a heartbeat while holding (4,000,000 µs for 100,000 of them).
  assert.deepEqual(netOfBeats(3_000_000, 5000, 4_000_000, 100_000), 2_800_000);
  assert.deepEqual(netOfBeats(3_000_000, 0, 4_000_000, 100_000), 3_000_000);
  assert.deepEqual(netOfBeats(3_000_000, 5000, 0, 0), 3_000_000);
  assert.deepEqual(netOfBeats(100, 5000, 4_000_000, 100_000), 0);
});

Deno.test("summarize judges new connections net of heartbeats, and shows both", () => {
  const run = (raw: number, net: number) => ({
    ...fakeRun(10, 10, 100),
    capacity: {
      sigver: {
        usPerConnection: raw,
        usPerConnectionNet: net,
        beatsDuringConnect: raw === net ? 0 : 6000,
        rssPerPeer: 18000,
        holdPct: 10,
      },
      bare: {
        usPerConnection: 100,
        usPerConnectionNet: 100,
        beatsDuringConnect: 0,
        rssPerPeer: 17000,
        holdPct: 0,
      },
      floor: null,
    },
  } as unknown as RunResult);
  const rows = summarize([run(105, 105), run(130, 108), run(110, 110)]);
  const net = rows.find((r) =>
    r.metric === "capacity: server CPU µs/new connection"
  )!;
  assert.deepEqual([net.server, net.ratio, net.ok], [108, 1.08, true]);
  const raw = rows.find((r) => r.metric.endsWith("heartbeats included"))!;
  assert.deepEqual([raw.server, raw.ratio], [110, 1.1]);
  assert.match(raw.target, /up to 6000/);
});

Deno.test("readLabelled keys one metric's samples by a label's value", () => {
  const text = `# TYPE sigver_cluster_piped_peers gauge
sigver_cluster_piped_peers{direction="in"} 25
sigver_cluster_piped_peers{direction="out"} 3
sigver_cluster_piped_peers_total{direction="in"} 99
sigver_messages_sent_total{type="heartbeat"} 4000
sigver_messages_sent_total{kind="x",type="content"} 12
sigver_messages_sent_total 7
`;
  assert.deepEqual(
    readLabelled(text, "sigver_cluster_piped_peers", "direction"),
    { in: 25, out: 3 },
  );
  assert.deepEqual(readLabelled(text, "sigver_messages_sent_total", "type"), {
    heartbeat: 4000,
    content: 12,
  });
  assert.deepEqual(readLabelled(text, "nope", "type"), {});
});

const INFO_BEFORE = `# Commandstats\r
cmdstat_evalsha:calls=10,usec=5000,usec_per_call=500.00,rejected_calls=0,failed_calls=0\r
cmdstat_get:calls=100,usec=50,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r
cmdstat_info:calls=1,usec=20,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r
`;
const INFO_AFTER = `# Commandstats\r
cmdstat_evalsha:calls=16,usec=8000,usec_per_call=500.00,rejected_calls=0,failed_calls=0\r
cmdstat_get:calls=3100,usec=1550,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r
cmdstat_pexpire:calls=3000,usec=1800,usec_per_call=0.60,rejected_calls=0,failed_calls=0\r
cmdstat_info:calls=2,usec=45,usec_per_call=22.50,rejected_calls=0,failed_calls=0\r
cmdstat_config|resetstat:calls=1,usec=9,usec_per_call=9.00,rejected_calls=0,failed_calls=0\r
`;

Deno.test("parseCommandStats reads calls and usec of every command", () => {
  const stats = parseCommandStats(INFO_AFTER);
  assert.deepEqual(stats.evalsha, { calls: 16, usec: 8000 });
  assert.deepEqual(stats["config|resetstat"], { calls: 1, usec: 9 });
  assert.deepEqual(Object.keys(stats).length, 5);
  assert.deepEqual(parseCommandStats("# Commandstats\r\n"), {});
});

Deno.test("commandWindow counts the commands in between, not the INFO that sampled", () => {
  const w = commandWindow(
    parseCommandStats(INFO_BEFORE),
    parseCommandStats(INFO_AFTER),
  );
  assert.deepEqual(w.commands.evalsha, { calls: 6, usec: 3000 });
  assert.deepEqual(w.commands.pexpire, { calls: 3000, usec: 1800 });
  // The earlier sample's INFO is the only INFO in between: left out.
  assert.equal(w.commands.info, undefined);
  assert.deepEqual(w.calls, 6 + 3000 + 3000 + 1);
  assert.deepEqual(w.usec, 3000 + 1500 + 1800 + 9);
});

Deno.test("shares splits a count evenly, the larger shares first", () => {
  assert.deepEqual(shares(37500, 4), [9375, 9375, 9375, 9375]);
  assert.deepEqual(shares(10, 4), [3, 3, 2, 2]);
  assert.deepEqual(shares(1, 3), [1, 0, 0]);
  assert.deepEqual(shares(0, 2), [0, 0]);
  assert.throws(() => shares(-1, 2), RangeError);
  assert.throws(() => shares(5, 0), RangeError);
  assert.throws(() => shares(1.5, 2), RangeError);
});

Deno.test("place lays pairs out on one node, with affinity, or split", async (t) => {
  await t.step("single: every peer on node 0", () => {
    assert.deepEqual(place("single", 7, 2), { member: 0, joiner: 0 });
  });
  await t.step("affinity: both peers on one node, the nodes in turn", () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => place("affinity", i, 2)),
      [
        { member: 0, joiner: 0 },
        { member: 1, joiner: 1 },
        { member: 0, joiner: 0 },
        { member: 1, joiner: 1 },
      ],
    );
  });
  await t.step("split: the joiner on the next node, owners in turn", () => {
    assert.deepEqual(
      [0, 1, 2].map((i) => place("split", i, 3)),
      [
        { member: 0, joiner: 1 },
        { member: 1, joiner: 2 },
        { member: 2, joiner: 0 },
      ],
    );
    assert.throws(() => place("split", 0, 1), RangeError);
  });
  await t.step("no nodes is an error", () => {
    assert.throws(() => place("affinity", 0, 0), RangeError);
  });
});

Deno.test("expectedPiped counts a split pair in at its member's node, out at its joiner's", () => {
  assert.deepEqual(expectedPiped("affinity", 50, 2), {
    in: [0, 0],
    out: [0, 0],
  });
  assert.deepEqual(expectedPiped("split", 50, 2), {
    in: [25, 25],
    out: [25, 25],
  });
  assert.deepEqual(expectedPiped("split", 3, 2), {
    in: [2, 1],
    out: [1, 2],
  });
  assert.deepEqual(expectedPiped("single", 4, 1), { in: [0], out: [0] });
});

Deno.test("mergeBeats adds the load processes' counts", () => {
  assert.deepEqual(
    mergeBeats([
      { live: 10, min: 3, max: 3, total: 30 },
      { live: 0, min: 0, max: 0, total: 0 },
      { live: 5, min: 2, max: 4, total: 15 },
    ]),
    { live: 15, min: 2, max: 4, total: 45 },
  );
  assert.deepEqual(mergeBeats([]), { live: 0, min: 0, max: 0, total: 0 });
});

Deno.test("beatsExpected allows one heartbeat for where the window cuts", () => {
  assert.equal(beatsExpected(15, 5), 2);
  assert.equal(beatsExpected(15.02, 5), 2);
  assert.equal(beatsExpected(20, 5), 3);
  assert.equal(beatsExpected(5.5, 5), 1);
});

Deno.test("ChunkedDecoder reads a chunked body however it is cut", () => {
  const wire = new TextEncoder().encode(
    "6\r\nevent:\r\n1a;ext=1\r\n session\ndata: abc\n\ndata: \r\n" +
      "0\r\nTrailer: x\r\n\r\nHTTP/1.1 204",
  );
  const body = "event: session\ndata: abc\n\ndata: ";
  for (const cut of [1, 2, 3, 7, 16, wire.length]) {
    const d = new ChunkedDecoder();
    let text = "";
    let rest = 0;
    for (let i = 0; i < wire.length && !d.done; i += cut) {
      const piece = wire.subarray(i, i + cut);
      for (const part of d.feed(piece)) text += new TextDecoder().decode(part);
      if (d.done) rest = piece.length - d.used;
    }
    assert.equal(text, body, `cut ${cut}`);
    assert.ok(d.done, `cut ${cut}`);
    // What follows the body is not the body's.
    const after = new TextEncoder().encode("HTTP/1.1 204").length;
    assert.ok(rest <= after, `cut ${cut}`);
  }
  const whole = new ChunkedDecoder();
  whole.feed(wire);
  assert.equal(
    new TextDecoder().decode(wire.subarray(whole.used)),
    "HTTP/1.1 204",
  );
  assert.throws(
    () => new ChunkedDecoder().feed(new TextEncoder().encode("zz\r\n")),
    SyntaxError,
  );
});

Deno.test("ResponseReader reads back-to-back answers with and without bodies", () => {
  const wire = new TextEncoder().encode(
    "HTTP/1.1 204 No Content\r\nvary: origin\r\n\r\n" +
      "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n" +
      "Content-Length: 9\r\n\r\nNot Found" +
      "HTTP/1.1 413 Payload Too Large\r\ntransfer-encoding: chunked\r\n\r\n" +
      "3\r\nToo\r\n6\r\n large\r\n0\r\n\r\n" +
      "HTTP/1.1 204 No Content\r\n\r\n",
  );
  const want = [
    { status: 204, body: "" },
    { status: 404, body: "Not Found" },
    { status: 413, body: "Too large" },
    { status: 204, body: "" },
  ];
  for (const cut of [1, 5, 13, wire.length]) {
    const r = new ResponseReader();
    const got = [];
    for (let i = 0; i < wire.length; i += cut) {
      got.push(...r.feed(wire.subarray(i, i + cut)));
    }
    assert.deepEqual(got, want, `cut ${cut}`);
  }
  assert.deepEqual(
    new ResponseReader().feed(new TextEncoder().encode("garbage\r\n\r\n")),
    [{ status: 0, body: "" }],
  );
});

Deno.test("Tally.merge adds another process's counts and samples", () => {
  const tally = new Tally();
  tally.add("timeouts", "here");
  const other = new Tally();
  other.add("connectFailed", "there");
  other.add("connectFailed", "again");
  tally.merge(other.toJSON());
  assert.deepEqual(
    [tally.timeouts, tally.connectFailed, tally.total],
    [1, 2, 3],
  );
  assert.deepEqual(tally.samples, [
    "timeouts: here",
    "connectFailed: there",
    "connectFailed: again",
  ]);
});

Deno.test("parseConfig: --cluster selects the cluster scenarios, --quick shrinks them", () => {
  const full = parseConfig(["--cluster"])!;
  assert.deepEqual([...full.only], ["cluster-relay", "cluster-capacity"]);
  assert.deepEqual(
    [full.clusterPeers, full.redisGroups, full.relayNodes],
    [37500, 19500, "split"],
  );
  const quick = parseConfig(["--cluster", "--quick"])!;
  assert.deepEqual([quick.clusterPeers, quick.redisGroups, quick.runs], [
    4000,
    2000,
    1,
  ]);
  assert.deepEqual(
    [...parseConfig(["--cluster", "--only", "relay-sse"])!.only],
    ["relay-sse"],
  );
  assert.deepEqual(
    [...parseConfig([])!.only],
    ["relay", "churn", "capacity"],
  );
  assert.throws(() => parseConfig(["--only", "nope"]), RangeError);
  assert.throws(() => parseConfig(["--relay-nodes", "both"]), RangeError);
});

function fakeHold(peers: number, minBeats: number): HoldResult {
  return {
    nodes: 2,
    target: peers,
    peers,
    processes: 4,
    connectSeconds: 20,
    usPerPeer: 300,
    perNode: [0, 1].map(() => ({
      peers: peers / 2,
      ownedGroups: peers / 2,
      piped: { in: 0, out: 0 },
      cpuPct: 12,
      rssBefore: 50e6,
      rssHeld: 500e6,
      rssPerPeer: 20000,
    })),
    holdPct: 24,
    holdSeconds: 15,
    beats: { live: peers, min: minBeats, max: 3, total: peers * 3 },
    beatsExpected: 2,
    serverBeats: { sent: peers * 3, received: peers * 3 },
    perJoin: { roundTrips: 1, scripts: 1, commands: 3 },
    redisAt: null,
    redisFull: null,
  };
}

function fakeClusterRun(
  single: number,
  affinity: number,
  split: number,
  peers = 37500,
): RunResult {
  const relay = (name: string, us: number) => ({
    name,
    size: 256,
    usPerMsg: us,
    rate: 1e6 / us,
  });
  return {
    clusterRelay: [{
      single: relay("single", single),
      two: relay("two", single * 1.2),
      affinity: relay("affinity", affinity),
      split: relay("split", split),
    }],
    clusterHold: {
      single: fakeHold(19500, 3),
      clusterOne: fakeHold(19500, 3),
      cluster: fakeHold(peers, 3),
    },
    sseRelay: [],
  } as unknown as RunResult;
}

Deno.test("summarizeCluster judges the cluster rows on the median per-run ratio", () => {
  const rows = summarizeCluster([
    fakeClusterRun(20, 21, 38),
    fakeClusterRun(10, 11, 19),
    fakeClusterRun(30, 30, 70),
  ]);
  const affinity = rows.find((r) => r.metric.includes("key affinity"))!;
  // Ratios 1.05, 1.10, 1.00: the median is 1.05, within 1.05x.
  assert.deepEqual(affinity.ratio, 1.05);
  assert.equal(affinity.ok, true);
  const split = rows.find((r) => r.metric.includes("every pair split"))!;
  // Ratios 1.9, 1.9, 2.33: the median is 1.9.
  assert.ok(Math.abs(split.ratio! - 1.9) < 1e-9);
  assert.equal(split.ok, true);
  const peers = rows.find((r) => r.metric.startsWith("peers held"))!;
  assert.deepEqual([peers.server, peers.bare, peers.ok], [37500, 19500, true]);
  const beats = rows.find((r) => r.metric.startsWith("heartbeats"))!;
  assert.equal(beats.ok, true);
});

Deno.test("summarizeCluster fails the peers target when any run held too few", () => {
  const rows = summarizeCluster([
    fakeClusterRun(10, 10, 20),
    fakeClusterRun(10, 10, 20, CLUSTER_TARGETS.peers - 1),
    fakeClusterRun(10, 10, 20),
  ]);
  assert.equal(rows.find((r) => r.metric.startsWith("peers held"))!.ok, false);
});

Deno.test("summarizeCluster fails the heartbeat row when a peer missed one", () => {
  const run = fakeClusterRun(10, 10, 20);
  run.clusterHold!.clusterOne.beats.min = 1;
  const rows = summarizeCluster([run]);
  assert.equal(rows.find((r) => r.metric.startsWith("heartbeats"))!.ok, false);
});

Deno.test("beatsAnswered allows the nodes' count 0.1 % short, not a closed peer", () => {
  const h = fakeHold(10000, 2);
  assert.equal(beatsAnswered(h), true);
  h.serverBeats.received = Math.ceil(h.beats.total * 0.999);
  assert.equal(beatsAnswered(h), true);
  h.serverBeats.received = Math.floor(h.beats.total * 0.99);
  assert.equal(beatsAnswered(h), false);
  const closed = fakeHold(10000, 2);
  closed.peers = 9999;
  assert.equal(beatsAnswered(closed), false);
  assert.equal(beatsAnswered(undefined), false);
});
