/**
 * `deno task bench`: measures sigver against a bare Deno WebSocket relay in
 * the same run. Prints one JSON line per run on stdout and a markdown table
 * of the medians on stderr; both are also written to `bench/results/`.
 *
 * ```sh
 * deno task bench            # 3 full runs (about 3 minutes each)
 * deno task bench --quick    # 1 short run, under a minute
 * deno task bench --only relay --runs 5
 * deno task bench --only soak   # 100,000 cycles, then the hub must be empty
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type Machine,
  machine,
  pinSelf,
  ROOT,
  type ServerProcess,
  startServer,
  stopAll,
} from "./proc.ts";
import {
  capacity,
  type CapacityResult,
  churn,
  churnBare,
  type ChurnResult,
  type Env,
  relay,
  type RelayResult,
  soak,
  type SoakResult,
  Tally,
} from "./scenarios.ts";
import {
  fmt,
  markdownTable,
  median,
  openFileLimits,
  ratio,
  SOAK_GAUGES,
  type SummaryRow,
} from "./stats.ts";

const USAGE = `Usage: deno task bench [options]

  --quick               one short run (under a minute)
  --runs <n>            runs (default 3, 1 with --quick)
  --only <list>         scenarios, comma-separated: relay,churn,capacity,soak
                        (default relay,churn,capacity: soak is a leak check)
  --cycles <n>          soak cycles (default 100000, 20000 with --quick); the
                        first 20000 (half, when fewer) are the warm-up
  --peers <n>           capacity peers (default 19500, 2000 with --quick)
  --group-size <n>      capacity peers per group (default 1)
  --seconds <s>         relay and churn seconds per measurement (default 10)
  --hold <s>            capacity hold seconds (default 15, 5 with --quick)
  --sources <n>         source addresses 127.0.0.2.. for capacity and churn
                        (default 8; 0: Deno.connect from 127.0.0.1)
  --sigver-flag <flag>  extra server flag (repeatable), e.g. --sigver-flag=--log-level=warn
  --deno-flag <flag>    extra 'deno run' flag for sigver and the bare relay
                        (repeatable),
                        e.g. --deno-flag=--cpu-prof --deno-flag=--cpu-prof-dir=bench/results/prof
  --sigver <file>       the sigver entry point to measure (default server.ts),
                        e.g. an older checkout's server.ts for before/after
  --floor / --no-floor  also measure Deno's floors on the bare relay: capacity
                        peers with heartbeats, churn with the same network work
                        (default: on, off with --quick)
  --no-pin              do not pin the server and the load generator to CPUs
  --help                this help
`;

/** The configuration of a benchmark, from the flags. */
export interface BenchConfig {
  /** Short run. */
  quick: boolean;
  /** Runs. */
  runs: number;
  /** Scenarios to run. */
  only: Set<string>;
  /** Relay and churn seconds. */
  seconds: number;
  /** Warm-up seconds before each relay and churn measurement. */
  warmup: number;
  /** Capacity peers. */
  peers: number;
  /** Capacity group size. */
  groupSize: number;
  /** Capacity hold seconds. */
  hold: number;
  /** Soak cycles. */
  cycles: number;
  /** Source addresses. */
  sources: number;
  /** Extra sigver flags. */
  sigverFlags: string[];
  /** Extra deno flags for sigver. */
  denoFlags: string[];
  /** Pin processes to CPUs. */
  pin: boolean;
  /** The sigver entry point, when not this checkout's `server.ts`. */
  sigver?: string;
  /** Also measure the bare relay with heartbeats in the capacity scenario. */
  floor: boolean;
}

/**
 * RSS an idle peer may cost over the bare relay (without heartbeats): what
 * the heartbeat traffic costs any server, measured at about 1.9 KB by the
 * capacity floor.
 */
export const RSS_ALLOWANCE = 2048;

/** Relay configurations of the issue: sizes x windows. */
export const RELAY_CASES: readonly { size: number; window: number }[] = [
  { size: 256, window: 1 },
  { size: 256, window: 4 },
  { size: 4096, window: 1 },
  { size: 4096, window: 4 },
];

function _config(args: string[]): BenchConfig | undefined {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      quick: { type: "boolean" },
      runs: { type: "string" },
      only: { type: "string" },
      peers: { type: "string" },
      "group-size": { type: "string" },
      seconds: { type: "string" },
      hold: { type: "string" },
      cycles: { type: "string" },
      sources: { type: "string" },
      "sigver-flag": { type: "string", multiple: true },
      "deno-flag": { type: "string", multiple: true },
      "no-pin": { type: "boolean" },
      sigver: { type: "string" },
      floor: { type: "boolean" },
      "no-floor": { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return undefined;
  const quick = values.quick ?? false;
  const num = (name: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
      throw new RangeError(`invalid value for --${name}: '${v}'`);
    }
    return n;
  };
  const only = new Set(
    (values.only ?? "relay,churn,capacity").split(",").map((s) => s.trim()),
  );
  for (const s of only) {
    if (!["relay", "churn", "capacity", "soak"].includes(s)) {
      throw new RangeError(`invalid scenario in --only: '${s}'`);
    }
  }
  const peers = num("peers", values.peers, quick ? 2000 : 19500);
  if (peers > 19500) {
    throw new RangeError(
      "invalid value for --peers: over 19500 would pass the open-file limit of 20000",
    );
  }
  return {
    quick,
    runs: Math.max(1, Math.floor(num("runs", values.runs, quick ? 1 : 3))),
    only,
    seconds: num("seconds", values.seconds, quick ? 1 : 10),
    warmup: quick ? 0.3 : 1,
    peers: Math.floor(peers),
    groupSize: Math.max(
      1,
      Math.floor(num("group-size", values["group-size"], 1)),
    ),
    hold: num("hold", values.hold, quick ? 5.5 : 15),
    cycles: Math.floor(num("cycles", values.cycles, quick ? 20000 : 100000)),
    sources: Math.min(250, Math.floor(num("sources", values.sources, 8))),
    sigverFlags: values["sigver-flag"] ?? [],
    denoFlags: values["deno-flag"] ?? [],
    pin: !(values["no-pin"] ?? false),
    sigver: values.sigver,
    floor: values["no-floor"] ? false : values.floor ?? !quick,
  };
}

/** Everything one run measured: the JSON line. */
export interface RunResult {
  /** Run number, from 1. */
  run: number;
  /** ISO time the run started. */
  started: string;
  /** Seconds the run took. */
  seconds: number;
  /** The machine. */
  machine: Machine;
  /** Whether the processes were pinned. */
  pinned: boolean;
  /** The configuration. */
  config: Omit<BenchConfig, "only"> & { only: string[] };
  /** Relay measurements, sigver and bare for each case. */
  relay: { sigver: RelayResult; bare: RelayResult }[];
  /** Churn (sigver only). */
  churn: ChurnResult | null;
  /** The churn floor: the same network work on the bare relay. */
  churnFloor: ChurnResult | null;
  /**
   * Capacity: sigver, the bare relay, and the bare relay sending heartbeats
   * (the floor of Deno for holding peers that answer heartbeats).
   */
  capacity: {
    sigver: CapacityResult;
    bare: CapacityResult;
    floor: CapacityResult | null;
  } | null;
  /** The soak: many cycles, then the hub must be empty. */
  soak: SoakResult | null;
  /** Log lines sigver wrote during the run. */
  sigverLogLines: number;
  /** Windows in which the load generator, not the server, was the limit. */
  loadgenBound: string[];
  /** Problems counted. */
  errors: Tally;
  /** Whether no problem was counted. */
  ok: boolean;
}

async function _run(
  n: number,
  config: BenchConfig,
  facts: Machine,
  pinned: boolean,
): Promise<RunResult> {
  const started = new Date();
  const t0 = performance.now();
  const tally = new Tally();
  const env: Env = {
    hz: facts.hz,
    pageSize: facts.pageSize,
    tag: `${n}-${Math.random().toString(36).slice(2, 8)}`,
  };
  const cpu = pinned ? 1 : undefined;
  let logLines = 0;
  const sigver = async () =>
    await startServer({
      kind: "sigver",
      cpu,
      flags: config.sigverFlags,
      denoFlags: config.denoFlags,
      script: config.sigver,
    });
  // The bare relay gets the same deno flags: profiles of both compare, and
  // a V8 flag changes both sides of a ratio alike.
  const bare = async () =>
    await startServer({ kind: "bare", cpu, denoFlags: config.denoFlags });
  const finish = async (s: ServerProcess) => {
    if (!s.alive()) {
      tally.add("unexpectedClose", `${s.kind} exited during the run`);
    }
    await s.stop();
    if (s.kind === "sigver") logLines += s.logLines();
  };
  const result: RunResult = {
    run: n,
    started: started.toISOString(),
    seconds: 0,
    machine: facts,
    pinned,
    config: { ...config, only: [...config.only] },
    relay: [],
    churn: null,
    churnFloor: null,
    capacity: null,
    soak: null,
    sigverLogLines: 0,
    loadgenBound: [],
    errors: tally,
    ok: false,
  };
  const bound = (what: string, w: { bottleneck: string }) => {
    if (w.bottleneck === "loadgen") result.loadgenBound.push(what);
  };
  if (config.only.has("relay")) {
    const s = await sigver();
    const b = await bare();
    try {
      for (const c of RELAY_CASES) {
        const rc = {
          pairs: 50,
          size: c.size,
          window: c.window,
          seconds: config.seconds,
          warmup: config.warmup,
          slice: config.quick ? 0.5 : 1,
        };
        const [sr, br] = await relay(
          [
            { server: s, protocol: true },
            { server: b, protocol: false },
          ],
          rc,
          env,
          tally,
        );
        bound(`relay ${c.size}B w${c.window} sigver`, sr);
        bound(`relay ${c.size}B w${c.window} bare`, br);
        result.relay.push({ sigver: sr, bare: br });
      }
    } finally {
      await finish(s);
      await finish(b);
    }
  }
  if (config.only.has("churn")) {
    const cc = {
      groups: 10,
      concurrency: 16,
      seconds: config.seconds,
      warmup: config.warmup,
      sources: config.sources,
    };
    const s = await sigver();
    try {
      result.churn = await churn(s, cc, env, tally);
      bound("churn", result.churn);
    } finally {
      await finish(s);
    }
    if (config.floor) {
      const b = await bare();
      try {
        result.churnFloor = await churnBare(b, cc, env, tally);
        bound("churn floor", result.churnFloor);
      } finally {
        await finish(b);
      }
    }
  }
  if (config.only.has("capacity")) {
    const cc = {
      peers: config.peers,
      groupSize: config.groupSize,
      hold: config.hold,
      concurrency: 128,
      sources: config.sources,
    };
    const s = await sigver();
    let sr: CapacityResult;
    try {
      sr = await capacity(s, true, cc, env, tally);
    } finally {
      await finish(s);
    }
    const b = await bare();
    let br: CapacityResult;
    try {
      br = await capacity(b, false, cc, env, tally);
    } finally {
      await finish(b);
    }
    let fr: CapacityResult | null = null;
    if (config.floor) {
      const f = await startServer({
        kind: "bare",
        cpu,
        flags: ["--heartbeat-interval", "5"],
        denoFlags: config.denoFlags,
      });
      try {
        fr = await capacity(f, false, cc, env, tally);
      } finally {
        await finish(f);
      }
    }
    bound("capacity connect sigver", sr.connect);
    bound("capacity connect bare", br.connect);
    result.capacity = { sigver: sr, bare: br, floor: fr };
  }
  if (config.only.has("soak")) {
    const s = await sigver();
    try {
      result.soak = await soak(
        s,
        {
          cycles: config.cycles,
          // The RSS levels off after 13,000-15,000 cycles (V8 sizing its
          // heap to the load), so the reference is taken after 20,000.
          warmup: Math.min(20000, Math.floor(config.cycles / 2)),
          concurrency: 32,
          sources: config.sources,
          settle: config.quick ? 2 : 5,
        },
        env,
        tally,
      );
      bound("soak", result.soak.window);
    } finally {
      await finish(s);
    }
  }
  result.sigverLogLines = logLines;
  result.seconds = (performance.now() - t0) / 1000;
  result.ok = tally.total === 0 && (result.soak?.pass ?? true);
  return result;
}

/**
 * The summary table: medians over the runs, and the median of the per-run
 * ratios to the bare relay.
 *
 * @param runs The results of the runs.
 * @returns The rows.
 */
export function summarize(runs: readonly RunResult[]): SummaryRow[] {
  const rows: SummaryRow[] = [];
  const med = (f: (r: RunResult) => number | null | undefined) =>
    median(runs.map((r) => f(r) ?? null));
  const relayCases = runs[0]?.relay.length ?? 0;
  for (let i = 0; i < relayCases; i++) {
    const c = runs[0].relay[i].sigver;
    const name = `relay ${c.size} B, ${c.window} in flight`;
    const r = med((x) =>
      ratio(x.relay[i]?.sigver.usPerMsg, x.relay[i]?.bare.usPerMsg)
    );
    rows.push({
      metric: `${name}: server CPU µs/msg`,
      server: med((x) => x.relay[i]?.sigver.usPerMsg),
      bare: med((x) => x.relay[i]?.bare.usPerMsg),
      ratio: r,
      target: "<= 1.10x bare",
      ok: r === null ? null : r <= 1.10,
    });
    rows.push({
      metric: `${name}: msgs/s`,
      server: med((x) => x.relay[i]?.sigver.rate),
      bare: med((x) => x.relay[i]?.bare.rate),
      ratio: med((x) => ratio(x.relay[i]?.sigver.rate, x.relay[i]?.bare.rate)),
      target: "",
      ok: null,
    });
    rows.push({
      metric: `${name}: RTT p50 / p99 µs`,
      server: med((x) => x.relay[i]?.sigver.rttP50),
      bare: med((x) => x.relay[i]?.bare.rttP50),
      ratio: null,
      target: `p99 ${
        fmtPair(
          med((x) => x.relay[i]?.sigver.rttP99),
          med((x) => x.relay[i]?.bare.rttP99),
        )
      }`,
      ok: null,
    });
  }
  if (runs[0]?.churn) {
    const us = med((x) => x.churn?.usPerJoin);
    rows.push({
      metric: "churn: server CPU µs/join",
      server: us,
      bare: null,
      ratio: null,
      target: "<= 200 µs",
      ok: us === null ? null : us <= 200,
    });
    if (runs[0].churnFloor) {
      rows.push({
        metric:
          "churn floor: same connection and frames on the bare relay, µs/join",
        server: us,
        bare: med((x) => x.churnFloor?.usPerJoin),
        ratio: med((x) => ratio(x.churn?.usPerJoin, x.churnFloor?.usPerJoin)),
        target: "reference: what Deno itself costs",
        ok: null,
      });
    }
    rows.push({
      metric: "churn: joins/s",
      server: med((x) => x.churn?.rate),
      bare: med((x) => x.churnFloor?.rate),
      ratio: null,
      target: "",
      ok: null,
    });
  }
  if (runs[0]?.capacity) {
    const pct0 = () => med((x) => x.capacity?.sigver.holdPct);
    const peers = runs[0].capacity.sigver.peers;
    // Heartbeats that came during the connect phase (it outlasted a
    // heartbeat period) are not connection work: the target row leaves them
    // out; the next row has the figure as measured.
    const net = (c: CapacityResult | undefined) =>
      c?.usPerConnectionNet ?? c?.usPerConnection;
    const conn = med((x) =>
      ratio(net(x.capacity?.sigver), net(x.capacity?.bare))
    );
    rows.push({
      metric: "capacity: server CPU µs/new connection",
      server: med((x) => net(x.capacity?.sigver)),
      bare: med((x) => net(x.capacity?.bare)),
      ratio: conn,
      target: "<= 1.15x bare",
      ok: conn === null ? null : conn <= 1.15,
    });
    const beats = Math.max(
      ...runs.map((x) => x.capacity?.sigver.beatsDuringConnect ?? 0),
    );
    rows.push({
      metric: "capacity: server CPU µs/new connection, heartbeats included",
      server: med((x) => x.capacity?.sigver.usPerConnection),
      bare: med((x) => x.capacity?.bare.usPerConnection),
      ratio: med((x) =>
        ratio(
          x.capacity?.sigver.usPerConnection,
          x.capacity?.bare.usPerConnection,
        )
      ),
      target: `heartbeats during the connect phase: up to ${beats} a run`,
      ok: null,
    });
    rows.push({
      metric: "capacity: server CPU µs/member join (connect -> connected)",
      server: med((x) => x.capacity?.sigver.usPerMemberJoin),
      bare: null,
      ratio: null,
      target: "",
      ok: null,
    });
    const s = med((x) => x.capacity?.sigver.rssPerPeer);
    const b = med((x) => x.capacity?.bare.rssPerPeer);
    const diff = med((x) =>
      x.capacity?.sigver.rssPerPeer != null &&
        x.capacity?.bare.rssPerPeer != null
        ? x.capacity.sigver.rssPerPeer - x.capacity.bare.rssPerPeer
        : null
    );
    rows.push({
      metric: "capacity: server RSS bytes/idle peer",
      server: s,
      bare: b,
      ratio: ratio(s, b),
      target: `<= bare + ${RSS_ALLOWANCE} B (diff ${
        diff === null ? "-" : Math.round(diff)
      } B)`,
      ok: diff === null ? null : diff <= RSS_ALLOWANCE,
    });
    const ss = med((x) => x.capacity?.sigver.rssSlope);
    const bs = med((x) => x.capacity?.bare.rssSlope);
    const slopeDiff = med((x) =>
      x.capacity?.sigver.rssSlope != null &&
        x.capacity?.bare.rssSlope != null
        ? x.capacity.sigver.rssSlope - x.capacity.bare.rssSlope
        : null
    );
    rows.push({
      metric: "capacity: server RSS bytes/idle peer, marginal (N/2 to N)",
      server: ss,
      bare: bs,
      ratio: ratio(ss, bs),
      target: `(diff ${slopeDiff === null ? "-" : Math.round(slopeDiff)} B)`,
      ok: null,
    });
    if (runs[0].capacity.floor) {
      const f = med((x) => x.capacity?.floor?.holdPct);
      rows.push({
        metric: "capacity floor: bare relay + heartbeats, CPU % holding",
        server: pct0(),
        bare: f,
        ratio: med((x) =>
          ratio(x.capacity?.sigver.holdPct, x.capacity?.floor?.holdPct)
        ),
        target: "reference: what Deno itself costs",
        ok: null,
      });
      rows.push({
        metric: "capacity floor: bare relay + heartbeats, RSS bytes/peer",
        server: s,
        bare: med((x) => x.capacity?.floor?.rssPerPeer),
        ratio: med((x) =>
          ratio(x.capacity?.sigver.rssPerPeer, x.capacity?.floor?.rssPerPeer)
        ),
        target: "reference: what Deno itself costs",
        ok: null,
      });
    }
    const pct = med((x) => x.capacity?.sigver.holdPct);
    const at19500 = pct === null ? null : pct * 19500 / Math.max(1, peers);
    rows.push({
      metric: `capacity: server CPU % of a core holding ${peers} peers`,
      server: pct,
      bare: med((x) => x.capacity?.bare.holdPct),
      ratio: null,
      target: peers >= 19500
        ? "<= 6 %"
        : `<= 6 % at 19500 (scaled: ${at19500?.toFixed(2)} %)`,
      ok: at19500 === null ? null : at19500 <= 6,
    });
  }
  if (runs[0]?.soak) {
    const cycles = runs[0].soak.cycles;
    const all = runs.map((x) => x.soak).filter((x) => x != null);
    const left = (name: string) =>
      Math.max(...all.map((x) => x.gauges[name] ?? NaN));
    rows.push({
      metric:
        `soak: peers / groups / members / bound joiners after ${cycles} cycles`,
      server: null,
      bare: null,
      ratio: null,
      target: `all 0 (worst run: ${
        SOAK_GAUGES.map((g) => Number.isNaN(left(g)) ? "-" : left(g)).join(
          " / ",
        )
      })`,
      ok: all.length === runs.length && all.every((x) => x.empty),
    });
    const r = med((x) => x.soak?.rssRatio);
    rows.push({
      metric: "soak: server RSS at the end / after the warm-up",
      server: med((x) => x.soak?.rssEnd),
      bare: med((x) => x.soak?.rssWarm),
      ratio: r,
      target: "<= 1.10x",
      ok: all.length === runs.length && all.every((x) => x.rssOk),
    });
    rows.push({
      metric: "soak: server RSS growth after the warm-up, bytes/cycle",
      server: med((x) => x.soak?.rssSlope),
      bare: null,
      ratio: null,
      target: "a leak shows as a steady growth",
      ok: null,
    });
    rows.push({
      metric: "soak: cycles/s; server CPU µs/cycle",
      server: med((x) => x.soak?.rate),
      bare: null,
      ratio: null,
      target: `${fmt(med((x) => x.soak?.usPerCycle), 1)} µs/cycle`,
      ok: null,
    });
  }
  return rows;
}

function fmtPair(a: number | null, b: number | null): string {
  const f = (v: number | null) => v === null ? "-" : Math.round(v).toString();
  return `${f(a)} vs ${f(b)}`;
}

/**
 * Runs the benchmark.
 *
 * @param args Flags.
 * @returns The exit code: 0, 1 when a run counted a problem, 2 for bad flags.
 */
export async function main(args: string[]): Promise<number> {
  let config: BenchConfig | undefined;
  try {
    config = _config(args);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    console.error(USAGE);
    return 2;
  }
  if (config === undefined) {
    console.log(USAGE);
    return 0;
  }
  const facts = await machine();
  // Every capacity peer is a socket here and one in the server: both must
  // stay under the open-file limit (the children inherit ours).
  const limits = openFileLimits(Deno.readTextFileSync("/proc/self/limits"));
  if (limits !== undefined && config.peers > limits.soft - 300) {
    const peers = Math.max(0, limits.soft - 300);
    console.error(
      `bench: open-file limit ${limits.soft}: capacity peers lowered from ${config.peers} to ${peers}`,
    );
    config.peers = peers;
  }
  const pinned = config.pin && facts.pinning && (await pinSelf(0));
  const outDir = `${ROOT}bench/results`;
  Deno.mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const jsonl = `${outDir}/${stamp}.jsonl`;
  const onSignal = () => {
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const results: RunResult[] = [];
  try {
    console.error(
      `bench: ${config.runs} run(s)${config.quick ? " (quick)" : ""}, ` +
        `${facts.cpus} CPUs, ${
          pinned ? "server on CPU 1, load on CPU 0" : "not pinned"
        }, ` +
        `load average ${facts.load}`,
    );
    for (let n = 1; n <= config.runs; n++) {
      const r = await _run(n, config, facts, pinned);
      results.push(r);
      const line = JSON.stringify(r);
      console.log(line);
      Deno.writeTextFileSync(jsonl, line + "\n", { append: true });
      console.error(
        `run ${n}: ${r.seconds.toFixed(1)} s, ${r.ok ? "ok" : "FAILED"}` +
          (r.loadgenBound.length
            ? `; load generator was the bottleneck in: ${
              r.loadgenBound.join(", ")
            }`
            : ""),
      );
      if (!r.ok) console.error(JSON.stringify(r.errors));
    }
  } finally {
    await stopAll();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  const table = markdownTable(summarize(results));
  const md =
    `# sigver bench ${stamp}\n\nMedians of ${results.length} run(s); ` +
    `ratio = median of the per-run ratios to the bare relay.\n\n${table}\n`;
  Deno.writeTextFileSync(`${outDir}/${stamp}.md`, md);
  console.error(`\n${table}\n\nresults: ${jsonl}`);
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
