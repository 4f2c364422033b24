/**
 * The Prometheus text exposition format (version 0.0.4), for a handful of
 * counters and gauges.
 *
 * @module
 */

/** One metric family: a name, its help text, its type and its samples. */
export interface MetricFamily {
  /** Metric name, `sigver_` prefixed, counters ending in `_total`. */
  name: string;
  /** One line of help text. */
  help: string;
  /** `counter` or `gauge`. */
  type: "counter" | "gauge";
  /** Samples: label sets (possibly empty) with their values. */
  samples: ReadonlyArray<readonly [Record<string, string>, number]>;
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
