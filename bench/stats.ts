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
 * @returns The table, one line per row, with a header.
 */
export function markdownTable(rows: readonly SummaryRow[]): string {
  const lines = [
    "| metric | sigver | bare relay | ratio | target | met |",
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
