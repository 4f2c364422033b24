/**
 * `deno task fuzz [--count N] [--seed S] [--server-count N]`: fuzzes the
 * decoder in this process, then a live `server.ts` subprocess on loopback,
 * and reports counts, exceptions, whether the server still serves, and its
 * memory. Exits 1 when anything is wrong.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { freePort, spawn } from "../dev/process.ts";
import {
  checkServer,
  type DecoderReport,
  EXPECTED_CLOSE_CODES,
  fuzzDecoder,
  fuzzServer,
  type ServerCheck,
  type ServerReport,
} from "./fuzz.ts";

const MAX_MESSAGE_SIZE = 16384;

const USAGE =
  "usage: deno task fuzz [--count N] [--server-count N] [--seed S] [--help]";

const HELP = `${USAGE}

  --count N         decoder inputs (default 1000000)
  --server-count N  inputs sent to a live server (default: --count)
  --seed S          seed of the run (default: random, printed first)
  --help, -h        this help`;

function _mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

function _rss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
}

function _table(counts: Record<string, number>): string {
  return Object.entries(counts).sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}=${v}`).join(" ");
}

function _sum(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/**
 * Runs the fuzzer.
 *
 * @param args The command line, without the program name.
 * @returns The exit code: 0 when every check held.
 */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        count: { type: "string", default: "1000000" },
        "server-count": { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const count = Number(values.count);
  const serverCount = Number(values["server-count"] ?? values.count);
  const seed = values.seed === undefined
    ? crypto.getRandomValues(new Uint32Array(1))[0]
    : Number(values.seed);
  if (![count, serverCount, seed].every((n) => Number.isInteger(n) && n >= 0)) {
    console.error(USAGE);
    return 2;
  }
  const problems: string[] = [];
  console.log(
    `sigver fuzz: seed ${seed}, ${count} decoder inputs, ${serverCount} server inputs`,
  );

  // 1. The decoder, in this process.
  const d: DecoderReport = fuzzDecoder({ count, seed });
  console.log(
    `decoder: ${count} inputs in ${(d.ms / 1000).toFixed(1)} s (${
      _table(d.inputs)
    })`,
  );
  console.log(
    `  ${d.decoded} decoded, ${d.syntaxErrors} SyntaxError, ${d.otherErrors} other exceptions, ` +
      `${d.disagreements} reader/decoder disagreements, ${d.roundTripMismatches} round-trip mismatches, ` +
      `${d.oversized} fields larger than their input`,
  );
  console.log(
    `  largest input ${d.largestInput} B, slowest decode ` +
      `${d.slowestMicros.toFixed(0)} µs ` +
      `(${d.slowestAgainMicros.toFixed(1)} µs decoded again), ` +
      `heap ${_mb(d.heapBefore)} -> ${_mb(d.heapAfter)}`,
  );
  if (
    d.otherErrors + d.disagreements + d.roundTripMismatches + d.oversized > 0
  ) {
    problems.push(...d.failures);
  }

  // 2. A live server, as the README starts it, in a subprocess.
  const port = freePort();
  const root = new URL("..", import.meta.url).pathname;
  // Only stderr is read; the last 100,000 characters are kept for the report.
  const child = spawn(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      `${root}server.ts`,
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--max-message-size",
      String(MAX_MESSAGE_SIZE),
      "--log-level",
      "error",
    ],
    stdout: "null",
    outputLimit: 100_000,
  });
  try {
    const ready = performance.now() + 15000;
    for (;;) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`);
        await r.body?.cancel();
        if (r.ok) break;
      } catch {
        // Not listening yet.
      }
      if (!child.running || performance.now() > ready) {
        throw new Error(`the server did not start: ${child.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const rssStart = _rss(child.pid);
    let rssPeak = rssStart;
    const sampler = setInterval(() => {
      if (child.running) rssPeak = Math.max(rssPeak, _rss(child.pid));
    }, 250);
    const s: ServerReport = await fuzzServer({
      port,
      count: serverCount,
      seed,
      maxMessageSize: MAX_MESSAGE_SIZE,
      onProgress: (sent) => {
        if (sent % 131072 === 0 && sent > 0) {
          console.log(
            `  ... ${sent} server inputs, RSS ${_mb(_rss(child.pid))}`,
          );
        }
      },
    });
    const c: ServerCheck = await checkServer(port);
    clearInterval(sampler);
    const rssEnd = child.running ? _rss(child.pid) : 0;
    console.log(
      `server: ${serverCount} inputs in ${(s.ms / 1000).toFixed(1)} s (${
        _table(s.inputs)
      })`,
    );
    console.log(
      `  closed by the server: ${_sum(s.serverCloses)} (${
        _table(s.serverCloses)
      })`,
    );
    console.log(
      `  closed by the fuzzer: ${_sum(s.clientCloses)} (${
        _table(s.clientCloses)
      })`,
    );
    console.log(`  fatal frames: ${_table(s.verdicts)}`);
    console.log(`  raw handshakes: ${_table(s.rawStatus)}`);
    console.log(
      `  after: alive=${child.running} healthz=${
        c.healthy ? 200 : "FAILED"
      } normal peer relays=${c.relays} ` +
        `peers=${c.peers} groups=${c.groups} bound=${c.bound}`,
    );
    console.log(
      `  server RSS: start ${_mb(rssStart)}, peak ${_mb(rssPeak)}, end ${
        _mb(rssEnd)
      }`,
    );
    problems.push(...s.errors.slice(0, 10), ...c.problems);
    for (const code of Object.keys(s.serverCloses)) {
      if (!EXPECTED_CLOSE_CODES.includes(Number(code))) {
        problems.push(`unexpected close code ${code} from the server`);
      }
    }
    if (!child.running) problems.push("the server exited during the run");
    if (!c.healthy || !c.relays) problems.push("the server no longer serves");
    if (rssEnd > rssStart + 256 * 1048576) {
      problems.push(`server RSS grew from ${_mb(rssStart)} to ${_mb(rssEnd)}`);
    }
  } catch (error) {
    problems.push(String(error));
  } finally {
    const { code, stderr } = await child.stop({ timeout: 15_000 });
    console.log(`  server exit code after SIGTERM: ${code}`);
    if (code !== 0) problems.push(`server exited with ${code}`);
    if (stderr.trim() !== "") {
      problems.push(`server wrote to stderr:\n${stderr.slice(0, 4000)}`);
    }
  }
  if (problems.length > 0) {
    console.log(`FAILED (${problems.length} problems):`);
    for (const p of problems) console.log(`  - ${p}`);
    return 1;
  }
  console.log(
    "OK: 0 uncaught exceptions, server alive and serving, memory bounded",
  );
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
