/**
 * The cluster part of the benchmark (`deno task bench --cluster`): a real
 * `redis-server` and sigver nodes pinned one per core, the peers they hold
 * against one node, the Redis load of their leases, and the pieces that the
 * cluster relay scenario needs (placement checks). Every process is stopped
 * by its PID on the way out, also on error (`stopAll` in `proc.ts`).
 *
 * @module
 */

import { RedisClient } from "../cluster/redis.ts";
import { type RedisServer, startRedis } from "../dev/redis_server.ts";
import {
  freePort,
  type HolderProcess,
  readStat,
  run,
  type ServerProcess,
  startHolder,
  startServer,
  track,
} from "./proc.ts";
import { type Env, type HoldPlan, Meter, type Tally } from "./scenarios.ts";
import {
  type BeatCount,
  beatsExpected,
  type CommandStat,
  commandWindow,
  cpuMicros,
  cpuPercent,
  expectedPiped,
  type Layout,
  mergeBeats,
  parseCommandStats,
  perOp,
  type ProcStat,
  readGauges,
  readLabelled,
  shares,
} from "./stats.ts";

const _sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** sigver's default heartbeat period, seconds. */
export const HEARTBEAT_PERIOD = 5;

/**
 * sigver's lease renewal period, seconds: a third of the default 30 s lease
 * (`--cluster-lease-ttl`), which the nodes keep.
 */
export const RENEWAL_PERIOD = 10;

/** A Redis and the sigver nodes on it. */
export interface BenchCluster {
  /** The Redis server. */
  readonly redis: RedisServer;
  /** A connection to it, for `INFO`. */
  readonly client: RedisClient;
  /** The nodes. */
  readonly nodes: readonly ServerProcess[];
  /** Stops the nodes, then Redis. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startCluster}. */
export interface ClusterOptions {
  /** The CPU of each node (`undefined`: not pinned); one node per entry. */
  cpus: readonly (number | undefined)[];
  /** The CPUs Redis may run on (`taskset -c`), when not this process's. */
  redisCpus?: string;
  /** More flags for every node. */
  flags?: string[];
  /** More `deno run` flags for every node. */
  denoFlags?: string[];
  /** The sigver entry point, when not this checkout's `server.ts`. */
  script?: string;
}

/**
 * Starts Debian's `redis-server` on a free port, then one sigver node per
 * entry of `cpus`, each with `--redis`, its own `--cluster-url` and a
 * shared random secret.
 *
 * @param options Nodes, pinning, flags.
 * @returns The running cluster.
 */
export async function startCluster(
  options: ClusterOptions,
): Promise<BenchCluster> {
  const redis = await startRedis();
  let stopping: Promise<void> | undefined;
  const nodes: ServerProcess[] = [];
  let client: RedisClient | undefined;
  const stop = () =>
    stopping ??= (async () => {
      await Promise.all(nodes.map((n) => n.stop()));
      await client?.close();
      await redis[Symbol.asyncDispose]();
      forget();
    })();
  const forget = track({ stop });
  try {
    if (options.redisCpus !== undefined && redis.pid !== undefined) {
      await run("taskset", [
        "-a",
        "-p",
        "-c",
        options.redisCpus,
        String(redis.pid),
      ]);
    }
    client = new RedisClient(redis.url);
    const secret = crypto.randomUUID();
    for (const cpu of options.cpus) {
      const port = freePort();
      nodes.push(
        await startServer({
          kind: "sigver",
          cpu,
          port,
          script: options.script,
          denoFlags: options.denoFlags,
          flags: [
            "--redis",
            redis.url,
            "--cluster-url",
            `ws://127.0.0.1:${port}`,
            "--cluster-secret",
            secret,
            ...(options.flags ?? []),
          ],
        }),
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { redis, client, nodes, stop };
}

/**
 * Reads a server's `/metrics`.
 *
 * @param port The server's port.
 * @returns The exposition, or `""` when it cannot be read.
 */
export async function metrics(port: number): Promise<string> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    return await response.text();
  } catch {
    return "";
  }
}

/**
 * A check for a relay side on a cluster: the nodes' piped-peer gauges must
 * be what the layout makes them (none with key affinity, one in and one out
 * per split pair). Pipes of earlier pairs may take a moment to close, so it
 * waits up to 3 s for the gauges to settle.
 *
 * @param nodes The nodes, in the layout's order.
 * @param layout The layout of the pairs.
 * @param pairs The pairs open.
 * @returns The check, for `RelaySide.check`.
 */
export function pipedCheck(
  nodes: readonly ServerProcess[],
  layout: Layout,
  pairs: number,
): () => Promise<string | undefined> {
  return async () => {
    const want = expectedPiped(layout, pairs, nodes.length);
    let got = "";
    const deadline = performance.now() + 3000;
    for (;;) {
      const texts = await Promise.all(nodes.map((n) => metrics(n.port)));
      const piped = texts.map((t) =>
        readLabelled(t, "sigver_cluster_piped_peers", "direction")
      );
      const ok = piped.every((p, i) =>
        (p.in ?? -1) === want.in[i] && (p.out ?? -1) === want.out[i]
      );
      if (ok) return undefined;
      got = piped.map((p) => `in ${p.in} out ${p.out}`).join("; ");
      if (performance.now() > deadline) break;
      await _sleep(100);
    }
    return `piped peers ${got}, expected ${
      want.in.map((n, i) => `in ${n} out ${want.out[i]}`).join("; ")
    }`;
  };
}

// ---------------------------------------------------------------- Redis

/** One sample of what Redis and the nodes counted. */
interface _RedisSample {
  t: number;
  commands: Record<string, CommandStat>;
  redisStat: ProcStat | undefined;
  renewals: number;
  roundTrips: number;
}

async function _redisSample(cluster: BenchCluster): Promise<_RedisSample> {
  const info = await cluster.client.command("INFO", "commandstats");
  const texts = await Promise.all(cluster.nodes.map((n) => metrics(n.port)));
  const sum = (name: string) =>
    texts.reduce((s, t) => s + (readGauges(t, [name])[name] ?? 0), 0);
  const pid = cluster.redis.pid;
  return {
    t: performance.now(),
    commands: parseCommandStats(String(info)),
    redisStat: pid === undefined ? undefined : readStat(pid),
    renewals: sum("sigver_cluster_lease_renewals_total"),
    roundTrips: sum("sigver_cluster_redis_round_trips_total"),
  };
}

/** Redis's load over a window, from `INFO commandstats` and the nodes. */
export interface RedisLoad {
  /** Groups (leases) the nodes held. */
  groups: number;
  /** Seconds of the window. */
  seconds: number;
  /**
   * Redis commands per second as `INFO commandstats` counts them: a script
   * and each command it runs count one each (`INFO` left out).
   */
  commandsPerSec: number;
  /** `EVALSHA` calls per second: the lease scripts the nodes send. */
  evalshaPerSec: number;
  /**
   * Redis µs per lease script sent, the commands it runs included (a script
   * Redis did not know yet is sent again as `EVAL`: its time counts here).
   */
  usPerScript: number | null;
  /**
   * Redis µs per second in the lease scripts (`EVALSHA` and `EVAL`, the
   * commands they run included): their share of Redis's one thread.
   */
  scriptUsPerSec: number;
  /** Redis process CPU, percent of one core. */
  redisCpuPct: number | null;
  /** Lease keys renewed per second (the nodes' renewal counters). */
  keysRenewedPerSec: number;
  /** The nodes' Redis round trips per second. */
  roundTripsPerSec: number;
  /** Calls and µs per command in the window. */
  commands: Record<string, CommandStat>;
}

/**
 * Measures what the cluster asks of Redis over `seconds`: commands and
 * keys renewed per second, Redis's time in them and its process CPU.
 *
 * @param cluster The cluster.
 * @param groups The groups its nodes hold meanwhile (for the report).
 * @param seconds The window.
 * @param hz Clock ticks per second.
 * @returns The load.
 */
export async function redisLoad(
  cluster: BenchCluster,
  groups: number,
  seconds: number,
  hz: number,
): Promise<RedisLoad> {
  const a = await _redisSample(cluster);
  await _sleep(seconds * 1000);
  const b = await _redisSample(cluster);
  return _load(a, b, groups, hz);
}

function _load(
  a: _RedisSample,
  b: _RedisSample,
  groups: number,
  hz: number,
): RedisLoad {
  const s = (b.t - a.t) / 1000;
  const w = commandWindow(a.commands, b.commands);
  const evalsha = w.commands.evalsha ?? { calls: 0, usec: 0 };
  const scripts = evalsha.usec + (w.commands.eval?.usec ?? 0);
  return {
    groups,
    seconds: s,
    commandsPerSec: w.calls / s,
    evalshaPerSec: evalsha.calls / s,
    usPerScript: perOp(scripts, evalsha.calls),
    scriptUsPerSec: scripts / s,
    redisCpuPct: a.redisStat && b.redisStat
      ? cpuPercent(cpuMicros(a.redisStat, b.redisStat, hz), b.t - a.t)
      : null,
    keysRenewedPerSec: (b.renewals - a.renewals) / s,
    roundTripsPerSec: (b.roundTrips - a.roundTrips) / s,
    commands: w.commands,
  };
}

// ------------------------------------------------------------- holding

/** Parameters of {@linkcode holdPeers}. */
export interface HoldConfig {
  /** Peers to hold, over every node. */
  peers: number;
  /**
   * On a cluster, the groups at which Redis is measured first, before the
   * rest of the peers connect (0: only at the full count).
   */
  redisGroups: number;
  /**
   * Seconds of each Redis window: a whole number of renewal periods, so
   * that it holds as many renewals of each node wherever it starts.
   */
  redisWindow: number;
  /** Seconds the peers are held while the nodes' CPU is measured. */
  hold: number;
  /** Handshakes in progress at once, per load process. */
  concurrency: number;
  /** Most peers per load process (each has its own open-file limit). */
  perProcess: number;
  /** Source addresses per load process (127.0.0.x). */
  sources: number;
  /** The CPUs the load processes may run on, when not this process's. */
  loadCpus?: string;
}

/** One node while holding. */
export interface NodeHold {
  /** The node's `sigver_peers` at the end of the hold. */
  peers: number;
  /** Groups it owned (`sigver_cluster_owned_groups`; the peers on one node). */
  ownedGroups: number | null;
  /** Peers piped in and out (0 and 0 with key affinity). */
  piped: Record<string, number>;
  /** CPU while holding, percent of one core. */
  cpuPct: number;
  /** RSS before the peers came, bytes. */
  rssBefore: number;
  /** RSS at the end of the hold, bytes. */
  rssHeld: number;
  /** (rssHeld - rssBefore) / peers, bytes. */
  rssPerPeer: number | null;
}

/** What {@linkcode holdPeers} gives. */
export interface HoldResult {
  /** Nodes. */
  nodes: number;
  /** Peers asked for. */
  target: number;
  /** Peers open at the end of the hold, as the load processes saw them. */
  peers: number;
  /** Load processes. */
  processes: number;
  /** Seconds the connect (and join) phases took. */
  connectSeconds: number;
  /** Server CPU per peer to connect and join (lease claim included), µs. */
  usPerPeer: number | null;
  /** Each node while holding. */
  perNode: NodeHold[];
  /** The nodes' CPU while holding, summed, percent of one core. */
  holdPct: number;
  /** The hold's length, seconds. */
  holdSeconds: number;
  /** Heartbeats each peer got and answered during the hold. */
  beats: BeatCount;
  /** The least a peer must have got: every peer answered its heartbeats. */
  beatsExpected: number;
  /** Heartbeats the nodes sent and received during the hold. */
  serverBeats: { sent: number; received: number };
  /**
   * Per join, during the connect phases (cluster only): the nodes' Redis
   * round trips, the lease scripts (`EVALSHA`) and every command Redis ran
   * (those inside scripts too), with the renewals that ran meanwhile (one
   * script per 500 keys, two commands per key) taken out.
   */
  perJoin: {
    roundTrips: number;
    scripts: number;
    commands: number;
  } | null;
  /** Redis at `redisGroups` groups (cluster only). */
  redisAt: RedisLoad | null;
  /** Redis while holding every peer (cluster only). */
  redisFull: RedisLoad | null;
}

/**
 * Holds `config.peers` idle peers on `nodes` (spread evenly, each peer
 * alone in its group, so the node it connects to owns it), from several
 * load processes, and measures each node's CPU and RSS over three heartbeat
 * periods, the heartbeats every peer got and answered, and, on a cluster,
 * what the leases cost Redis: at `redisGroups` groups, then at all of them.
 *
 * @param nodes The nodes (one: a single server).
 * @param cluster The cluster they form, or `undefined` for a single server.
 * @param config Counts, windows, spreading.
 * @param env Run facts.
 * @param tally Where problems are counted (the load processes' included).
 * @returns The figures.
 */
export async function holdPeers(
  nodes: readonly ServerProcess[],
  cluster: BenchCluster | undefined,
  config: HoldConfig,
  env: Env,
  tally: Tally,
): Promise<HoldResult> {
  const count = Math.max(2, Math.ceil(config.peers / config.perProcess));
  const ports = nodes.map((n) => n.port);
  const holders: HolderProcess[] = [];
  const rss = (n: ServerProcess) => readStat(n.pid).rssPages * env.pageSize;
  try {
    for (let h = 0; h < count; h++) {
      const plan: HoldPlan = {
        ports,
        prefix: `hold-${env.tag}-${nodes.length}n-${h}`,
        sources: Array.from(
          { length: config.sources },
          (_, k) => `127.0.0.${2 + h * config.sources + k}`,
        ),
        concurrency: config.concurrency,
      };
      holders.push(await startHolder(plan, config.loadCpus));
    }
    await _sleep(1000);
    const rssBefore = nodes.map(rss);
    const meter = new Meter(nodes.map((n) => n.pid), env.hz);
    let connectMs = 0;
    let connectUs = 0;
    const joinLoad = { roundTrips: 0, scripts: 0, commands: 0 };
    const open = async (n: number) => {
      const before = cluster && await _redisSample(cluster);
      meter.start();
      const each = shares(n, holders.length);
      const answers = await Promise.all(
        holders.map((h, i) =>
          h.request({ cmd: "open", count: each[i] }, 300_000) as Promise<
            { live: number }
          >
        ),
      );
      const w = meter.stop();
      connectMs += w.ms;
      connectUs += w.serverCpuUs;
      if (cluster && before) {
        const after = await _redisSample(cluster);
        const w = commandWindow(before.commands, after.commands);
        const renewed = after.renewals - before.renewals;
        joinLoad.roundTrips += after.roundTrips - before.roundTrips;
        joinLoad.scripts += (w.commands.evalsha?.calls ?? 0) - renewed / 500;
        joinLoad.commands += w.calls - renewed * (2 + 1 / 500);
      }
      return answers.reduce((s, a) => s + a.live, 0);
    };
    let redisAt: RedisLoad | null = null;
    let opened = 0;
    const first = cluster && config.redisGroups > 0
      ? Math.min(config.redisGroups, config.peers)
      : 0;
    if (first > 0) {
      opened += first;
      const live = await open(first);
      // Let a renewal period pass with every lease in place.
      await _sleep(RENEWAL_PERIOD * 1000);
      redisAt = await redisLoad(cluster!, live, config.redisWindow, env.hz);
    }
    if (config.peers > opened) await open(config.peers - opened);
    await _sleep(1000);
    const beforeTexts = await Promise.all(nodes.map((n) => metrics(n.port)));
    await Promise.all(holders.map((h) => h.request({ cmd: "mark" })));
    const meters = nodes.map((n) => new Meter(n.pid, env.hz));
    for (const m of meters) m.start();
    // Redis over whole renewal periods: a window of k periods holds exactly
    // k renewals of each node, wherever it starts.
    const redisBefore = cluster && await _redisSample(cluster);
    // On a cluster the hold lasts at least the window (--quick's is shorter).
    const redisMs = cluster ? config.redisWindow * 1000 : 0;
    await _sleep(redisMs);
    const redisAfter = cluster && await _redisSample(cluster);
    await _sleep(Math.max(0, config.hold * 1000 - redisMs));
    const windows = meters.map((m) => m.stop());
    const counts = await Promise.all(
      holders.map((h) => h.request({ cmd: "beats" }) as Promise<BeatCount>),
    );
    const afterTexts = await Promise.all(nodes.map((n) => metrics(n.port)));
    const rssHeld = nodes.map(rss);
    const beats = mergeBeats(counts);
    const beat = (texts: string[], name: string) =>
      texts.reduce(
        (s, t) => s + (readLabelled(t, name, "type").heartbeat ?? 0),
        0,
      );
    const perNode: NodeHold[] = nodes.map((_, i) => {
      const t = afterTexts[i];
      const peers = readGauges(t, ["sigver_peers"]).sigver_peers ?? 0;
      const owned = readGauges(t, ["sigver_cluster_owned_groups"])
        .sigver_cluster_owned_groups;
      return {
        peers,
        ownedGroups: owned ?? null,
        piped: readLabelled(t, "sigver_cluster_piped_peers", "direction"),
        cpuPct: windows[i].serverPct,
        rssBefore: rssBefore[i],
        rssHeld: rssHeld[i],
        rssPerPeer: perOp(rssHeld[i] - rssBefore[i], peers),
      };
    });
    const holdSeconds = windows[0].ms / 1000;
    return {
      nodes: nodes.length,
      target: config.peers,
      peers: beats.live,
      processes: holders.length,
      connectSeconds: connectMs / 1000,
      usPerPeer: perOp(connectUs, config.peers),
      perNode,
      holdPct: windows.reduce((s, w) => s + w.serverPct, 0),
      holdSeconds,
      beats,
      beatsExpected: beatsExpected(holdSeconds, HEARTBEAT_PERIOD),
      serverBeats: {
        sent: beat(afterTexts, "sigver_messages_sent_total") -
          beat(beforeTexts, "sigver_messages_sent_total"),
        received: beat(afterTexts, "sigver_messages_received_total") -
          beat(beforeTexts, "sigver_messages_received_total"),
      },
      perJoin: cluster
        ? {
          roundTrips: joinLoad.roundTrips / config.peers,
          scripts: joinLoad.scripts / config.peers,
          commands: joinLoad.commands / config.peers,
        }
        : null,
      redisAt,
      redisFull: redisBefore && redisAfter
        ? _load(redisBefore, redisAfter, beats.live, env.hz)
        : null,
    };
  } finally {
    await Promise.all(holders.map(async (h) => {
      try {
        const answer = await h.request({ cmd: "close" }, 120_000) as {
          tally?: Record<string, unknown>;
        };
        if (answer.tally) tally.merge(answer.tally);
      } catch (error) {
        tally.add("timeouts", `load process: ${(error as Error).message}`);
      }
      await h.stop();
    }));
  }
}
