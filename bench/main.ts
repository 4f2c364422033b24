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
 * deno task bench --cluster     # 2 nodes on Redis against 1: peers, relay, Redis
 * deno task bench --only relay-sse   # the fallback against WebSocket
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ywebrtcMain } from "./ywebrtc.ts";
import { peerjsMain } from "./peerjs.ts";
import {
  type BenchCluster,
  holdPeers,
  type HoldResult,
  pipedCheck,
  type RedisLoad,
  RENEWAL_PERIOD,
  startCluster,
} from "./cluster.ts";
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
  type RelaySide,
  soak,
  type SoakResult,
  Tally,
} from "./scenarios.ts";
import {
  fmt,
  type Layout,
  markdownTable,
  median,
  openFileLimits,
  place,
  ratio,
  SOAK_GAUGES,
  type SummaryRow,
} from "./stats.ts";

const USAGE = `Usage: deno task bench [options]

  --quick               one short run (under a minute; --cluster: under 2)
  --runs <n>            runs (default 3, 1 with --quick)
  --only <list>         scenarios, comma-separated: relay,churn,capacity,soak,
                        cluster-relay,cluster-capacity,relay-sse
                        (default relay,churn,capacity: soak is a leak check)
  --only ywebrtc        y-webrtc: sigver against y-webrtc's own bin/server.js
                        (bench/ywebrtc.ts; --quick, --runs <n>)
  --only peerjs         PeerJS: sigver against peer 1.0.2, the original PeerServer
                        (bench/peerjs.ts; --quick, --runs <n>)
  --cluster             the cluster scenarios: --only cluster-relay,cluster-capacity
                        (2 nodes on a real redis-server, one per core, against
                        1 node: peers held, CPU per relayed message with key
                        affinity and with every pair split, Redis operations)
  --cluster-peers <n>   peers held by the 2 nodes (default 37500, 4000 with --quick)
  --redis-groups <n>    groups at which Redis is measured first (default 19500,
                        2000 with --quick)
  --relay-nodes <how>   cluster-relay: "split" (node i on CPU i, the default)
                        or "shared" (both nodes on the single node's CPU 1)
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
  /** Peers the 2-node cluster holds. */
  clusterPeers: number;
  /** Groups at which Redis is measured first. */
  redisGroups: number;
  /** Seconds of each Redis window. */
  redisWindow: number;
  /** Where cluster-relay's nodes run: one per CPU, or both on CPU 1. */
  relayNodes: "split" | "shared";
}

/**
 * RSS an idle peer may cost over the bare relay (without heartbeats): what
 * the heartbeat traffic costs any server, measured at about 1.9 KB by the
 * capacity floor.
 */
export const RSS_ALLOWANCE = 2048;

/**
 * Relay configurations of the cluster and fallback comparisons: a small
 * signaling message (an ICE candidate) and a large one (an SDP), one in
 * flight per pair.
 */
export const PAIR_CASES: readonly { size: number; window: number }[] = [
  { size: 256, window: 1 },
  { size: 4096, window: 1 },
];

/** The scenarios `--only` takes. */
export const SCENARIOS: readonly string[] = [
  "relay",
  "churn",
  "capacity",
  "soak",
  "cluster-relay",
  "cluster-capacity",
  "relay-sse",
];

/** Pairs per side in the relay scenarios. */
const PAIRS = 50;

/** Relay configurations of the issue: sizes x windows. */
export const RELAY_CASES: readonly { size: number; window: number }[] = [
  { size: 256, window: 1 },
  { size: 256, window: 4 },
  { size: 4096, window: 1 },
  { size: 4096, window: 4 },
];

/**
 * Reads the flags.
 *
 * @param args The flags.
 * @returns The configuration, or `undefined` for `--help`.
 * @throws {RangeError} For a value out of range or an unknown scenario.
 * @throws {TypeError} For an unknown flag.
 */
export function parseConfig(args: string[]): BenchConfig | undefined {
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
      cluster: { type: "boolean" },
      "cluster-peers": { type: "string" },
      "redis-groups": { type: "string" },
      "relay-nodes": { type: "string" },
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
    (values.only ??
      (values.cluster
        ? "cluster-relay,cluster-capacity"
        : "relay,churn,capacity")).split(",").map((s) => s.trim()),
  );
  for (const s of only) {
    if (!SCENARIOS.includes(s)) {
      throw new RangeError(`invalid scenario in --only: '${s}'`);
    }
  }
  const relayNodes = values["relay-nodes"] ?? "split";
  if (relayNodes !== "split" && relayNodes !== "shared") {
    throw new RangeError(
      `invalid value for --relay-nodes: '${relayNodes}' (split or shared)`,
    );
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
    clusterPeers: Math.floor(
      num("cluster-peers", values["cluster-peers"], quick ? 4000 : 37500),
    ),
    redisGroups: Math.floor(
      num("redis-groups", values["redis-groups"], quick ? 2000 : 19500),
    ),
    // One whole renewal period (10 s), inside the 15 s hold.
    redisWindow: RENEWAL_PERIOD,
    relayNodes,
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
  /**
   * Relay on one node, on 2 nodes with key affinity, and on 2 nodes with
   * every pair split (CPU summed over the nodes), for each case.
   */
  clusterRelay: {
    single: RelayResult;
    /** The control: two plain nodes (no Redis), each pair on one. */
    two: RelayResult;
    affinity: RelayResult;
    split: RelayResult;
  }[];
  /**
   * Idle peers held by one node, by a 1-node cluster (the same pinning: a
   * cluster node's own cost) and by the 2-node cluster.
   */
  clusterHold: {
    single: HoldResult;
    clusterOne: HoldResult;
    cluster: HoldResult;
  } | null;
  /** Relay with both peers on the fallback against both on WebSocket. */
  sseRelay: { ws: RelayResult; sse: RelayResult }[];
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
    clusterRelay: [],
    clusterHold: null,
    sseRelay: [],
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
          pairs: PAIRS,
          size: c.size,
          window: c.window,
          seconds: config.seconds,
          warmup: config.warmup,
          slice: config.quick ? 0.5 : 1,
        };
        const [sr, br] = await relay(
          [
            { name: "sigver", servers: [s], protocol: true },
            { name: "bare", servers: [b], protocol: false },
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
  if (config.only.has("cluster-relay")) {
    // The single node on the server CPU as in the relay scenario; the
    // cluster's nodes one per CPU (the load generator shares CPU 0 with
    // node 0), or both on the server CPU with --relay-nodes shared. The
    // control: two plain nodes (no Redis) pinned as the cluster's, each
    // pair on one of them, as with key affinity: what spreading the same
    // load over two processes costs, cluster or not.
    const nodeCpus = [0, 1].map((i) =>
      !pinned ? undefined : config.relayNodes === "shared" ? 1 : i
    );
    const s = await sigver();
    const plain: ServerProcess[] = [];
    let cluster: BenchCluster | undefined;
    try {
      for (const c of nodeCpus) {
        plain.push(
          await startServer({
            kind: "sigver",
            cpu: c,
            flags: config.sigverFlags,
            denoFlags: config.denoFlags,
            script: config.sigver,
          }),
        );
      }
      cluster = await startCluster({
        cpus: nodeCpus,
        flags: config.sigverFlags,
        denoFlags: config.denoFlags,
        script: config.sigver,
      });
      const on = (
        name: string,
        nodes: readonly ServerProcess[],
        layout: Layout,
        check: boolean,
      ): RelaySide => ({
        name,
        servers: nodes,
        protocol: true,
        ports: (i) => {
          const p = place(layout, i, nodes.length);
          return { member: nodes[p.member].port, joiner: nodes[p.joiner].port };
        },
        check: check ? pipedCheck(nodes, layout, PAIRS) : undefined,
      });
      for (const c of PAIR_CASES) {
        const [single, two, affinity, split] = await relay(
          [
            { name: "single", servers: [s], protocol: true },
            on("two", plain, "affinity", false),
            on("affinity", cluster.nodes, "affinity", true),
            on("split", cluster.nodes, "split", true),
          ],
          _relayConfig(config, c),
          env,
          tally,
        );
        for (const r of [single, two, affinity, split]) {
          bound(`cluster relay ${c.size}B ${r.name}`, r);
        }
        result.clusterRelay.push({ single, two, affinity, split });
      }
    } finally {
      await finish(s);
      for (const n of plain) await finish(n);
      for (const n of cluster?.nodes ?? []) await finish(n);
      await cluster?.stop();
    }
  }
  if (config.only.has("cluster-capacity")) {
    const hold = {
      redisGroups: config.redisGroups,
      redisWindow: config.redisWindow,
      hold: config.hold,
      concurrency: 64,
      perProcess: 10000,
      sources: config.sources || 8,
    };
    // One node on the server CPU, its load on CPU 0 (as in capacity).
    const s = await sigver();
    let single: HoldResult;
    try {
      single = await holdPeers(
        [s],
        undefined,
        {
          ...hold,
          peers: config.peers,
          loadCpus: pinned ? "0" : undefined,
        },
        env,
        tally,
      );
    } finally {
      await finish(s);
    }
    // The same on a 1-node cluster: what being a cluster node costs per
    // peer held and per join (leases), pinned as the single node, and the
    // Redis load of exactly that many groups.
    let one: BenchCluster | undefined;
    let clusterOne: HoldResult;
    try {
      one = await startCluster({
        cpus: [pinned ? 1 : undefined],
        redisCpus: pinned ? "0" : undefined,
        flags: config.sigverFlags,
        denoFlags: config.denoFlags,
        script: config.sigver,
      });
      clusterOne = await holdPeers(
        one.nodes,
        one,
        {
          ...hold,
          redisGroups: 0,
          peers: config.peers,
          loadCpus: pinned ? "0" : undefined,
        },
        env,
        tally,
      );
    } finally {
      for (const n of one?.nodes ?? []) await finish(n);
      await one?.stop();
    }
    // Two nodes, one per CPU; the load and Redis go where there is room.
    const all = pinned ? `0-${facts.cpus - 1}` : undefined;
    let cluster: BenchCluster | undefined;
    try {
      cluster = await startCluster({
        cpus: [0, 1].map((i) => pinned ? i : undefined),
        redisCpus: all,
        flags: config.sigverFlags,
        denoFlags: config.denoFlags,
        script: config.sigver,
      });
      const held = await holdPeers(
        cluster.nodes,
        cluster,
        {
          ...hold,
          peers: config.clusterPeers,
          loadCpus: all,
        },
        env,
        tally,
      );
      result.clusterHold = { single, clusterOne, cluster: held };
    } finally {
      for (const n of cluster?.nodes ?? []) await finish(n);
      await cluster?.stop();
    }
  }
  if (config.only.has("relay-sse")) {
    // Two sigver processes on the server CPU: one whose pairs are on
    // WebSocket, one whose pairs are on the fallback.
    const ws = await sigver();
    const sse = await sigver();
    try {
      for (const c of PAIR_CASES) {
        const [w, e] = await relay(
          [
            { name: "ws", servers: [ws], protocol: true },
            { name: "sse", servers: [sse], protocol: true, transport: "sse" },
          ],
          _relayConfig(config, c),
          env,
          tally,
        );
        bound(`relay-sse ${c.size}B ws`, w);
        bound(`relay-sse ${c.size}B sse`, e);
        result.sseRelay.push({ ws: w, sse: e });
      }
    } finally {
      await finish(ws);
      await finish(sse);
    }
  }
  result.sigverLogLines = logLines;
  result.seconds = (performance.now() - t0) / 1000;
  result.ok = tally.total === 0 && (result.soak?.pass ?? true);
  return result;
}

function _relayConfig(
  config: BenchConfig,
  c: { size: number; window: number },
) {
  return {
    pairs: PAIRS,
    size: c.size,
    window: c.window,
    seconds: config.seconds,
    warmup: config.warmup,
    slice: config.quick ? 0.5 : 1,
  };
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

/** Targets of issue #10's cluster rows. */
export const CLUSTER_TARGETS = {
  /** Idle peers held by 2 nodes. */
  peers: 37000,
  /** CPU per relayed message with key affinity, over one node's. */
  affinity: 1.05,
  /** CPU per relayed message with every pair split, over one node's. */
  split: 2,
} as const;

/**
 * The cluster and fallback table: medians over the runs; each ratio is the
 * median of the per-run ratios to the reference of the same run (one node,
 * or the WebSocket relay).
 *
 * @param runs The results of the runs.
 * @returns The rows ("measured" and "reference" columns).
 */
export function summarizeCluster(runs: readonly RunResult[]): SummaryRow[] {
  const rows: SummaryRow[] = [];
  const med = (f: (r: RunResult) => number | null | undefined) =>
    median(runs.map((r) => f(r) ?? null));
  const cases = runs[0]?.clusterRelay?.length ?? 0;
  for (let i = 0; i < cases; i++) {
    const size = runs[0].clusterRelay[i].single.size;
    const at = (x: RunResult) => x.clusterRelay?.[i];
    rows.push({
      metric: `cluster relay ${size} B: server CPU µs/msg, 1 node`,
      server: med((x) => at(x)?.single.usPerMsg),
      bare: null,
      ratio: null,
      target: `${fmt(med((x) => at(x)?.single.rate), 0)} msgs/s`,
      ok: null,
    });
    const two = med((x) => ratio(at(x)?.two?.usPerMsg, at(x)?.single.usPerMsg));
    rows.push({
      metric:
        `cluster relay ${size} B: control, 2 plain nodes (no Redis), each pair on one`,
      server: med((x) => at(x)?.two?.usPerMsg),
      bare: med((x) => at(x)?.single.usPerMsg),
      ratio: two,
      target: `what 2 processes cost (${
        fmt(med((x) => at(x)?.two?.rate), 0)
      } msgs/s)`,
      ok: null,
    });
    for (const layout of ["affinity", "split"] as const) {
      const r = med((x) =>
        ratio(at(x)?.[layout].usPerMsg, at(x)?.single.usPerMsg)
      );
      const control = med((x) =>
        ratio(at(x)?.[layout].usPerMsg, at(x)?.two?.usPerMsg)
      );
      const limit = CLUSTER_TARGETS[layout];
      rows.push({
        metric: `cluster relay ${size} B: 2 nodes, ${
          layout === "affinity" ? "key affinity" : "every pair split (piped)"
        }, summed over the nodes`,
        server: med((x) => at(x)?.[layout].usPerMsg),
        bare: med((x) => at(x)?.single.usPerMsg),
        ratio: r,
        target: `<= ${limit.toFixed(2)}x 1 node (${
          fmt(med((x) => at(x)?.[layout].rate), 0)
        } msgs/s; ${fmt(control, 3)}x the control)`,
        ok: r === null ? null : r <= limit,
      });
    }
  }
  const hold = (x: RunResult) => x.clusterHold;
  if (runs[0]?.clusterHold) {
    const first = runs[0].clusterHold;
    rows.push({
      metric: "peers held: 2 nodes (reference: 1 node)",
      server: med((x) => hold(x)?.cluster.peers),
      bare: med((x) => hold(x)?.single.peers),
      ratio: med((x) => ratio(hold(x)?.cluster.peers, hold(x)?.single.peers)),
      target: `>= ${CLUSTER_TARGETS.peers} (asked ${first.cluster.target} ` +
        `and ${first.single.target})`,
      ok: runs.every((x) =>
        (hold(x)?.cluster.peers ?? 0) >= CLUSTER_TARGETS.peers
      ),
    });
    rows.push({
      metric: "heartbeats per peer while holding, fewest: 2 nodes (1 node)",
      server: med((x) => hold(x)?.cluster.beats.min),
      bare: med((x) => hold(x)?.single.beats.min),
      ratio: null,
      target: `every peer >= ${first.cluster.beatsExpected} and open; ` +
        "the nodes got their answers (3 setups, every run)",
      ok: runs.every((x) =>
        [
          x.clusterHold?.single,
          x.clusterHold?.clusterOne,
          x.clusterHold
            ?.cluster,
        ].every(beatsAnswered)
      ),
    });
    rows.push({
      metric: "CPU % of a core holding: 2 nodes, summed (1 node)",
      server: med((x) => hold(x)?.cluster.holdPct),
      bare: med((x) => hold(x)?.single.holdPct),
      ratio: null,
      target: `per node: ${
        first.cluster.perNode.map((_, n) =>
          fmt(med((x) => hold(x)?.cluster.perNode[n]?.cpuPct), 1)
        ).join(" / ")
      } %`,
      ok: null,
    });
    const per10k = (h: HoldResult | undefined) =>
      h && h.peers > 0 ? h.holdPct / h.peers * 10000 : null;
    rows.push({
      metric: "CPU % of a core per 10,000 idle peers: 1-node cluster (1 node)",
      server: med((x) => per10k(hold(x)?.clusterOne)),
      bare: med((x) => per10k(hold(x)?.single)),
      ratio: med((x) =>
        ratio(per10k(hold(x)?.clusterOne), per10k(hold(x)?.single))
      ),
      target: `2 nodes: ${fmt(med((x) => per10k(hold(x)?.cluster)), 2)}`,
      ok: null,
    });
    const rssMb = (h: HoldResult | undefined, n: number) =>
      h?.perNode[n] ? h.perNode[n].rssHeld / 2 ** 20 : null;
    rows.push({
      metric: "RSS per node holding, MiB: 2 nodes, node 1 (1 node)",
      server: med((x) => rssMb(hold(x)?.cluster, 0)),
      bare: med((x) => rssMb(hold(x)?.single, 0)),
      ratio: null,
      target: `node 2: ${fmt(med((x) => rssMb(hold(x)?.cluster, 1)), 1)} MiB`,
      ok: null,
    });
    const rssPeer = (h: HoldResult | undefined) =>
      median(h?.perNode.map((n) => n.rssPerPeer) ?? []);
    rows.push({
      metric: "RSS per idle peer, bytes: 1-node cluster (1 node)",
      server: med((x) => rssPeer(hold(x)?.clusterOne)),
      bare: med((x) => rssPeer(hold(x)?.single)),
      ratio: med((x) =>
        ratio(rssPeer(hold(x)?.clusterOne), rssPeer(hold(x)?.single))
      ),
      target: `(held - before) / peers; 2 nodes: ${
        fmt(med((x) => rssPeer(hold(x)?.cluster)), 0)
      }`,
      ok: null,
    });
    rows.push({
      metric:
        "server CPU µs per peer to connect and join: 1-node cluster (1 node)",
      server: med((x) => hold(x)?.clusterOne.usPerPeer),
      bare: med((x) => hold(x)?.single.usPerPeer),
      ratio: med((x) =>
        ratio(hold(x)?.clusterOne.usPerPeer, hold(x)?.single.usPerPeer)
      ),
      target: `2 nodes: ${fmt(med((x) => hold(x)?.cluster.usPerPeer), 1)}`,
      ok: null,
    });
    rows.push({
      metric: "Redis per join: round trips (lease scripts)",
      server: med((x) => hold(x)?.clusterOne.perJoin?.roundTrips),
      bare: med((x) => hold(x)?.clusterOne.perJoin?.scripts),
      ratio: null,
      target: `Redis commands, those in scripts included: ${
        fmt(med((x) => hold(x)?.clusterOne.perJoin?.commands), 2)
      }`,
      ok: null,
    });
    const loads: [string, (x: RunResult) => RedisLoad | null | undefined][] = [
      ["1 node", (x) => hold(x)?.clusterOne.redisFull],
      ["2 nodes", (x) => hold(x)?.cluster.redisAt],
      ["2 nodes", (x) => hold(x)?.cluster.redisFull],
    ];
    for (const [who, load] of loads) {
      if (!load(runs[0])) continue;
      rows.push({
        metric: `Redis at ${
          fmt(med((x) => load(x)?.groups), 0)
        } groups on ${who}: ` +
          "commands/s (keys renewed/s)",
        server: med((x) => load(x)?.commandsPerSec),
        bare: med((x) => load(x)?.keysRenewedPerSec),
        ratio: null,
        target: `EVALSHA/s ${fmt(med((x) => load(x)?.evalshaPerSec), 1)}, ${
          fmt(med((x) => load(x)?.usPerScript), 0)
        } µs each; scripts ${
          fmt(med((x) => load(x)?.scriptUsPerSec), 0)
        } µs/s, Redis CPU ${fmt(med((x) => load(x)?.redisCpuPct), 2)} %`,
        ok: null,
      });
    }
  }
  const sseCases = runs[0]?.sseRelay?.length ?? 0;
  for (let i = 0; i < sseCases; i++) {
    const size = runs[0].sseRelay[i].ws.size;
    const at = (x: RunResult) => x.sseRelay?.[i];
    rows.push({
      metric: `fallback relay ${size} B: server CPU µs/msg (WebSocket)`,
      server: med((x) => at(x)?.sse.usPerMsg),
      bare: med((x) => at(x)?.ws.usPerMsg),
      ratio: med((x) => ratio(at(x)?.sse.usPerMsg, at(x)?.ws.usPerMsg)),
      target: "",
      ok: null,
    });
    rows.push({
      metric: `fallback relay ${size} B: msgs/s (WebSocket)`,
      server: med((x) => at(x)?.sse.rate),
      bare: med((x) => at(x)?.ws.rate),
      ratio: med((x) => ratio(at(x)?.sse.rate, at(x)?.ws.rate)),
      target: `RTT p50 ${
        fmtPair(
          med((x) => at(x)?.sse.rttP50),
          med((x) => at(x)?.ws.rttP50),
        )
      } µs`,
      ok: null,
    });
    rows.push({
      metric: `fallback relay ${size} B: load generator CPU µs/msg (WebSocket)`,
      server: med((x) => at(x)?.sse.loadUsPerMsg),
      bare: med((x) => at(x)?.ws.loadUsPerMsg),
      ratio: med((x) => ratio(at(x)?.sse.loadUsPerMsg, at(x)?.ws.loadUsPerMsg)),
      target: "",
      ok: null,
    });
  }
  return rows;
}

/**
 * Whether every peer of a hold got its heartbeats, stayed open, and the
 * nodes got the answers: the nodes count what they received between two
 * reads of `/metrics` just outside the peers' window, so they may see a few
 * more, or a few fewer when answers were still on the wire (0.1 % allowed).
 *
 * @param h The hold.
 * @returns Whether it passes.
 */
export function beatsAnswered(h: HoldResult | undefined): boolean {
  return h !== undefined && h.peers === h.target &&
    h.beats.min >= h.beatsExpected &&
    h.serverBeats.received >= 0.999 * h.beats.total;
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
  // y-webrtc against y-webrtc's own server: a comparison of its own.
  const only = args.indexOf("--only");
  if (only !== -1 && args[only + 1] === "ywebrtc") {
    return await ywebrtcMain(args);
  }
  if (only !== -1 && args[only + 1] === "peerjs") {
    return await peerjsMain(args);
  }
  let config: BenchConfig | undefined;
  try {
    config = parseConfig(args);
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
  const tables: string[] = [];
  const rows = summarize(results);
  if (rows.length > 0) tables.push(markdownTable(rows));
  const clusterRows = summarizeCluster(results);
  if (clusterRows.length > 0) {
    tables.push(markdownTable(clusterRows, ["measured", "reference"]));
  }
  const table = tables.join("\n\n");
  const md =
    `# sigver bench ${stamp}\n\nMedians of ${results.length} run(s); ` +
    "ratio = median of the per-run ratios to the bare relay (to 1 node, or " +
    `to WebSocket, in the second table).\n\n${table}\n`;
  Deno.writeTextFileSync(`${outDir}/${stamp}.md`, md);
  console.error(`\n${table}\n\nresults: ${jsonl}`);
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
