/**
 * A load-generating child of the benchmark: holds idle peers (each alone in
 * its group, answering heartbeats) under its own open-file limit, so that
 * several of them hold more peers than one process could. Started by
 * `startHolder` (`bench/proc.ts`) with a {@linkcode HoldPlan} as its one
 * argument (JSON); driven by one JSON command a line on stdin, each answered
 * by one JSON line on stdout:
 *
 * - `{"cmd":"open","count":N}`: open N more peers -> `{"live":n,"tally":{...}}`
 * - `{"cmd":"mark"}`: count heartbeats from now -> `{}`
 * - `{"cmd":"beats"}`: -> `{"live","min","max","total","tally"}`
 * - `{"cmd":"close"}`: close every peer -> `{"tally":{...}}`, then exit
 *
 * The first line it writes, `{"ready":true}`, says it has started.
 *
 * @module
 */

import { type HoldPlan, PeerHolder, Tally } from "./scenarios.ts";

async function _main(plan: HoldPlan): Promise<number> {
  const tally = new Tally();
  const holder = new PeerHolder(plan, tally);
  const encoder = new TextEncoder();
  const say = async (value: unknown) => {
    const bytes = encoder.encode(JSON.stringify(value) + "\n");
    for (let off = 0; off < bytes.length;) {
      off += await Deno.stdout.write(bytes.subarray(off));
    }
  };
  await say({ ready: true });
  let carry = "";
  for await (
    const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  ) {
    const lines = (carry + text).split("\n");
    carry = lines.pop() ?? "";
    for (const line of lines) {
      if (line.trim() === "") continue;
      const command = JSON.parse(line) as { cmd: string; count?: number };
      switch (command.cmd) {
        case "open":
          await say({
            live: await holder.open(command.count ?? 0),
            tally: tally.toJSON(),
          });
          break;
        case "mark":
          holder.mark();
          await say({});
          break;
        case "beats":
          await say({ ...holder.beats(), tally: tally.toJSON() });
          break;
        case "close":
          await holder.close();
          await say({ tally: tally.toJSON() });
          return 0;
        default:
          await say({ error: `unknown command ${command.cmd}` });
      }
    }
  }
  await holder.close();
  return 0;
}

if (import.meta.main) {
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  Deno.exit(await _main(JSON.parse(Deno.args[0]) as HoldPlan));
}
