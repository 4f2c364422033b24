/**
 * Access tokens and TURN credentials over real sockets: every refusal of an
 * upgrade (status, text, metric, log line), tokens on nested keys and with
 * `?favored`, rotation, the server without secrets, `/ice-servers` over
 * HTTP, and the command line (`token`, `--auth-secret`, the TURN flags) as a
 * subprocess. Tokens and TURN credentials are built and checked with
 * node:crypto (`_reference.ts`), independently of the code under test.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { ServeOptions, SigverServer } from "../../deno/serve.ts";
import {
  closedBy,
  httpUrl,
  peerUrl,
  refusedUpgrade,
  startServer,
  TestPeer,
  type TestServer,
  UPGRADE_HEADERS,
  WAIT_TIMEOUT,
} from "../_helpers.ts";
import { refCredential, refToken } from "../_reference.ts";
import { ManualClock } from "../../lib/clock.ts";
import { Cli, cliArgs, ROOT, SERVER } from "../_cli.ts";
import { run as runProcess, spawn } from "../../dev/process.ts";
import { deadline } from "../../lib/deadline.ts";

const SECRET = "auth-secret-for-tests";
const TURN_SECRET = "coturn-secret-for-tests";
/** A key distinctive enough to look for in the logs. */
const KEY = "team-7f3a/standup";

function nowS(): number {
  return Math.floor(Date.now() / 1000);
}

/** A server that needs tokens, whose log lines are kept. */
function authServer(
  options: Omit<ServeOptions, "clock"> = {},
): TestServer & { lines: string[] } {
  const lines: string[] = [];
  const server = startServer({
    authSecrets: [SECRET],
    log: (line) => lines.push(line),
    ...options,
    clock: new ManualClock(),
  });
  return Object.assign(server, { lines });
}

async function rejections(server: SigverServer): Promise<Map<string, number>> {
  const text = await (await fetch(httpUrl(server, "/metrics"))).text();
  const counts = new Map<string, number>();
  for (
    const match of text.matchAll(
      /^sigver_rejections_total\{reason="(\w+)"\} (\d+)$/gm,
    )
  ) {
    counts.set(match[1], Number(match[2]));
  }
  return counts;
}

/** A member and a joiner on `url`: the joiner's offer reaches the member. */
async function meet(memberUrl: string, joinerUrl: string): Promise<void> {
  await using member = await TestPeer.open(memberUrl);
  await using joiner = await TestPeer.open(joinerUrl);
  assert.equal(await member.join(1), true);
  assert.equal(await joiner.join(2), false);
  joiner.sendContent({ data: "offer" });
  assert.equal((await member.nextContent()).data, "offer");
}

// Upgrades

Deno.test("an upgrade without a well-formed token gets 401", async (t) => {
  await using server = authServer();
  const good = refToken(SECRET, nowS() + 600);
  const cases: [string, string, string][] = [
    ["no token", `/${KEY}`, "token_missing"],
    ["an empty token", `/t//${KEY}`, "token_missing"],
    ["a path that is only /t/", "/t/", "token_missing"],
    ["not a token", `/t/not-a-token/${KEY}`, "token_malformed"],
    [
      "three fields",
      `/t/${good.split(".").slice(0, 3).join(".")}/${KEY}`,
      "token_malformed",
    ],
    ["version v2", `/t/${good.replace(/^v1/, "v2")}/${KEY}`, "token_malformed"],
    [
      "an expiry that is not digits",
      `/t/${good.replace(/\.\d+\./, ".12x4.")}/${KEY}`,
      "token_malformed",
    ],
    ["a short signature", `/t/${good.slice(0, -2)}/${KEY}`, "token_malformed"],
    ["a padded field", `/t/${good}=/${KEY}`, "token_malformed"],
  ];
  for (const [name, path, reason] of cases) {
    await t.step(name, async () => {
      const before = (await rejections(server)).get(reason) ?? 0;
      const { status, body } = await refusedUpgrade(server, path);
      assert.equal(status, 401);
      assert.match(body, /^Unauthorized: /);
      assert.equal((await rejections(server)).get(reason), before + 1);
    });
  }
});

Deno.test("an upgrade with a refused token gets 403", async (t) => {
  await using server = authServer();
  const expiry = nowS() + 600;
  const good = refToken(SECRET, expiry, "team-7f3a/");
  const [v, e, p, s] = good.split(".");
  const cases: [string, string, string, string][] = [
    [
      "signed with another secret",
      refToken("not the secret", expiry),
      KEY,
      "token_signature",
    ],
    [
      "a tampered expiry",
      [v, String(expiry + 1), p, s].join("."),
      KEY,
      "token_signature",
    ],
    [
      "a tampered prefix",
      [v, e, Buffer.from("").toString("base64url"), s].join("."),
      KEY,
      "token_signature",
    ],
    [
      "a tampered signature",
      [v, e, p, (s[0] === "A" ? "B" : "A") + s.slice(1)].join("."),
      KEY,
      "token_signature",
    ],
    [
      "expired 40 s ago, beyond the 30 s skew",
      refToken(SECRET, nowS() - 40, "team-7f3a/"),
      KEY,
      "token_expired",
    ],
    ["a key outside the prefix", good, "team-other/standup", "token_scope"],
    ["the prefix without its slash", good, "team-7f3a", "token_scope"],
  ];
  for (const [name, token, key, reason] of cases) {
    await t.step(name, async () => {
      const before = (await rejections(server)).get(reason) ?? 0;
      const { status, body } = await refusedUpgrade(
        server,
        `/t/${token}/${key}`,
      );
      assert.equal(status, 403);
      assert.match(body, /^Forbidden: /);
      assert.equal((await rejections(server)).get(reason), before + 1);
    });
  }
});

Deno.test("a refused upgrade is logged with its reason, never its token or key", async () => {
  await using server = authServer();
  const forged = refToken("not the secret", nowS() + 600);
  assert.equal(
    (await refusedUpgrade(server, `/t/${forged}/${KEY}`)).status,
    403,
  );
  assert.equal((await refusedUpgrade(server, `/${KEY}`)).status, 401);
  const rejects = server.lines.filter((line) => / reject /.test(line));
  assert.equal(rejects.length, 2, server.lines.join("\n"));
  assert.match(rejects[0], /reason=token_signature status=403/);
  assert.match(rejects[1], /reason=token_missing status=401/);
  for (const line of server.lines) {
    assert.ok(!line.includes(forged.split(".")[3]), line);
    assert.ok(!line.includes("team-7f3a"), line);
  }
});

Deno.test("a token within the 30 s skew opens its key", async () => {
  await using server = authServer();
  const token = refToken(SECRET, nowS() - 10, "team-7f3a/");
  await meet(
    peerUrl(server, `/t/${token}/${KEY}`),
    peerUrl(server, `/t/${token}/${KEY}`),
  );
});

Deno.test("peers that arrive together and wait on their tokens still meet the peer limit", async () => {
  await using server = authServer({ maxPeers: 2 });
  const url = peerUrl(server, `/t/${refToken(SECRET, nowS() + 600)}/${KEY}`);
  // All five pass admission before any is held, then wait for their token
  // checks: the limit must hold when they come back.
  const sockets = Array.from({ length: 5 }, () => new WebSocket(url));
  const opened = await deadline(
    Promise.all(sockets.map((socket) =>
      new Promise<boolean>((resolve) => {
        socket.onopen = () => resolve(true);
        socket.onclose = () => resolve(false);
      })
    )),
    WAIT_TIMEOUT,
    "every upgrade's outcome",
  );
  assert.equal(opened.filter(Boolean).length, 2, `opened: ${opened}`);
  assert.equal((await rejections(server)).get("capacity"), 3);
  await Promise.all(sockets.map((socket) => {
    if (socket.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((resolve) => socket.onclose = resolve);
    socket.close();
    return closed;
  }));
});

Deno.test("tokens open a nested key: peers with different tokens meet in a/b/c", async () => {
  await using server = authServer();
  const expiry = nowS() + 600;
  const any = refToken(SECRET, expiry);
  const scoped = refToken(SECRET, expiry, "a/b/");
  // The member came with a token for every key, the joiner with one for a/b/.
  await meet(
    peerUrl(server, `/t/${any}/a/b/c`),
    peerUrl(server, `/t/${scoped}/a/b/c`),
  );
  // The key is what follows the token: not a/b/c, nor t/<token>/a/b/c.
  assert.equal(
    (await refusedUpgrade(server, `/t/${scoped}/a/c`)).status,
    403,
  );
});

Deno.test("?favored rides after the token: a joiner is bound to the favored member", async () => {
  await using server = authServer();
  const token = refToken(SECRET, nowS() + 600, "room");
  const url = (query = "") => peerUrl(server, `/t/${token}/room${query}`);
  await using first = await TestPeer.open(url());
  await using favored = await TestPeer.open(url("?favored"));
  await using joiner = await TestPeer.open(url());
  assert.equal(await first.join(1), true);
  // The favored peer becomes a member through the first one.
  assert.equal(await favored.join(2, [1]), true);
  // A newcomer is bound to the favored member, though it joined second.
  assert.equal(await joiner.join(3), false);
  joiner.sendContent({ data: "offer" });
  assert.equal((await favored.nextContent()).data, "offer");
  assert.equal(first.pending, 0);
});

Deno.test("a good token with an empty key is closed with 4741 after the open", async (t) => {
  await using server = authServer();
  const token = refToken(SECRET, nowS() + 600);
  for (const path of [`/t/${token}`, `/t/${token}/`]) {
    await t.step(path.replace(token, "<token>"), async () => {
      await using peer = await TestPeer.open(peerUrl(server, path));
      assert.equal((await closedBy(server, peer)).code, 4741);
    });
  }
});

Deno.test("rotation: a token of any listed secret opens, another is refused", async () => {
  await using server = authServer({
    authSecrets: ["the new auth secret", SECRET],
  });
  const expiry = nowS() + 600;
  await meet(
    peerUrl(server, `/t/${refToken("the new auth secret", expiry)}/${KEY}`),
    peerUrl(server, `/t/${refToken(SECRET, expiry)}/${KEY}`),
  );
  const gone = refToken("retired secret", expiry);
  assert.equal((await refusedUpgrade(server, `/t/${gone}/${KEY}`)).status, 403);
});

Deno.test("without a secret /t/x/y is the key t/x/y", async () => {
  await using server = startServer();
  await using member = await TestPeer.open(peerUrl(server, "/t/x/y"));
  await using joiner = await TestPeer.open(peerUrl(server, "/t/x/y"));
  await using other = await TestPeer.open(peerUrl(server, "/y"));
  assert.equal(await member.join(1), true);
  assert.equal(await joiner.join(2), false);
  // Not the same group as /y, which has no member yet.
  assert.equal(await other.join(3), true);
  joiner.sendContent({ data: "offer" });
  assert.equal((await member.nextContent()).data, "offer");
  assert.equal(other.pending, 0);
  assert.equal(server.handler.stats().groups, 2);
});

// /ice-servers over HTTP

const TURN = {
  secret: TURN_SECRET,
  urls: [
    "turn:127.0.0.1:3478?transport=udp",
    "turn:127.0.0.1:3478?transport=tcp",
  ],
  stunUrls: ["stun:127.0.0.1:3478"],
  ttl: 120_000,
  // Servers below without tokens hand credentials to anyone, on purpose.
  public: true,
};

/** Checks a body of /ice-servers against the contract, with node:crypto. */
function assertCredentials(
  body: string,
  secret: string,
  ttl: number,
  before: number,
  after: number,
): void {
  const parsed = JSON.parse(body);
  assert.deepEqual(Object.keys(parsed), ["iceServers", "ttl"]);
  assert.equal(parsed.ttl, ttl);
  const [turn, stun] = parsed.iceServers;
  assert.deepEqual(Object.keys(turn), ["urls", "username", "credential"]);
  assert.deepEqual(turn.urls, TURN.urls);
  const [expiry, id] = turn.username.split(":");
  assert.match(expiry, /^\d+$/);
  // Rounded up to a minute: one username per client and minute.
  assert.ok(
    before + ttl <= Number(expiry) && Number(expiry) <= after + ttl + 60 &&
      Number(expiry) % 60 === 0,
    `expiry ${expiry} is not now + ${ttl}, rounded up to a minute`,
  );
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.equal(turn.credential, refCredential(secret, turn.username));
  assert.deepEqual(stun, { urls: TURN.stunUrls });
}

Deno.test("GET /ice-servers answers coturn credentials that expire now + ttl", async () => {
  await using server = startServer({ turn: TURN });
  const before = nowS();
  const response = await fetch(httpUrl(server, "/ice-servers"));
  const body = await response.text();
  const after = nowS();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.equal(response.headers.get("cache-control"), "no-store");
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  assertCredentials(body, TURN_SECRET, 120, before, after);
});

Deno.test("GET /ice-servers needs a token when tokens are on", async (t) => {
  await using server = authServer({ turn: TURN });
  const url = httpUrl(server, "/ice-servers");
  const token = refToken(SECRET, nowS() + 600, "team-7f3a/");
  await t.step("none: 401 with a Bearer challenge", async () => {
    const response = await fetch(url);
    assert.equal(response.status, 401);
    assert.equal(
      response.headers.get("www-authenticate"),
      'Bearer realm="sigver"',
    );
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.match(await response.text(), /Authorization: Bearer <token>/);
  });
  await t.step("a malformed one: 401", async () => {
    const response = await fetch(url, {
      headers: { authorization: "Bearer v1.x" },
    });
    await response.body?.cancel();
    assert.equal(response.status, 401);
  });
  await t.step("a forged one: 403", async () => {
    const response = await fetch(
      `${url}?token=${refToken("nope", nowS() + 60)}`,
    );
    await response.body?.cancel();
    assert.equal(response.status, 403);
  });
  await t.step("an expired one: 403", async () => {
    const response = await fetch(url, {
      headers: { authorization: `Bearer ${refToken(SECRET, nowS() - 40)}` },
    });
    await response.body?.cancel();
    assert.equal(response.status, 403);
  });
  for (
    const [name, init, target] of [
      ["in Authorization: Bearer", {
        headers: { authorization: `Bearer ${token}` },
      }, url],
      ["in ?token=", {}, `${url}?token=${token}`],
    ] as const
  ) {
    await t.step(`a good one ${name}, whatever its prefix: 200`, async () => {
      const before = nowS();
      const response = await fetch(target, init);
      const body = await response.text();
      assert.equal(response.status, 200);
      assertCredentials(body, TURN_SECRET, 120, before, nowS());
    });
  }
  const counts = await rejections(server);
  assert.equal(counts.get("token_missing"), 1);
  assert.equal(counts.get("token_malformed"), 1);
  assert.equal(counts.get("token_signature"), 1);
  assert.equal(counts.get("token_expired"), 1);
  const rejects = server.lines.filter((line) => / reject /.test(line));
  assert.equal(rejects.length, 4);
  for (const line of rejects) {
    assert.match(line, /path=\/ice-servers addr=127\.0\.0\.1/);
    assert.ok(!line.includes(token.split(".")[3]), line);
  }
});

Deno.test("/ice-servers follows allowOrigins for CORS, preflight included", async () => {
  await using server = startServer({
    turn: TURN,
    authSecrets: [SECRET],
    allowOrigins: ["https://app.example"],
  });
  const url = httpUrl(server, "/ice-servers");
  const preflight = await fetch(url, {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "GET",
      "access-control-request-headers": "authorization",
    },
  });
  assert.equal(preflight.status, 204);
  assert.equal(
    preflight.headers.get("access-control-allow-origin"),
    "https://app.example",
  );
  assert.match(
    preflight.headers.get("access-control-allow-headers")!,
    /Authorization/,
  );
  assert.equal(preflight.headers.get("vary"), "Origin");
  const token = refToken(SECRET, nowS() + 600);
  const allowed = await fetch(url, {
    headers: {
      origin: "https://app.example",
      authorization: `Bearer ${token}`,
    },
  });
  await allowed.body?.cancel();
  assert.equal(allowed.status, 200);
  assert.equal(
    allowed.headers.get("access-control-allow-origin"),
    "https://app.example",
  );
  const other = await fetch(url, {
    headers: {
      origin: "https://evil.example",
      authorization: `Bearer ${token}`,
    },
  });
  assert.equal(other.status, 403);
  assert.equal(
    await other.text(),
    "Forbidden: origin https://evil.example is not allowed\n",
  );
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  assert.equal((await rejections(server)).get("origin"), 1);
});

Deno.test("/ice-servers answers 404 without TURN servers, and moves or turns off with its path", async (t) => {
  const statuses = async (server: SigverServer, path: string) => {
    const result = [];
    for (const method of ["GET", "OPTIONS"]) {
      const response = await fetch(httpUrl(server, path), { method });
      await response.body?.cancel();
      result.push(response.status);
    }
    return result;
  };
  await t.step("no TURN servers: 404", async () => {
    await using server = startServer();
    assert.deepEqual(await statuses(server, "/ice-servers"), [404, 204]);
  });
  await t.step("iceServersPath moves it", async () => {
    await using server = startServer({ turn: TURN, iceServersPath: "/turn" });
    assert.deepEqual(await statuses(server, "/turn"), [200, 204]);
    // The old path is nothing special any more.
    assert.deepEqual(await statuses(server, "/ice-servers"), [426, 405]);
  });
  await t.step("iceServersPath false turns it off", async () => {
    await using server = startServer({ turn: TURN, iceServersPath: false });
    assert.deepEqual(await statuses(server, "/ice-servers"), [426, 405]);
  });
  await t.step("other paths still answer 405 to OPTIONS", async () => {
    await using server = startServer({ turn: TURN });
    assert.deepEqual(await statuses(server, "/healthz"), [200, 405]);
  });
});

Deno.test("an upgrade on /ice-servers still joins the group of that key", async () => {
  await using server = startServer({ turn: TURN });
  const url = peerUrl(server, "/ice-servers");
  await meet(url, url);
});

// The command line

async function run(
  args: string[],
  denoFlags: string[] = [],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await runProcess(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-net",
      "--allow-read",
      ...denoFlags,
      SERVER,
      ...args,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    timeout: WAIT_TIMEOUT,
  });
  return { code, stdout, stderr };
}

Deno.test("token prints a token alone on stdout that node:crypto verifies", async (t) => {
  const cases: [string, string[], string, number][] = [
    [
      "a prefix and a ttl",
      ["--prefix", "team-7f3a/", "--ttl", "120"],
      "team-7f3a/",
      120,
    ],
    ["the defaults: any key, an hour", [], "", 3600],
  ];
  for (const [name, flags, prefix, ttl] of cases) {
    await t.step(name, async () => {
      const before = nowS();
      const { code, stdout, stderr } = await run([
        "token",
        "--secret",
        SECRET,
        ...flags,
      ]);
      const after = nowS();
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
      assert.match(stdout, /^[^\n]+\n$/);
      const token = stdout.trimEnd();
      const [version, expiry, encodedPrefix, signature] = token.split(".");
      assert.equal(version, "v1");
      assert.ok(
        before + ttl <= Number(expiry) && Number(expiry) <= after + ttl,
      );
      assert.equal(Buffer.from(encodedPrefix, "base64url").toString(), prefix);
      assert.equal(token, refToken(SECRET, Number(expiry), prefix));
      assert.equal(signature.length, 43);
    });
  }
});

Deno.test("token exits 2 with one error line for bad flags", async (t) => {
  const cases: [string, string[], RegExp][] = [
    ["no secret", [], /--secret/],
    ["an empty secret", ["--secret", ""], /--secret/],
    ["ttl 0", ["--secret", SECRET, "--ttl", "0"], /--ttl/],
    [
      "a ttl that is not a number",
      ["--secret", SECRET, "--ttl", "1h"],
      /--ttl/,
    ],
    ["a negative ttl", ["--secret", SECRET, "--ttl=-5"], /--ttl/],
    ["an expiry past 12 digits", [
      "--secret",
      SECRET,
      "--ttl",
      "99999999999999",
    ], /--ttl/],
    ["an unknown flag", ["--secret", SECRET, "--key", "x"], /--key/],
    ["a positional argument", ["--secret", SECRET, "room"], /room/],
  ];
  for (const [name, args, mentions] of cases) {
    await t.step(name, async () => {
      const { code, stdout, stderr } = await run(["token", ...args]);
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      const lines = stderr.trimEnd().split("\n");
      assert.match(lines[0], /^error: /);
      assert.match(lines[0], mentions);
      assert.match(lines[1], /sigver token --help/);
    });
  }
});

Deno.test("a CLI server with --auth-secret lets in the token the CLI minted", async () => {
  // Rotation on the command line: the old secret still validates.
  const minted = await run([
    "token",
    "--secret",
    "the old auth secret",
    "--prefix",
    "team-7f3a/",
  ]);
  assert.equal(minted.code, 0, minted.stderr);
  const token = minted.stdout.split("\n")[0];
  await using cli = new Cli(cliArgs(
    "--auth-secret",
    "the new auth secret",
    "--auth-secret",
    "the old auth secret",
    "--turn-secret",
    TURN_SECRET,
    "--turn-url",
    TURN.urls[0],
    "--turn-url",
    TURN.urls[1],
    "--stun-url",
    TURN.stunUrls[0],
    "--turn-ttl",
    "120",
  ));
  const port = await cli.port();
  assert.match(cli.stderr, /INFO listen .* auth=tokens ice=\/ice-servers/);
  const base = `127.0.0.1:${port}`;
  await meet(
    `ws://${base}/t/${token}/${KEY}`,
    `ws://${base}/t/${token}/${KEY}?favored`,
  );
  const plain = await fetch(`http://${base}/${KEY}`, {
    headers: UPGRADE_HEADERS,
  });
  await plain.body?.cancel();
  assert.equal(plain.status, 401);
  const before = nowS();
  const ice = await fetch(`http://${base}/ice-servers?token=${token}`);
  assertCredentials(await ice.text(), TURN_SECRET, 120, before, nowS());
  assert.match(cli.stderr, /reject reason=token_missing status=401/);
  assert.ok(!cli.stderr.includes(token.split(".")[3]));
  assert.equal((await cli.child.stop()).code, 0, cli.stderr);
});

Deno.test("SIGVER_AUTH_SECRETS sets the secrets when the process may read it", async (t) => {
  const env = {
    SIGVER_AUTH_SECRETS: " the new auth secret , the old auth secret ,",
  };
  const allowEnv = ["--allow-env=SIGVER_AUTH_SECRETS"];
  await t.step("token signs with its first secret", async () => {
    const { code, stdout } = await run(["token"], allowEnv, env);
    assert.equal(code, 0);
    const [, expiry] = stdout.trimEnd().split(".");
    assert.equal(
      stdout.trimEnd(),
      refToken("the new auth secret", Number(expiry)),
    );
  });
  await t.step("a server takes every secret", async () => {
    await using child = spawn(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-net",
        "--allow-read",
        ...allowEnv,
        SERVER,
        ...cliArgs(),
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1", ...env },
      stdout: "null",
    });
    const match = await child.waitFor(
      /listen url=ws:\/\/127\.0\.0\.1:(\d+)\/ .*auth=tokens/,
      { what: "the listen line", stream: "stderr", timeout: WAIT_TIMEOUT },
    );
    const base = `ws://127.0.0.1:${match[1]}`;
    const expiry = nowS() + 600;
    await meet(
      `${base}/t/${refToken("the new auth secret", expiry)}/${KEY}`,
      `${base}/t/${refToken("the old auth secret", expiry)}/${KEY}`,
    );
  });
  await t.step("one that holds no secret stops the start", async () => {
    const { code, stderr } = await run(cliArgs(), allowEnv, {
      SIGVER_AUTH_SECRETS: " , ",
    });
    assert.equal(code, 2);
    assert.match(
      stderr,
      /^error: SIGVER_AUTH_SECRETS is set but holds no secret/,
    );
  });
  await t.step(
    "unreadable without --allow-env: no prompt, auth=off",
    async () => {
      await using cli = new Cli(cliArgs());
      await cli.port();
      assert.match(cli.stderr, /INFO listen .* auth=off/);
    },
  );
});

Deno.test("cli exits 2 for TURN and token flags that don't fit", async (t) => {
  const cases: [string, string[], RegExp][] = [
    [
      "--turn-url without --turn-secret",
      ["--turn-url", "turn:x"],
      /--turn-url needs --turn-secret/,
    ],
    [
      "--stun-url without --turn-secret",
      ["--stun-url", "stun:x"],
      /--stun-url needs --turn-secret/,
    ],
    [
      "--turn-ttl without --turn-secret",
      ["--turn-ttl", "60"],
      /--turn-ttl needs --turn-secret/,
    ],
    [
      "--turn-secret without --turn-url",
      ["--turn-secret", TURN_SECRET],
      /--turn-secret needs --turn-url/,
    ],
    [
      "an empty --turn-secret",
      ["--turn-secret", "", "--turn-url", "turn:x"],
      /--turn-secret/,
    ],
    [
      "an http --turn-url",
      ["--turn-secret", TURN_SECRET, "--turn-url", "http://x"],
      /--turn-url: 'http:\/\/x'/,
    ],
    ["a turn: --stun-url", [
      "--turn-secret",
      TURN_SECRET,
      "--turn-url",
      "turn:x",
      "--stun-url",
      "turn:y",
    ], /--stun-url: 'turn:y'/],
    ["--turn-ttl 0", [
      "--turn-secret",
      TURN_SECRET,
      "--turn-url",
      "turn:x",
      "--turn-ttl",
      "0",
    ], /--turn-ttl/],
    ["--turn-ttl 1.5", [
      "--turn-secret",
      TURN_SECRET,
      "--turn-url",
      "turn:x",
      "--turn-ttl",
      "1.5",
    ], /--turn-ttl/],
    [
      "an --ice-servers-path without /",
      ["--ice-servers-path", "ice"],
      /--ice-servers-path/,
    ],
    ["an empty --auth-secret", ["--auth-secret", ""], /--auth-secret/],
  ];
  for (const [name, args, mentions] of cases) {
    await t.step(name, async () => {
      const { code, stdout, stderr } = await run(cliArgs(...args));
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      const lines = stderr.trimEnd().split("\n");
      assert.match(lines[0], /^error: /);
      assert.match(lines[0], mentions);
    });
  }
});

Deno.test("cli --help lists the token command and the TURN flags", async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of [
      "--auth-secret",
      "--turn-secret",
      "--turn-url",
      "--stun-url",
      "--turn-ttl",
      "--ice-servers-path",
      "sigver token",
    ]
  ) {
    assert.ok(stdout.includes(flag), flag);
  }
  const token = await run(["token", "--help"]);
  assert.equal(token.code, 0);
  assert.match(token.stdout, /--secret/);
});

Deno.test("the demo page names the ICE servers path only when the server hands them out", async (t) => {
  const meta = async (server: SigverServer) => {
    const html = await (await fetch(httpUrl(server, "/"))).text();
    return html.match(/<meta name="sigver-ice-servers" content="([^"]*)">/)
      ?.[1];
  };
  await t.step("no TURN servers: empty, the page asks for none", async () => {
    await using server = startServer();
    assert.equal(await meta(server), "");
  });
  await t.step("TURN servers: the path", async () => {
    await using server = startServer({ turn: TURN });
    assert.equal(await meta(server), "/ice-servers");
  });
  await t.step("a moved path, escaped", async () => {
    await using server = startServer({
      turn: TURN,
      iceServersPath: '/ice?a="b"&c',
    });
    assert.equal(await meta(server), "/ice?a=&quot;b&quot;&amp;c");
  });
  await t.step("the endpoint off: empty", async () => {
    await using server = startServer({ turn: TURN, iceServersPath: false });
    assert.equal(await meta(server), "");
  });
});
