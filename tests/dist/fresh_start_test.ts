/**
 * `deno task start` from a checkout with an empty Deno cache fetches nothing:
 * test and dev tools (playwright-core, netflux, protobuf-es) are imported by
 * the tests that use them, not listed in the root import map, so starting
 * the server never downloads them.
 */

import assert from "node:assert/strict";
import { relaySession } from "./_session.ts";
import { ROOT } from "../_cli.ts";
import { spawn } from "../../dev/process.ts";

Deno.test("deno task start with an empty DENO_DIR downloads no npm package", async () => {
  const cache = await Deno.makeTempDir({ prefix: "sigver-fresh-cache-" });
  try {
    await using child = spawn(Deno.execPath(), {
      args: ["task", "start", "--host", "127.0.0.1", "--port", "0"],
      cwd: ROOT,
      env: { DENO_DIR: cache, NO_COLOR: "1" },
      stdout: "null",
    });
    const listen = await child.waitFor(
      /INFO listen url=ws:\/\/127\.0\.0\.1:(\d+)\//,
      { what: "the listen line", stream: "stderr", timeout: 60_000 },
    );
    await relaySession(`ws://127.0.0.1:${listen[1]}/`);
    const { code, stderr } = await child.stop({ timeout: 15_000 });
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /Download/, "start-up fetched packages");
    const npm = await Array.fromAsync(Deno.readDir(`${cache}/npm`)).catch(
      () => [],
    );
    assert.deepEqual(npm, [], "the npm cache is not empty");
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
