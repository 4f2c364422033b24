/**
 * `deno task compile`: one binary, with the version built in and only the
 * permissions the server needs (network; reading `/etc/sigver` for TLS files;
 * `--max-peers` is given, as Deno needs -A to read `/proc/self/limits`).
 *
 * `deno compile` needs the `denort` runtime: it downloads it from Deno's
 * download host (into `$DENO_DIR/dl/`) unless `DENORT_BIN` names one. Where
 * neither is possible, this test is ignored and says why: it does not pass.
 * (`DENORT_BIN` pointing at the full `deno` binary is no runtime: such a
 * "binary" starts Deno's own CLI, so that case is refused too.)
 */

import assert from "node:assert/strict";
import { freePort, run, spawn } from "../../dev/process.ts";
import { relaySession } from "./_session.ts";

const ROOT = new URL("../../", import.meta.url);
const BINARY = new URL("dist/sigver", ROOT).pathname;

/** Why no `denort` runtime can be had here, or `undefined` when one can. */
async function _missingRuntime(): Promise<string | undefined> {
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) {
    let path: string;
    try {
      path = Deno.realPathSync(bin);
    } catch {
      return `DENORT_BIN=${bin} does not exist`;
    }
    if (path === Deno.realPathSync(Deno.execPath())) {
      return `DENORT_BIN=${bin} is the deno CLI, not the denort runtime`;
    }
    return undefined;
  }
  const info = await run(Deno.execPath(), {
    args: ["info", "--json"],
    env: { NO_COLOR: "1" },
  });
  const denoDir = JSON.parse(info.stdout).denoDir;
  const cached =
    `${denoDir}/dl/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`;
  try {
    Deno.statSync(cached);
    return undefined;
  } catch {
    return `no denort runtime: DENORT_BIN is not set and ${cached} is not cached (deno compile would download it from dl.deno.land)`;
  }
}

const missing = await _missingRuntime();
if (missing !== undefined) {
  console.log(`SKIPPED deno task compile test: ${missing}`);
}

Deno.test({
  name: missing === undefined
    ? "deno task compile builds a binary that serves peers with narrow permissions"
    : `deno task compile builds a binary (SKIPPED: ${missing})`,
  ignore: missing !== undefined,
  async fn() {
    const build = await run(Deno.execPath(), {
      args: ["task", "compile"],
      cwd: ROOT,
      timeout: 120_000,
    });
    assert.ok(build.success, `deno task compile failed\n${build.stderr}`);
    const config = JSON.parse(
      await Deno.readTextFile(new URL("deno.json", ROOT)),
    );

    const version = await run(BINARY, { args: ["--version"] });
    assert.equal(
      version.stdout.trim(),
      config.version,
      "the binary prints the package version",
    );

    const port = freePort();
    await using server = spawn(BINARY, {
      args: [
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
      ],
    });
    await server.waitFor(
      new RegExp(`listen url=ws://127\\.0\\.0\\.1:${port}/`),
      { timeout: 30_000, what: "the binary to listen" },
    );
    await relaySession(`ws://127.0.0.1:${port}/`);
    const stopped = await server.stop({ timeout: 15_000 });
    assert.equal(stopped.code, 0, stopped.stderr);

    // The read permission is narrow: a key outside /etc/sigver is refused.
    const dir = await Deno.makeTempDir({ prefix: "sigver_compile_" });
    try {
      await Deno.writeTextFile(`${dir}/key.pem`, "not read");
      await Deno.writeTextFile(`${dir}/cert.pem`, "not read");
      const refused = await run(BINARY, {
        args: [
          "--host",
          "127.0.0.1",
          "--port",
          String(freePort()),
          "--key",
          `${dir}/key.pem`,
          "--cert",
          `${dir}/cert.pem`,
        ],
      });
      const stderr = refused.stderr;
      assert.equal(refused.code, 1, stderr);
      assert.match(stderr, /cannot read --key file/);
      assert.match(stderr, /Requires read access/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
