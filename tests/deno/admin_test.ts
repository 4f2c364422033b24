/**
 * The admin listener (`adminPort`): liveness, readiness, metrics and the
 * cluster view on a private address of their own, and the client port
 * without the metrics then; without it, the cluster view is never public.
 */

import assert from "node:assert/strict";
import { httpUrl, startServer } from "../_helpers.ts";

async function get(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url);
  return { status: response.status, text: await response.text() };
}

Deno.test("adminPort serves health, readiness and metrics on 127.0.0.1, and the client port keeps the metrics to it", async () => {
  await using server = startServer({ adminPort: 0 });
  const admin = server.adminAddr!;
  assert.equal(admin.hostname, "127.0.0.1");
  const base = `http://127.0.0.1:${admin.port}`;
  assert.equal((await get(`${base}/healthz`)).text, "ok\n");
  assert.equal((await get(`${base}/readyz`)).text, "ready\n");
  const metrics = await get(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /^# HELP sigver_/m);
  // Nothing else: no demo, no peers, no ICE servers.
  for (const path of ["/", "/room", "/ice-servers", "/cluster"]) {
    const other = await get(`${base}${path}`);
    assert.equal(other.status, 404, path);
  }
  const upgrade = await fetch(`${base}/room`, {
    headers: { upgrade: "websocket", connection: "Upgrade" },
  });
  await upgrade.body?.cancel();
  assert.equal(upgrade.status, 404);
  // The client port: liveness and readiness for balancers, no metrics.
  assert.equal((await get(httpUrl(server, "/healthz"))).status, 200);
  assert.equal((await get(httpUrl(server, "/readyz"))).status, 200);
  const hidden = await get(httpUrl(server, "/metrics"));
  assert.equal(hidden.status, 404);
  assert.equal(
    hidden.text,
    "Not Found: this is served on the admin listener (--admin-port)\n",
  );
  assert.equal((await get(httpUrl(server, "/cluster"))).status, 404);
});

Deno.test("without adminPort the metrics stay on the client port, and no cluster view is served", async () => {
  await using server = startServer();
  assert.equal(server.adminAddr, undefined);
  assert.equal((await get(httpUrl(server, "/metrics"))).status, 200);
  assert.equal((await get(httpUrl(server, "/cluster"))).status, 404);
});

Deno.test("the admin listener reports draining on readiness, and stops with the server", async () => {
  const server = startServer({ adminPort: 0 });
  const base = `http://127.0.0.1:${server.adminAddr!.port}`;
  server.handler.drain();
  const ready = await get(`${base}/readyz`);
  assert.equal(ready.status, 503);
  assert.equal(ready.text, "draining\n");
  await server.shutdown();
  await assert.rejects(fetch(`${base}/healthz`), TypeError);
});
