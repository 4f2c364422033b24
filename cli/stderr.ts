/**
 * The command line's log writer: lines to stderr, batched and never blocking.
 *
 * @module
 */

import { settleWithin } from "../lib/deadline.ts";

/** Characters of log lines that may wait for stderr before lines are dropped. */
const _LOG_BACKLOG = 1 << 20;

/**
 * Log lines to stderr, batched and never blocking: the lines of one turn of
 * the event loop go out in one asynchronous write. `console.error` costs about
 * 12 µs a line and blocks the whole server when stderr is a pipe nobody
 * drains (a full pipe, a stuck log collector); here a writer that falls more
 * than {@linkcode _LOG_BACKLOG} characters behind drops lines and says how
 * many once it catches up.
 */
export function stderrLines(): {
  write: (line: string) => void;
  close: (timeout: number) => Promise<void>;
} {
  const encoder = new TextEncoder();
  let lines: string[] = [];
  let backlog = 0;
  let dropped = 0;
  let writing: Promise<void> | undefined;
  const take = (): Uint8Array | undefined => {
    if (dropped > 0) {
      lines.push(`${new Date().toISOString()} WARN log dropped=${dropped}`);
      dropped = 0;
    }
    if (lines.length === 0) return undefined;
    const bytes = encoder.encode(lines.join("\n") + "\n");
    lines = [];
    backlog = 0;
    return bytes;
  };
  const pump = async () => {
    try {
      for (let bytes = take(); bytes !== undefined; bytes = take()) {
        for (let n = 0; n < bytes.length;) {
          n += await Deno.stderr.write(bytes.subarray(n));
        }
      }
    } catch {
      // stderr is gone: there is nowhere left to log to.
    } finally {
      writing = undefined;
    }
  };
  // An uncaught exception ends the process before the write completes.
  const last = () => {
    const bytes = take();
    try {
      if (bytes !== undefined) Deno.stderr.writeSync(bytes);
    } catch {
      // Nowhere to log to.
    }
  };
  globalThis.addEventListener("error", last);
  globalThis.addEventListener("unhandledrejection", last);
  return {
    write: (line) => {
      if (backlog > _LOG_BACKLOG) {
        dropped++;
        return;
      }
      lines.push(line);
      backlog += line.length;
      writing ??= Promise.resolve().then(pump);
    },
    close: async (timeout) => {
      globalThis.removeEventListener("error", last);
      globalThis.removeEventListener("unhandledrejection", last);
      writing ??= Promise.resolve().then(pump);
      await settleWithin(writing, timeout);
    },
  };
}
