/**
 * `deno task start` from a checkout with an empty Deno cache fetches nothing:
 * test and dev tools (playwright-core, netflux, protobuf-es) are imported by
 * the tests that use them, not listed in the root import map, so starting
 * the server never downloads them.
 */

import assert from "node:assert/strict";
import { relaySession } from "./_session.ts";
import { ROOT } from "../_cli.ts";
import { deadline } from "../../lib/deadline.ts";

Deno.test("deno task start with an empty DENO_DIR downloads no npm package", async () => {
  const cache = await Deno.makeTempDir({ prefix: "sigver-fresh-cache-" });
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["task", "start", "--host", "127.0.0.1", "--port", "0"],
      cwd: ROOT,
      env: { DENO_DIR: cache, NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let stderr = "";
    const listening = Promise.withResolvers<number>();
    const read = (async () => {
      for await (
        const chunk of child.stderr.pipeThrough(new TextDecoderStream())
      ) {
        stderr += chunk;
        const match = stderr.match(
          /INFO listen url=ws:\/\/127\.0\.0\.1:(\d+)\//,
        );
        if (match) listening.resolve(Number(match[1]));
      }
      listening.reject(new Error(`The server exited:\n${stderr}`));
    })();
    try {
      const port = await deadline(listening.promise, 60_000, "the listen line");
      await relaySession(`ws://127.0.0.1:${port}/`);
    } finally {
      child.kill("SIGTERM");
      await read;
    }
    assert.equal((await child.status).code, 0, stderr);
    assert.doesNotMatch(stderr, /Download/, "start-up fetched packages");
    const npm = await Array.fromAsync(Deno.readDir(`${cache}/npm`)).catch(
      () => [],
    );
    assert.deepEqual(npm, [], "the npm cache is not empty");
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
