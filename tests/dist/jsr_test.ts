/**
 * The package as users get it from JSR, without reaching JSR: the files that
 * `deno publish` would upload are served by a local registry laid out like
 * JSR's (see `_registry.ts`), and a fresh Deno (own `DENO_DIR`, `JSR_URL`
 * pointing at the registry) runs or imports `jsr:@coast/sigver` from it.
 */

import assert from "node:assert/strict";
import { freePort, spawn } from "../../dev/process.ts";
import { LocalJsr, type PackageInfo, readPackage } from "./_registry.ts";
import { relaySession } from "./_session.ts";

const ROOT = new URL("../../", import.meta.url);
// A fresh DENO_DIR makes the child type-strip and cache every module: give
// it time on a busy machine, but bound every wait.
const START_TIMEOUT = 60_000;

let packageRead: Promise<PackageInfo> | undefined;

/** The package, read once for every test of this file. */
function pkg(): Promise<PackageInfo> {
  return packageRead ??= readPackage(ROOT);
}

/** A temporary directory, removed at dispose. */
async function tempDir(
  prefix: string,
): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/** The environment of a Deno that knows nothing but the local registry. */
function freshDeno(
  registry: LocalJsr,
  denoDir: string,
): Record<string, string> {
  return {
    JSR_URL: registry.url,
    DENO_DIR: denoDir,
    DENO_NO_UPDATE_CHECK: "1",
    NO_COLOR: "1",
    NO_PROXY: "127.0.0.1,localhost",
  };
}

/** Asserts that the registry served the package's metadata and modules. */
function assertServedFromRegistry(registry: LocalJsr, info: PackageInfo): void {
  const base = `/@${info.scope}/${info.name}`;
  for (
    const path of [
      `${base}/meta.json`,
      `${base}/${info.version}_meta.json`,
      `${base}/${info.version}/mod.ts`,
      `${base}/${info.version}/deno/handler.ts`,
    ]
  ) {
    assert.ok(
      registry.requests.includes(path),
      `the registry served ${path}; it served ${registry.requests.join(" ")}`,
    );
  }
  const missed = registry.requests.filter((p) => !p.startsWith(base));
  assert.deepEqual(missed, [], "nothing outside the package was asked for");
}

Deno.test("deno run -A jsr:@coast/sigver serves peers when JSR_URL points at a local registry", async () => {
  const info = await pkg();
  await using registry = await LocalJsr.start(info);
  await using home = await tempDir("sigver_jsr_run_");
  const port = freePort();
  await using server = spawn(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "jsr:@coast/sigver",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
    ],
    cwd: home.path,
    env: freshDeno(registry, `${home.path}/deno_dir`),
  });
  const listen = await server.waitFor(
    /INFO listen url=ws:\/\/127\.0\.0\.1:(\d+)\/ version=(\S+)/,
    { timeout: START_TIMEOUT, what: "the server to listen" },
  );
  assert.equal(Number(listen[1]), port);
  assert.equal(listen[2], info.version);
  assertServedFromRegistry(registry, info);
  assert.ok(
    registry.requests.includes(`/@coast/sigver/${info.version}/server.ts`),
    "the CLI module was loaded from the registry",
  );

  await relaySession(`ws://127.0.0.1:${port}/`);

  const result = await server.stop({ timeout: 15_000 });
  assert.equal(result.code, 0, `exit code after SIGTERM\n${result.stderr}`);
  assert.match(result.stderr, /INFO shutdown signal=SIGTERM/);
  assert.match(result.stderr, /INFO stopped/);
});

const SCRATCH = `import { createHandler } from "jsr:@coast/sigver";

const sigver = createHandler({ maxPeersPerAddress: 8 });
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log("scratch listening on " + port),
}, (request, info) => {
  if (new URL(request.url).pathname === "/app") return new Response("my app");
  return sigver.fetch(request, info);
});
const stop = () => {
  Deno.removeSignalListener("SIGTERM", stop);
  sigver.close();
  server.shutdown();
};
Deno.addSignalListener("SIGTERM", stop);
await server.finished;
console.log("scratch stopped");
`;

Deno.test("a program that imports createHandler from jsr:@coast/sigver mounts it in its own Deno.serve", async () => {
  const info = await pkg();
  await using registry = await LocalJsr.start(info);
  await using home = await tempDir("sigver_jsr_import_");
  await Deno.writeTextFile(`${home.path}/main.ts`, SCRATCH);
  // Importing the package must need nothing but the network it listens on:
  // no read, env or other permission, and no server of its own.
  await using program = spawn(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      "main.ts",
    ],
    cwd: home.path,
    env: freshDeno(registry, `${home.path}/deno_dir`),
  });
  const listen = await program.waitFor(
    /scratch listening on (\d+)/,
    { timeout: START_TIMEOUT, what: "the scratch program to listen" },
  );
  const port = Number(listen[1]);
  assertServedFromRegistry(registry, info);

  const app = await fetch(`http://127.0.0.1:${port}/app`, {
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(await app.text(), "my app");
  const health = await fetch(`http://127.0.0.1:${port}/healthz`, {
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(health.status, 200);
  assert.equal(await health.text(), "ok\n");
  await relaySession(`ws://127.0.0.1:${port}/`);

  const result = await program.stop({ timeout: 15_000 });
  assert.equal(result.code, 0, `exit code after SIGTERM\n${result.stderr}`);
  assert.match(result.stdout, /scratch stopped/);
  assert.doesNotMatch(
    result.stderr,
    /listen url=/,
    "importing the package starts no server of its own",
  );
});
