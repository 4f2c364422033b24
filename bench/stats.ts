/**
 * Pure helpers of the load generator: `/proc/PID/stat` parsing, CPU and RSS
 * arithmetic, a fixed-size latency histogram, medians, ratios to the bare
 * relay, bottleneck detection and the markdown summary. No I/O here, so that
 * `tests/bench_test.ts` can check every figure the benchmark prints.
 *
 * @module
 */

/** What the benchmark reads from `/proc/PID/stat`. */
export interface ProcStat {
  /** Process state letter (`R`, `S`, `Z`...). */
  state: string;
  /** User CPU time of all threads, in clock ticks. */
  utime: number;
  /** System CPU time of all threads, in clock ticks. */
  stime: number;
  /** Threads in the process. */
  threads: number;
  /** Resident set size, in pages. */
  rssPages: number;
}

/**
 * Parses the one line of `/proc/PID/stat`. The command name (field 2) is in
 * parentheses and may itself hold spaces and parentheses, so the fields are
 * counted from the last `)`.
 *
 * @param text The file's content.
 * @returns The fields the benchmark uses.
 * @throws {SyntaxError} When the line does not look like `/proc/PID/stat`.
 */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(")");
  if (close < 0 || text.indexOf("(") < 0) {
    throw new SyntaxError("Cannot parse /proc/PID/stat: no command name");
  }
  // Field 3 (state) is the first after the name; field n is rest[n - 3].
  const rest = text.slice(close + 1).trim().split(/\s+/);
  if (rest.length < 22) {
    throw new SyntaxError(
      `Cannot parse /proc/PID/stat: ${
        rest.length + 2
      } fields, expected 24 or more`,
    );
  }
  const field = (n: number): number => {
    const v = Number(rest[n - 3]);
    if (!Number.isFinite(v)) {
      throw new SyntaxError(
        `Cannot parse /proc/PID/stat: field ${n} is '${rest[n - 3]}'`,
      );
    }
    return v;
  };
  return {
    state: rest[0],
    utime: field(14),
    stime: field(15),
    threads: field(20),
    rssPages: field(24),
  };
}

/**
 * CPU time between two samples of the same process, in microseconds.
 *
 * @param before The earlier sample.
 * @param after The later sample.
 * @param hz Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
 * @returns User plus system time spent between the samples.
 */
export function cpuMicros(before: ProcStat, after: ProcStat, hz = 100): number {
  const ticks = after.utime + after.stime - before.utime - before.stime;
  return ticks * 1e6 / hz;
}

/**
 * CPU use over a wall-clock interval, in percent of one core.
 *
 * @param micros CPU time used, in microseconds.
 * @param wallMs Length of the interval, in milliseconds.
 * @returns Percent of one core (200 for two busy cores).
 */
export function cpuPercent(micros: number, wallMs: number): number {
  return wallMs > 0 ? micros / (wallMs * 1000) * 100 : 0;
}

/**
 * Divides a total among the operations that caused it.
 *
 * @param total CPU microseconds, bytes...
 * @param count Operations (messages, connections, joins).
 * @returns The per-operation figure, or `null` when nothing was counted.
 */
export function perOp(total: number, count: number): number | null {
  return count > 0 ? total / count : null;
}

/**
 * The ratio of a figure of the server under test to the bare relay's figure
 * from the same run.
 *
 * @param server The server's figure.
 * @param bare The bare relay's figure.
 * @returns `server / bare`, or `null` when either is missing or `bare` is not
 * positive.
 */
export function ratio(
  server: number | null | undefined,
  bare: number | null | undefined,
): number | null {
  if (server == null || bare == null || !(bare > 0)) return null;
  if (!Number.isFinite(server) || !Number.isFinite(bare)) return null;
  return server / bare;
}

/**
 * The median of some numbers; `null` and `NaN` entries are left out.
 *
 * @param values The numbers.
 * @returns The median (mean of the middle two for an even count), or `null`
 * when no number is left.
 */
export function median(values: readonly (number | null)[]): number | null {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/**
 * Nearest-rank percentile of sorted numbers.
 *
 * @param sorted Numbers in ascending order.
 * @param p The percentile, in [0, 100].
 * @returns The smallest value with at least `p` % of the values at or below
 * it, or `null` for no values.
 */
export function percentile(
  sorted: readonly number[],
  p: number,
): number | null {
  if (sorted.length === 0) return null;
  if (!(p >= 0 && p <= 100)) {
    throw new RangeError(`Cannot take percentile: ${p} is not in [0, 100]`);
  }
  const rank = Math.max(1, Math.ceil(p / 100 * sorted.length));
  return sorted[rank - 1];
}

/**
 * A latency histogram with fixed-width buckets: recording is O(1) and never
 * allocates, so that a 10 s run of a million round trips costs no garbage.
 * Values above the last bucket are clamped into it (and counted).
 *
 * @example
 * ```ts
 * import { Histogram } from "./stats.ts";
 * const h = new Histogram(1, 1000);
 * for (const v of [3, 5, 9]) h.record(v);
 * console.assert(h.percentile(50) === 6);
 * ```
 */
export class Histogram {
  /** Bucket width, in the unit of the recorded values. */
  readonly width: number;
  /** Values recorded. */
  count = 0;
  /** Values above the range, counted in the last bucket. */
  clamped = 0;
  #buckets: Uint32Array;

  /**
   * @param width Bucket width (1 for microsecond buckets of µs values).
   * @param buckets Number of buckets: the range is `[0, width * buckets)`.
   */
  constructor(width: number, buckets: number) {
    if (!(width > 0) || !Number.isInteger(buckets) || buckets < 1) {
      throw new RangeError("Cannot create histogram: bad width or size");
    }
    this.width = width;
    this.#buckets = new Uint32Array(buckets);
  }

  /**
   * Adds one value.
   *
   * @param value A non-negative number; negative values count as 0.
   */
  record(value: number): void {
    let i = Math.floor(value / this.width);
    if (!(i >= 0)) i = 0;
    if (i >= this.#buckets.length) {
      i = this.#buckets.length - 1;
      this.clamped++;
    }
    this.#buckets[i]++;
    this.count++;
  }

  /**
   * Adds every value of another histogram of the same shape.
   *
   * @param other The histogram to add.
   */
  merge(other: Histogram): void {
    if (
      other.width !== this.width ||
      other.#buckets.length !== this.#buckets.length
    ) {
      throw new RangeError("Cannot merge histograms of different shapes");
    }
    for (let i = 0; i < this.#buckets.length; i++) {
      this.#buckets[i] += other.#buckets[i];
    }
    this.count += other.count;
    this.clamped += other.clamped;
  }

  /**
   * Nearest-rank percentile, reported as the middle of its bucket.
   *
   * @param p The percentile, in [0, 100].
   * @returns The value, or `null` when nothing was recorded.
   */
  percentile(p: number): number | null {
    if (this.count === 0) return null;
    if (!(p >= 0 && p <= 100)) {
      throw new RangeError(`Cannot take percentile: ${p} is not in [0, 100]`);
    }
    const rank = Math.max(1, Math.ceil(p / 100 * this.count));
    let seen = 0;
    for (let i = 0; i < this.#buckets.length; i++) {
      seen += this.#buckets[i];
      if (seen >= rank) return (i + 0.5) * this.width;
    }
    return (this.#buckets.length - 0.5) * this.width;
  }
}

/** Who limited a measured phase. */
export type Bottleneck = "server" | "loadgen" | "neither";

/**
 * Says which process limited a phase that ran as fast as it could: the one
 * near a full core. When the load generator is near a full core and the
 * server is not, the throughput measured is the load generator's, not the
 * server's (the server's CPU per operation is still valid).
 *
 * @param serverPct The server's CPU use, percent of one core.
 * @param loadPct The load generator's CPU use, percent of one core.
 * @param busy The percentage from which a process counts as saturated.
 * @returns `"loadgen"`, `"server"` or `"neither"`.
 */
export function bottleneck(
  serverPct: number,
  loadPct: number,
  busy = 85,
): Bottleneck {
  const serverBusy = serverPct >= busy;
  const loadBusy = loadPct >= busy;
  if (loadBusy && (!serverBusy || loadPct > serverPct)) return "loadgen";
  if (serverBusy) return "server";
  return "neither";
}

/** One row of the summary table. */
export interface SummaryRow {
  /** What was measured, e.g. `relay 256B w1 µs/msg`. */
  metric: string;
  /** Median of the server under test over the runs. */
  server: number | null;
  /** Median of the bare relay over the runs (when it has one). */
  bare: number | null;
  /** Median of the per-run ratios (not the ratio of the medians). */
  ratio: number | null;
  /** The target, as text. */
  target: string;
  /** Whether the median meets the target; `null` when there is none. */
  ok: boolean | null;
}

/**
 * Formats a figure for the summary table with a sensible precision.
 *
 * @param v The figure.
 * @param digits Fraction digits for small values.
 * @returns The text, `-` for a missing figure.
 */
export function fmt(v: number | null | undefined, digits = 2): string {
  if (v == null || !Number.isFinite(v)) return "-";
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toString();
  if (a >= 100) return v.toFixed(Math.min(digits, 1));
  return v.toFixed(digits);
}

/**
 * Renders summary rows as a markdown table.
 *
 * @param rows The rows.
 * @param columns The headers of the two figure columns.
 * @returns The table, one line per row, with a header.
 */
export function markdownTable(
  rows: readonly SummaryRow[],
  columns: readonly [string, string] = ["sigver", "bare relay"],
): string {
  const lines = [
    `| metric | ${columns[0]} | ${columns[1]} | ratio | target | met |`,
    "| --- | ---: | ---: | ---: | --- | :---: |",
  ];
  for (const r of rows) {
    const met = r.ok === null ? "" : r.ok ? "yes" : "**no**";
    lines.push(
      `| ${r.metric} | ${fmt(r.server)} | ${fmt(r.bare)} | ${
        r.ratio === null ? "-" : `${fmt(r.ratio, 3)}x`
      } | ${r.target} | ${met} |`,
    );
  }
  return lines.join("\n");
}

/**
 * Parses one `Max open files` line of `/proc/PID/limits`.
 *
 * @param limits The content of `/proc/PID/limits`.
 * @returns The soft and hard limits, or `undefined` when absent.
 */
export function openFileLimits(
  limits: string,
): { soft: number; hard: number } | undefined {
  const line = limits.split("\n").find((l) => l.startsWith("Max open files"));
  if (line === undefined) return undefined;
  const [soft, hard] = line.slice("Max open files".length).trim().split(
    /\s+/,
  ).map((s) => s === "unlimited" ? Infinity : Number(s));
  if (!(soft >= 0) || !(hard >= 0)) return undefined;
  return { soft, hard };
}

/**
 * Reads unlabelled samples from a Prometheus text exposition (the lines
 * `name value`; comments and labelled samples are skipped).
 *
 * @param text The exposition, as `/metrics` serves it.
 * @param names The metric names wanted.
 * @returns The value of each wanted name that has an unlabelled sample.
 */
export function readGauges(
  text: string,
  names: readonly string[],
): Record<string, number> {
  const wanted = new Set(names);
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_:][\w:]*) (\S+)/.exec(line);
    if (m === null || !wanted.has(m[1])) continue;
    const value = Number(m[2]);
    if (!Number.isNaN(value)) out[m[1]] = value;
  }
  return out;
}

/** The gauges of the hub's state that a soak must leave at 0. */
export const SOAK_GAUGES: readonly string[] = [
  "sigver_peers",
  "sigver_groups",
  "sigver_members",
  "sigver_bound_joiners",
];

/** What a soak proves, from the numbers it took. */
export interface SoakVerdict {
  /** Whether every gauge of {@linkcode SOAK_GAUGES} was there and 0. */
  empty: boolean;
  /** RSS at the end over RSS after the warm-up; `null` without both. */
  rssRatio: number | null;
  /** Whether the RSS came back within the tolerance. */
  rssOk: boolean;
  /** Both. */
  pass: boolean;
}

/**
 * Judges a soak: the hub's state must be empty at the end, and the RSS back
 * within `tolerance` of its level after the warm-up.
 *
 * @param gauges The gauges read at the end (see {@linkcode readGauges}).
 * @param rssWarm RSS after the warm-up, bytes.
 * @param rssEnd RSS at the end, bytes.
 * @param tolerance The growth allowed, as a fraction (0.1: 10 %).
 * @returns The verdict.
 */
export function soakVerdict(
  gauges: Readonly<Record<string, number>>,
  rssWarm: number,
  rssEnd: number,
  tolerance = 0.1,
): SoakVerdict {
  const empty = SOAK_GAUGES.every((name) => gauges[name] === 0);
  const rssRatio = ratio(rssEnd, rssWarm);
  const rssOk = rssRatio !== null && rssRatio <= 1 + tolerance;
  return { empty, rssRatio, rssOk, pass: empty && rssOk };
}

/**
 * The least-squares slope of `y` over `x`: how fast a figure grows, free of
 * the ups and downs around its trend.
 *
 * @param points The samples.
 * @returns dy/dx, or `null` with fewer than two distinct `x`.
 */
export function slope(
  points: readonly { x: number; y: number }[],
): number | null {
  const n = points.length;
  if (n < 2) return null;
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    sx += p.x;
    sy += p.y;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : null;
}

/**
 * CPU time of a phase without the heartbeats that came during it, at the
 * cost per heartbeat measured while only heartbeats were going on.
 *
 * @param cpuUs CPU of the phase, µs.
 * @param beats Heartbeats during the phase.
 * @param holdCpuUs CPU of a phase of heartbeats only, µs.
 * @param holdBeats Heartbeats during that phase.
 * @returns The CPU left for the phase's own work, µs (never below 0).
 */
export function netOfBeats(
  cpuUs: number,
  beats: number,
  holdCpuUs: number,
  holdBeats: number,
): number {
  if (beats <= 0 || holdBeats <= 0) return cpuUs;
  return Math.max(0, cpuUs - beats * holdCpuUs / holdBeats);
}

/**
 * Reads the samples of one labelled metric from a Prometheus text
 * exposition, by the value of one of its labels (`name{direction="in"} 3`
 * gives `{ in: 3 }`). Samples without that label are left out.
 *
 * @param text The exposition, as `/metrics` serves it.
 * @param name The metric's name.
 * @param label The label whose value keys the result.
 * @returns The value of each sample, by its label value.
 */
export function readLabelled(
  text: string,
  name: string,
  label: string,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.indexOf("}");
    if (close < 0) continue;
    const labels = line.slice(name.length + 1, close);
    const m = new RegExp(`(?:^|,)${label}="([^"]*)"`).exec(labels);
    const value = Number(line.slice(close + 1).trim().split(/\s+/)[0]);
    if (m !== null && !Number.isNaN(value)) out[m[1]] = value;
  }
  return out;
}

/** Calls and time of one Redis command, from `INFO commandstats`. */
export interface CommandStat {
  /** Times it ran. */
  calls: number;
  /** Microseconds Redis spent running it, in all. */
  usec: number;
}

/**
 * Parses the `cmdstat_*` lines of Redis's `INFO commandstats`.
 *
 * @param info The reply's text.
 * @returns The calls and µs of each command, by its lower-case name
 * (subcommands as Redis names them, `config|resetstat`).
 */
export function parseCommandStats(info: string): Record<string, CommandStat> {
  const out: Record<string, CommandStat> = {};
  for (const line of info.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):(.*)$/.exec(line);
    if (m === null) continue;
    const fields: Record<string, number> = {};
    for (const part of m[2].split(",")) {
      const [k, v] = part.split("=");
      fields[k] = Number(v);
    }
    if (!(fields.calls >= 0) || !(fields.usec >= 0)) continue;
    out[m[1]] = { calls: fields.calls, usec: fields.usec };
  }
  return out;
}

/** Redis commands over a window: the difference of two `INFO commandstats`. */
export interface CommandWindow {
  /** Per command: calls and µs in the window (commands that ran only). */
  commands: Record<string, CommandStat>;
  /** Calls of every command, the `info` that took the samples left out. */
  calls: number;
  /** Redis µs of every command, `info` left out. */
  usec: number;
}

/**
 * The Redis commands run between two samples of `INFO commandstats`,
 * without the `INFO` command that took the later sample (nor the earlier
 * one's, which the later sample counts).
 *
 * @param before The earlier sample.
 * @param after The later sample.
 * @returns The commands run in between.
 */
export function commandWindow(
  before: Readonly<Record<string, CommandStat>>,
  after: Readonly<Record<string, CommandStat>>,
): CommandWindow {
  const commands: Record<string, CommandStat> = {};
  let calls = 0;
  let usec = 0;
  for (const [name, a] of Object.entries(after)) {
    const b = before[name] ?? { calls: 0, usec: 0 };
    let c = a.calls - b.calls;
    let u = a.usec - b.usec;
    if (name === "info") {
      // The earlier INFO finished after its own sample was taken.
      c = Math.max(0, c - 1);
      u = c === 0 ? 0 : u;
    }
    if (c <= 0) continue;
    commands[name] = { calls: c, usec: u };
    calls += c;
    usec += u;
  }
  return { commands, calls, usec };
}

/**
 * Splits a count into `parts` whole shares that differ by at most one, the
 * larger first.
 *
 * @param total The count.
 * @param parts How many shares.
 * @returns The shares; they add up to `total`.
 */
export function shares(total: number, parts: number): number[] {
  if (!Number.isInteger(total) || total < 0) {
    throw new RangeError(`Cannot split ${total}: not a count`);
  }
  if (!Number.isInteger(parts) || parts < 1) {
    throw new RangeError(`Cannot split into ${parts} parts`);
  }
  const base = Math.floor(total / parts);
  const extra = total % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

/** Where a relay pair's two peers connect, as indexes into the nodes. */
export interface Placement {
  /** The node the member connects to (it arrives first: the owner). */
  member: number;
  /** The node the joiner connects to. */
  joiner: number;
}

/**
 * How the relay pairs are laid out on a cluster:
 *
 * - `single`: one node holds every pair;
 * - `affinity`: both peers of a pair on the same node (what a key-affinity
 *   balancer does), the pairs spread over the nodes in turn;
 * - `split`: the member on one node and its joiner on the next, so that
 *   every message is piped between nodes; the owners spread in turn.
 */
export type Layout = "single" | "affinity" | "split";

/**
 * Places relay pair `pair` on `nodes` nodes.
 *
 * @param layout The layout.
 * @param pair The pair's index, from 0.
 * @param nodes How many nodes.
 * @returns The member's and the joiner's node.
 */
export function place(layout: Layout, pair: number, nodes: number): Placement {
  if (!Number.isInteger(nodes) || nodes < 1) {
    throw new RangeError(`Cannot place on ${nodes} nodes`);
  }
  if (layout === "single") return { member: 0, joiner: 0 };
  const member = pair % nodes;
  if (layout === "affinity") return { member, joiner: member };
  if (nodes < 2) {
    throw new RangeError("Cannot split a pair over fewer than 2 nodes");
  }
  return { member, joiner: (member + 1) % nodes };
}

/** What the peers piped between nodes should count, by layout. */
export interface PipedCounts {
  /** Peers piped into each node from edges. */
  in: number[];
  /** Peers each node pipes to an owner. */
  out: number[];
}

/**
 * The piped-peer gauges a layout should show on each node once its pairs
 * are open: a joiner on another node than its member is piped out of the
 * joiner's node and into the member's.
 *
 * @param layout The layout.
 * @param pairs The pairs.
 * @param nodes The nodes.
 * @returns The expected `sigver_cluster_piped_peers` of each node.
 */
export function expectedPiped(
  layout: Layout,
  pairs: number,
  nodes: number,
): PipedCounts {
  const counts: PipedCounts = {
    in: new Array(nodes).fill(0),
    out: new Array(nodes).fill(0),
  };
  for (let i = 0; i < pairs; i++) {
    const p = place(layout, i, nodes);
    if (p.member === p.joiner) continue;
    counts.in[p.member]++;
    counts.out[p.joiner]++;
  }
  return counts;
}

/** Heartbeats each held peer got over a window, across the load processes. */
export interface BeatCount {
  /** Peers still open at the end. */
  live: number;
  /** Fewest heartbeats a live peer got (and answered). */
  min: number;
  /** Most heartbeats a live peer got. */
  max: number;
  /** Heartbeats in all. */
  total: number;
}

/**
 * Adds up the heartbeat counts of several load processes.
 *
 * @param counts One count per process.
 * @returns The count of all of them (`min` and `max` over the live peers;
 * 0 when there is none).
 */
export function mergeBeats(counts: readonly BeatCount[]): BeatCount {
  const withPeers = counts.filter((c) => c.live > 0);
  return {
    live: counts.reduce((s, c) => s + c.live, 0),
    min: withPeers.length ? Math.min(...withPeers.map((c) => c.min)) : 0,
    max: withPeers.length ? Math.max(...withPeers.map((c) => c.max)) : 0,
    total: counts.reduce((s, c) => s + c.total, 0),
  };
}

/**
 * The heartbeats every peer must have had over a hold of `seconds`: one per
 * period, less one for where the window cuts the schedule, and at least one.
 *
 * @param seconds The hold.
 * @param period The heartbeat period, seconds.
 * @returns The least count a peer that answered every heartbeat has.
 */
export function beatsExpected(seconds: number, period: number): number {
  return Math.max(1, Math.floor(seconds / period) - 1);
}
