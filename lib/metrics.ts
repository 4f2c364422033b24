/**
 * Metrics as data: a family is a name, a type, a help line and how to read
 * its samples from a snapshot of the server; {@linkcode renderMetrics} writes
 * families in the Prometheus text exposition format (version 0.0.4).
 *
 * @module
 */

/** A label set: label names to values. */
export type Labels = Readonly<Record<string, string>>;

/** One sample: its labels (possibly none) and its value. */
export type Sample = readonly [Labels, number];

/** One metric family: a name, its help text, its type and its samples. */
export interface MetricFamily {
  /** Metric name, `sigver_` prefixed, counters ending in `_total`. */
  name: string;
  /** One line of help text. */
  help: string;
  /** `counter` or `gauge`. */
  type: "counter" | "gauge";
  /** Samples: label sets (possibly empty) with their values. */
  samples: ReadonlyArray<Sample>;
}

/**
 * A family of one sample.
 *
 * @param name The metric's name.
 * @param type `counter` or `gauge`.
 * @param help One line of help text.
 * @param value The value.
 * @param labels The sample's labels.
 * @returns The family.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { single } from "./metrics.ts";
 * assert.deepEqual(single("sigver_up", "gauge", "Up.", 1), {
 *   name: "sigver_up",
 *   type: "gauge",
 *   help: "Up.",
 *   samples: [[{}, 1]],
 * });
 * ```
 */
export function single(
  name: string,
  type: "counter" | "gauge",
  help: string,
  value: number,
  labels: Labels = {},
): MetricFamily {
  return { name, type, help, samples: [[labels, value]] };
}

/**
 * How to build one family from a snapshot `S` of what the server counts: a
 * single value, or labelled samples.
 */
export interface MetricDef<S> {
  /** Metric name. */
  name: string;
  /** `counter` or `gauge`. */
  type: "counter" | "gauge";
  /** One line of help text. */
  help: string;
  /**
   * The value (an unlabelled sample) or the samples, read from a snapshot.
   *
   * @param snapshot What the server counts now.
   * @returns One value, or labelled samples.
   */
  read(snapshot: S): number | ReadonlyArray<Sample>;
}

/**
 * Counts events by a tuple of label values, for labelled counters such as
 * closes by code and side.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Tally } from "./metrics.ts";
 * const closes = new Tally(["code", "by"]);
 * closes.add("1000", "client");
 * closes.add("1000", "client");
 * assert.deepEqual(closes.samples(), [[{ code: "1000", by: "client" }, 2]]);
 * ```
 */
export class Tally {
  /** The label names, in the order {@linkcode Tally.add} takes values. */
  readonly labels: readonly string[];
  #counts = new Map<string, number>();

  /**
   * Creates an empty tally.
   *
   * @param labels The label names.
   */
  constructor(labels: readonly string[]) {
    this.labels = labels;
  }

  /**
   * Counts one event.
   *
   * @param values One value per label name, in order.
   */
  add(...values: string[]): void {
    const key = values.join("\u0000");
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  /**
   * The counts as samples, in the order their label values first came.
   *
   * @returns One sample per label-value tuple seen.
   */
  samples(): Sample[] {
    return [...this.#counts].map(([key, n]) => {
      const values = key.split("\u0000");
      const labels: Record<string, string> = {};
      this.labels.forEach((name, i) => labels[name] = values[i]);
      return [labels, n] as const;
    });
  }
}

/**
 * Builds families from their definitions and a snapshot.
 *
 * @param defs The definitions, in the order to render them.
 * @param snapshot What the server counts now.
 * @returns The families.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { collect, type MetricDef } from "./metrics.ts";
 * const defs: MetricDef<{ peers: number }>[] = [
 *   { name: "sigver_peers", type: "gauge", help: "Peers.", read: (s) => s.peers },
 * ];
 * assert.deepEqual(collect(defs, { peers: 3 })[0].samples, [[{}, 3]]);
 * ```
 */
export function collect<S>(
  defs: readonly MetricDef<S>[],
  snapshot: S,
): MetricFamily[] {
  return defs.map(({ name, type, help, read }) => {
    const value = read(snapshot);
    return {
      name,
      type,
      help,
      samples: typeof value === "number" ? [[{}, value]] : value,
    };
  });
}

function _escape(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(
    /"/g,
    '\\"',
  );
}

/**
 * Renders metric families in the Prometheus text format.
 *
 * @param families The families to render, in order.
 * @returns The exposition, ending in a newline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderMetrics } from "./metrics.ts";
 * const text = renderMetrics([
 *   { name: "sigver_peers", help: "Connected peers.", type: "gauge", samples: [[{}, 2]] },
 * ]);
 * assert.match(text, /^sigver_peers 2$/m);
 * ```
 */
export function renderMetrics(families: readonly MetricFamily[]): string {
  let out = "";
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
    for (const [labels, value] of f.samples) {
      const names = Object.keys(labels);
      const set = names.length === 0
        ? ""
        : `{${names.map((n) => `${n}="${_escape(labels[n])}"`).join(",")}}`;
      out += `${f.name}${set} ${value}\n`;
    }
  }
  return out;
}
