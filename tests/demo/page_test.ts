/**
 * Tests of the demo page as the server serves it (no browser here: see
 * `tests/e2e/` for that): the embedded files are fresh, served to plain GET
 * and HEAD only, turned off by `demo: false` and `--no-demo`, and the
 * browser bundle of the client really works.
 */

import assert from "node:assert/strict";
import { closedBy, httpUrl, startServer } from "../_helpers.ts";
import { ASSETS_PATH, buildAssets } from "../../demo/build.ts";
import { CLIENT_JS, DEMO_APP_JS, DEMO_HTML } from "../../demo/assets.gen.ts";
import { SigverClient } from "../../client/mod.ts";
import { Cli, cliArgs, ROOT } from "../_cli.ts";

Deno.test("demo/assets.gen.ts is what deno task build:demo generates", async () => {
  const committed = await Deno.readTextFile(new URL(ASSETS_PATH, ROOT));
  const fresh = await buildAssets();
  assert.ok(
    committed === fresh,
    `${ASSETS_PATH} is stale: run \`deno task build:demo\``,
  );
});

Deno.test("server serves the demo page and its scripts to plain GET", async (t) => {
  await using server = startServer();
  const files: [string, RegExp, string][] = [
    ["/", /^text\/html/, DEMO_HTML],
    ["/?room=abc", /^text\/html/, DEMO_HTML],
    ["/demo/app.js", /^text\/javascript/, DEMO_APP_JS],
    ["/demo/client.js", /^text\/javascript/, CLIENT_JS],
  ];
  for (const [path, type, body] of files) {
    await t.step(path, async () => {
      const response = await fetch(httpUrl(server, path));
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", type);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff");
      assert.equal(await response.text(), body);
    });
  }
  const page = await fetch(httpUrl(server, "/"));
  await page.body?.cancel();
  assert.match(
    page.headers.get("content-security-policy") ?? "",
    /script-src 'self'/,
  );
  assert.match(DEMO_HTML, /src="demo\/app\.js"/);
  assert.match(DEMO_APP_JS, /from "\.\/client\.js"/);
});

Deno.test("server answers HEAD on the demo page with headers only", async () => {
  await using server = startServer();
  const response = await fetch(httpUrl(server, "/"), { method: "HEAD" });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
  assert.equal(await response.text(), "");
});

Deno.test("server answers 426 on the demo paths when demo is false", async () => {
  await using server = startServer({ demo: false });
  for (const path of ["/", "/demo/app.js", "/demo/client.js"]) {
    const response = await fetch(httpUrl(server, path));
    assert.equal(response.status, 426, path);
    assert.match(await response.text(), /^Upgrade Required/);
  }
});

Deno.test("server still treats the demo paths as group keys for WebSocket upgrades", async () => {
  await using server = startServer();
  const base = `ws://127.0.0.1:${server.addr.port}`;
  // "/" is the empty key: refused after the socket opens.
  const empty = await SigverClient.open(base, "");
  assert.equal((await closedBy(server, empty)).code, 4741);
  await using app = await SigverClient.open(base, "demo/app.js");
  assert.equal(await app.connect(1), true);
  await using other = await SigverClient.open(base, "demo/app.js");
  assert.equal(await other.connect(2), false);
});

Deno.test("the served client bundle works as a JavaScript module", async () => {
  await using server = startServer();
  const source = await (await fetch(httpUrl(server, "/demo/client.js")))
    .text();
  const url = `data:text/javascript;base64,${
    btoa(String.fromCharCode(...new TextEncoder().encode(source)))
  }`;
  const bundle: typeof import("../../client/mod.ts") = await import(url);
  await using a = await bundle.SigverClient.open(httpUrl(server, "/"), "r");
  await using b = await bundle.SigverClient.open(httpUrl(server, "/"), "r");
  assert.equal(await a.connect(1), true);
  assert.equal(await b.connect(2), false);
  const received = new Promise<string>((resolve) =>
    a.addEventListener("content", (e) => resolve(e.text()), { once: true })
  );
  b.send(0, "hello");
  assert.equal(await received, "hello");
  assert.equal(bundle.describeCloseCode(4744).name, "ERR_BLOCKING_MEMBER");
});

Deno.test("cli serves no demo page when given --no-demo", async (t) => {
  for (const [args, status] of [[[], 200], [["--no-demo"], 426]] as const) {
    await t.step(args.join(" ") || "(default)", async () => {
      await using cli = new Cli(cliArgs(...args));
      const port = await cli.port();
      const response = await fetch(`http://127.0.0.1:${port}/`);
      await response.body?.cancel();
      assert.equal(response.status, status);
      cli.process.kill("SIGTERM");
      assert.equal(await cli.exit(), 0);
    });
  }
});
