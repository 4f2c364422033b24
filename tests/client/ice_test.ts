// Tests of client/ice.ts: fetchIceServers against a real server (with and
// without tokens, TURN on and off) and against a fake one (the path it asks,
// the answers it refuses).

import assert from "node:assert/strict";
import { httpUrl, startServer } from "../_helpers.ts";
import type { SigverServer } from "../../deno/serve.ts";
import { fetchIceServers, IceServersError } from "../../client/ice.ts";
import { mintToken } from "../../lib/token.ts";

function base(server: SigverServer): string {
  return `ws://127.0.0.1:${server.addr.port}`;
}

const TURN = {
  secret: "a coturn secret of 16+ bytes",
  urls: ["turn:127.0.0.1:3478"],
  ttl: 60_000,
};

Deno.test("fetchIceServers gets the credentials, with a token when tokens are on", async () => {
  await using server = startServer({
    turn: TURN,
    authSecrets: ["a token secret of 16+ bytes"],
  });
  const token = await mintToken("a token secret of 16+ bytes", {
    prefix: "room/",
  });
  for (const url of [base(server), httpUrl(server, "/")]) {
    const servers = await fetchIceServers(url, { token });
    assert.equal(servers?.length, 1);
    assert.deepEqual(servers![0].urls, TURN.urls);
    assert.match(servers![0].username ?? "", /^\d+:[0-9a-f]{16}$/);
    assert.match(servers![0].credential ?? "", /^[A-Za-z0-9+/]{27}=$/);
  }
  const cases: [string | undefined, number][] = [
    [undefined, 401],
    [await mintToken("not the server's token secret"), 403],
  ];
  for (const [bad, status] of cases) {
    const error = await fetchIceServers(base(server), { token: bad }).then(
      () => assert.fail("resolved"),
      (e) => e,
    );
    assert.ok(error instanceof IceServersError);
    assert.equal(error.status, status);
    assert.match(
      error.message,
      new RegExp(
        `^Cannot get the ICE servers: the server answered ${status} \\(`,
      ),
    );
  }
});

Deno.test("fetchIceServers resolves undefined when the server hands out none", async (t) => {
  await t.step("no TURN servers: 404", async () => {
    await using server = startServer();
    assert.equal(await fetchIceServers(base(server)), undefined);
  });
  await t.step("the endpoint off: 426", async () => {
    await using server = startServer({ turn: TURN, iceServersPath: false });
    assert.equal(await fetchIceServers(base(server)), undefined);
  });
});

Deno.test("fetchIceServers asks the path under the server's own, and checks the answer", async (t) => {
  const seen: { path: string; authorization: string | null }[] = [];
  let answer = '{"iceServers":[{"urls":"stun:s"}],"ttl":1}';
  await using fake = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      seen.push({
        path: new URL(request.url).pathname,
        authorization: request.headers.get("authorization"),
      });
      return new Response(answer);
    },
  );
  const at = `127.0.0.1:${fake.addr.port}`;
  await t.step("a server mounted under /sig/, a custom path", async () => {
    const servers = await fetchIceServers(`ws://${at}/sig/?x=1`, {
      path: "/turn",
      token: "v1.t",
    });
    assert.deepEqual(servers, [{ urls: ["stun:s"] }]);
    assert.deepEqual(seen.at(-1), {
      path: "/sig/turn",
      authorization: "Bearer v1.t",
    });
  });
  await t.step("the default path, no token", async () => {
    await fetchIceServers(`http://${at}`);
    assert.deepEqual(seen.at(-1), {
      path: "/ice-servers",
      authorization: null,
    });
  });
  for (
    const bad of [
      '{"ttl":1}',
      '{"iceServers":[{"urls":[1]}]}',
      '{"iceServers":[{"urls":"turn:t","credential":5}]}',
      "[]",
    ]
  ) {
    await t.step(`an answer ${bad}: SyntaxError`, async () => {
      answer = bad;
      await assert.rejects(fetchIceServers(`http://${at}`), SyntaxError);
    });
  }
  await assert.rejects(fetchIceServers(`ftp://${at}`), TypeError);
});
