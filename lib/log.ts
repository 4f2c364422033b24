/**
 * One-line log records, as text or JSON. Keys are room secrets: records carry
 * a short hash of the key, never the key itself.
 *
 * @module
 */

/** Log levels, most severe first. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** Output formats of a log line. */
export type LogFormat = "text" | "json";

/** Fields of a log record besides its level and event name. */
export type LogFields = Record<string, string | number | boolean | undefined>;

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Every level, for validating user input. */
export const LOG_LEVELS: readonly LogLevel[] = [
  "error",
  "warn",
  "info",
  "debug",
];

/**
 * Whether a record of `level` passes a logger set to `threshold`.
 *
 * @param threshold The logger's level.
 * @param level The record's level.
 * @returns True when the record must be written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { enabled } from "./log.ts";
 * assert.equal(enabled("info", "warn"), true);
 * assert.equal(enabled("info", "debug"), false);
 * ```
 */
export function enabled(threshold: LogLevel, level: LogLevel): boolean {
  return RANK[level] <= RANK[threshold];
}

/**
 * A short, stable, non-reversible tag of a key (32-bit FNV-1a, 8 hex digits),
 * so that log lines of one room can be correlated without revealing it.
 *
 * @param key The group key.
 * @returns Eight lowercase hex digits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keyHash } from "./log.ts";
 * assert.match(keyHash("room"), /^[0-9a-f]{8}$/);
 * ```
 */
export function keyHash(key: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

function _text(value: string | number | boolean): string {
  const s = String(value);
  return /^[\w.:\/@+-]+$/.test(s) ? s : JSON.stringify(s);
}

/**
 * Formats one log record as one line (no trailing newline).
 *
 * @param format `text` (`time LEVEL event k=v ...`) or `json`.
 * @param time The record's time, as an ISO 8601 string.
 * @param level The record's level.
 * @param event What happened: `listen`, `open`, `close`, `reject`...
 * @param fields More fields; `undefined` values are left out.
 * @returns The line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLine } from "./log.ts";
 * const line = formatLine("text", "2026-01-01T00:00:00.000Z", "info", "close", { code: 1000 });
 * assert.equal(line, "2026-01-01T00:00:00.000Z INFO close code=1000");
 * ```
 */
export function formatLine(
  format: LogFormat,
  time: string,
  level: LogLevel,
  event: string,
  fields: LogFields = {},
): string {
  if (format === "json") {
    // The record's own time, level and event come first and win over fields
    // of the same names.
    return JSON.stringify(
      Object.assign({ time, level, event }, fields, { time, level, event }),
    );
  }
  let line = `${time} ${level.toUpperCase()} ${event}`;
  for (const name in fields) {
    const value = fields[name];
    if (value !== undefined) line += ` ${name}=${_text(value)}`;
  }
  return line;
}

/**
 * Writes log records at or above a level to a sink, one line each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Logger } from "./log.ts";
 * const lines: string[] = [];
 * const log = new Logger((line) => lines.push(line), "info", "json");
 * log.write("debug", "open");
 * log.write("info", "close", { code: 1000 });
 * assert.equal(lines.length, 1);
 * assert.equal(JSON.parse(lines[0]).code, 1000);
 * ```
 */
export class Logger {
  readonly #sink: ((line: string) => void) | undefined;
  readonly #level: LogLevel;
  readonly #format: LogFormat;

  /**
   * Creates a logger.
   *
   * @param sink Where lines go; without one nothing is written.
   * @param level The least severe level written.
   * @param format Text or JSON lines.
   */
  constructor(
    sink: ((line: string) => void) | undefined,
    level: LogLevel = "info",
    format: LogFormat = "text",
  ) {
    this.#sink = sink;
    this.#level = level;
    this.#format = format;
  }

  /**
   * Whether records of `level` are written: check it before building
   * costly fields.
   *
   * @param level The record's level.
   * @returns True when a record of that level would be written.
   */
  enabled(level: LogLevel): boolean {
    return this.#sink !== undefined && enabled(this.#level, level);
  }

  /**
   * Writes one record, when its level passes.
   *
   * @param level The record's level.
   * @param event What happened.
   * @param fields More fields.
   */
  write(level: LogLevel, event: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    this.#sink!(
      formatLine(this.#format, new Date().toISOString(), level, event, fields),
    );
  }
}
