/**
 * Tests of the command line (`server.ts`), run as a subprocess: flags and
 * exit codes, the listen log line, real clients, signals and TLS.
 */

import assert from "node:assert/strict";
import { TestPeer, WAIT_TIMEOUT, waitFor } from "./_helpers.ts";
import { Cli, cliArgs, command, ROOT } from "./_cli.ts";
import { VERSION } from "../deno/version.ts";
import { deadline, DeadlineError } from "../lib/deadline.ts";

const CLOSE_GOING_AWAY = 1001;
/** Secrets of 16 bytes or more, as every secret must be. */
const CLUSTER_SECRET = "cluster-secret-for-cli-tests";
const AUTH_SECRET = "auth-secret-for-cli-tests";
const TURN_SECRET = "turn-secret-for-cli-tests";

/**
 * Runs the CLI to completion. One that is still running after
 * `WAIT_TIMEOUT` of real time (a server that should not have started) is
 * killed and reported with exit code -1.
 */
async function run(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = command(args).spawn();
  const output = child.output();
  let killed = false;
  try {
    await deadline(output, WAIT_TIMEOUT, "the CLI to exit");
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error;
    killed = true;
    child.kill("SIGKILL");
  }
  const { code, stdout, stderr } = await output;
  const text = new TextDecoder();
  return {
    code: killed ? -1 : code,
    stdout: text.decode(stdout),
    stderr: text.decode(stderr),
  };
}

/** Asserts a usage error: exit 2, one `error:` line first on stderr. */
function assertUsageError(
  result: { code: number; stdout: string; stderr: string },
  mentions: RegExp,
): void {
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stdout, "");
  const lines = result.stderr.trimEnd().split("\n");
  assert.match(lines[0], /^error: \S/);
  assert.match(lines[0], mentions);
  assert.equal(lines.filter((l) => l.startsWith("error:")).length, 1);
}

/** Runs openssl in `dir`; fails the test with its stderr if it fails. */
async function openssl(dir: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}

/** A test CA and a server certificate for 127.0.0.1 signed by it. */
async function makeCertificates(dir: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  await openssl(dir, [
    "req",
    "-x509",
    ...ec,
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=sigver test CA",
  ]);
  await openssl(dir, [
    "req",
    ...ec,
    "-nodes",
    "-keyout",
    "key.pem",
    "-out",
    "leaf.csr",
    "-subj",
    "/CN=localhost",
  ]);
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n" +
      "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "cert.pem",
    "-days",
    "2",
    "-extfile",
    "leaf.ext",
  ]);
}

async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "sigver_cli_test_" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

// Flags

Deno.test("cli prints the help on stdout and exits 0 when given --help", async () => {
  const { code, stdout, stderr } = await run(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^sigver \S+: /);
  assert.match(stdout, /--port <port>/);
  assert.equal(stderr, "");
});

Deno.test("cli prints the version of deno.json and exits 0 when given -V or --version", async (t) => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  for (const flag of ["-V", "--version"]) {
    await t.step(flag, async () => {
      const { code, stdout, stderr } = await run([flag]);
      assert.equal(code, 0);
      assert.equal(stdout, `${config.version}\n`);
      assert.equal(stderr, "");
    });
  }
});

Deno.test("cli prints one error line and exits 2 when a flag is unknown", async (t) => {
  for (const args of [["--nope"], ["-x"], ["extra"]]) {
    await t.step(args.join(" "), async () => {
      assertUsageError(await run(args), /./);
    });
  }
});

Deno.test("cli prints one error line and exits 2 when the port is invalid", async (t) => {
  for (
    const port of ["abc", "70000", "-1", "1.5", "", "0x50", "1e3", " 80"]
  ) {
    await t.step(JSON.stringify(port), async () => {
      assertUsageError(await run(["--port", port]), /port/);
    });
  }
});

Deno.test("cli exits 2 when the heartbeat interval is under 0.1 s", async (t) => {
  for (const seconds of ["0", "0.05", "0.099", "-1", "5s"]) {
    await t.step(seconds, async () => {
      assertUsageError(
        await run([`--heartbeat-interval=${seconds}`]),
        /--heartbeat-interval/,
      );
    });
  }
});

Deno.test("cli exits 2 when a TLS flag comes without its pair", async (t) => {
  const cases: [string, string[]][] = [
    ["--key without --cert", ["--key", "key.pem"]],
    ["--cert without --key", ["--cert", "cert.pem"]],
    ["--ca without --key and --cert", ["--ca", "ca.pem"]],
  ];
  for (const [name, args] of cases) {
    await t.step(name, async () => {
      assertUsageError(await run(args), /--(key|cert|ca)\b/);
    });
  }
});

Deno.test("cli exits 2 when the cluster flags do not go together", async (t) => {
  const node = [
    "--cluster-url",
    "ws://127.0.0.1:1",
    "--cluster-secret",
    CLUSTER_SECRET,
  ];
  const cases: [string, string[], RegExp][] = [
    ["--cluster-url without --redis", ["--cluster-url", "ws://a:1"], /--redis/],
    [
      "--cluster-lease-ttl without --redis",
      ["--cluster-lease-ttl", "30"],
      /--redis/,
    ],
    [
      "--redis without --cluster-url",
      ["--redis", "redis://127.0.0.1:1"],
      /--cluster-url/,
    ],
    [
      "a redis URL of another scheme",
      ["--redis", "rediss://127.0.0.1:1", ...node],
      /--redis/,
    ],
    [
      "a cluster URL with a path",
      [
        "--redis",
        "redis://127.0.0.1:1",
        "--cluster-url",
        "ws://a:1/x",
        "--cluster-secret",
        CLUSTER_SECRET,
      ],
      /--cluster-url/,
    ],
    ...["ws://u:p@a:1", "ws://a:1?x", "http://a:1"].map((url): [
      string,
      string[],
      RegExp,
    ] => [
      `a cluster URL ${url}`,
      [
        "--redis",
        "redis://127.0.0.1:1",
        "--cluster-url",
        url,
        "--cluster-secret",
        CLUSTER_SECRET,
      ],
      /--cluster-url/,
    ]),
    [
      "a lease shorter than 3 s",
      ["--redis", "redis://127.0.0.1:1", ...node, "--cluster-lease-ttl", "2"],
      /--cluster-lease-ttl/,
    ],
  ];
  for (const [name, args, mentions] of cases) {
    await t.step(name, async () => {
      assertUsageError(await run(args), mentions);
    });
  }
});

Deno.test("cli exits 2 naming --ice-servers-public when --turn-secret comes without --auth-secret", async (t) => {
  const turn = ["--turn-secret", TURN_SECRET, "--turn-url", "turn:127.0.0.1"];
  await t.step("--turn-secret alone: refused, an open relay", async () => {
    const result = await run(cliArgs(...turn));
    assertUsageError(result, /--turn-secret without --auth-secret/);
    assert.match(result.stderr.split("\n")[0], /--ice-servers-public/);
  });
  await t.step("--ice-servers-public without --turn-secret", async () => {
    assertUsageError(
      await run(cliArgs("--ice-servers-public")),
      /--ice-servers-public needs --turn-secret/,
    );
  });
});

Deno.test("cli serves /ice-servers without a token and warns at start when given --ice-servers-public", async () => {
  await using cli = new Cli(cliArgs(
    "--turn-secret",
    TURN_SECRET,
    "--turn-url",
    "turn:127.0.0.1:3478",
    "--ice-servers-public",
  ));
  const port = await cli.port();
  assert.match(cli.stderr, /INFO listen .* auth=off ice=\/ice-servers/);
  await cli.line(/WARN ice_public path=\/ice-servers .*open relay/);
  const response = await fetch(`http://127.0.0.1:${port}/ice-servers`);
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.match(body.iceServers[0].username, /^\d+:[0-9a-f]{16}$/);
  assert.equal((await cli.child.stop()).code, 0, cli.stderr);
});

Deno.test("cli with --auth-secret and --turn-secret starts without warning about an open relay", async () => {
  await using cli = new Cli(cliArgs(
    "--auth-secret",
    AUTH_SECRET,
    "--turn-secret",
    TURN_SECRET,
    "--turn-url",
    "turn:127.0.0.1:3478",
  ));
  const port = await cli.port();
  const response = await fetch(`http://127.0.0.1:${port}/ice-servers`);
  await response.body?.cancel();
  assert.equal(response.status, 401);
  assert.equal((await cli.child.stop()).code, 0, cli.stderr);
  assert.doesNotMatch(cli.stderr, /WARN/);
});

Deno.test("cli exits 2 when a secret is under 16 bytes, saying how to make one", async (t) => {
  const redis = ["--redis", "redis://127.0.0.1:1", "--cluster-url"];
  const cases: [string, string[], RegExp][] = [
    ["--auth-secret short", cliArgs("--auth-secret", "short"), /--auth-secret/],
    [
      "a short second --auth-secret",
      cliArgs(
        "--auth-secret",
        AUTH_SECRET,
        "--auth-secret",
        "x".repeat(15),
      ),
      /--auth-secret: 15 bytes/,
    ],
    [
      "--cluster-secret abc",
      cliArgs(
        ...redis,
        "ws://127.0.0.1:1",
        "--cluster-secret",
        "abc",
      ),
      /--cluster-secret/,
    ],
    // "cluster-secret" itself is 14 bytes.
    [
      "--cluster-secret cluster-secret",
      cliArgs(
        ...redis,
        "ws://127.0.0.1:1",
        "--cluster-secret",
        "cluster-secret",
      ),
      /--cluster-secret: 14 bytes/,
    ],
    [
      "--turn-secret short",
      cliArgs(
        "--auth-secret",
        AUTH_SECRET,
        "--turn-secret",
        "short",
        "--turn-url",
        "turn:x",
      ),
      /--turn-secret/,
    ],
    ["token --secret abcdef", ["token", "--secret", "abcdef"], /--secret/],
    // Bytes, not characters: 5 characters of 3 bytes.
    ["15 bytes in 5 characters", ["token", "--secret", "€€€€€"], /15 bytes/],
  ];
  for (const [name, args, mentions] of cases) {
    await t.step(name, async () => {
      const result = await run(args);
      assertUsageError(result, mentions);
      const line = result.stderr.split("\n")[0];
      assert.match(line, /under 16 \(use 32 random bytes: sigver secret\)/);
      // The secret itself is never printed.
      assert.doesNotMatch(line, /short|abcdef|abc'|€/);
    });
  }
  await t.step("16 bytes are enough", async () => {
    const { code, stdout } = await run(["token", "--secret", "x".repeat(16)]);
    assert.equal(code, 0);
    assert.match(stdout, /^v1\./);
  });
});

Deno.test("cli secret prints 32 random bytes, base64url, that the server takes", async (t) => {
  const first = await run(["secret"]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stderr, "");
  assert.match(first.stdout, /^[A-Za-z0-9_-]{43}\n$/);
  const second = await run(["secret"]);
  assert.notEqual(second.stdout, first.stdout);
  await t.step("a token signed with it", async () => {
    const token = await run(["token", "--secret", first.stdout.trim()]);
    assert.equal(token.code, 0, token.stderr);
  });
  await t.step("--help", async () => {
    const help = await run(["secret", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /32 random bytes/);
  });
  await t.step("an argument: exit 2", async () => {
    assertUsageError(await run(["secret", "--length", "8"]), /secret/);
  });
  await t.step("the help lists it", async () => {
    const help = await run(["--help"]);
    assert.match(help.stdout, /^ {2}secret {2,}print a new random secret/m);
    assert.match(help.stdout, /--ice-servers-public/);
  });
});

Deno.test("cli exits 1 with an error instead of serving plain HTTP when a TLS file is missing", async (t) => {
  await using dir = await tempDir();
  await makeCertificates(dir.path);
  const missing = `${dir.path}/missing.pem`;
  const cases: [string, string[], RegExp][] = [
    [
      "missing key",
      ["--key", missing, "--cert", `${dir.path}/cert.pem`],
      /--key/,
    ],
    [
      "missing cert",
      ["--key", `${dir.path}/key.pem`, "--cert", missing],
      /--cert/,
    ],
    [
      "missing ca",
      [
        "--key",
        `${dir.path}/key.pem`,
        "--cert",
        `${dir.path}/cert.pem`,
        "--ca",
        missing,
      ],
      /--ca/,
    ],
  ];
  for (const [name, args, flag] of cases) {
    await t.step(name, async () => {
      const { code, stdout, stderr } = await run(cliArgs(...args));
      assert.equal(code, 1, stderr);
      assert.equal(stdout, "");
      assert.match(stderr, /^error: /);
      assert.match(stderr.split("\n")[0], flag);
      assert.ok(stderr.includes(missing), stderr);
      assert.doesNotMatch(stderr, /listen/);
    });
  }
});

Deno.test("cli exits 1 with an error when the TLS files are not PEM", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/bad.pem`, "not a certificate\n");
  const bad = `${dir.path}/bad.pem`;
  const { code, stderr } = await run(cliArgs("--key", bad, "--cert", bad));
  assert.equal(code, 1, stderr);
  assert.match(stderr, /^error: /);
  assert.doesNotMatch(stderr, /listen/);
});

Deno.test("cli exits 1 with an error when the port is in use", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const { code, stderr } = await run(
    ["--host", "127.0.0.1", "--port", String(port)],
  );
  assert.equal(code, 1, stderr);
  assert.match(stderr, /^error: /);
  assert.doesNotMatch(stderr, /listen/);
});

// Serving

Deno.test("cli logs the real address it listens on when given port 0", async () => {
  await using cli = new Cli(cliArgs());
  const port = await cli.port();
  assert.notEqual(port, 0);
  assert.match(
    cli.stderr,
    new RegExp(`version=${VERSION.replace(/\./g, "\\.")}`),
  );
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  assert.equal(response.status, 200);
  await response.body?.cancel();
  cli.process.kill("SIGTERM");
  assert.equal(await cli.exit(), 0);
});

Deno.test("cli relays between real clients when they join through it", async () => {
  await using cli = new Cli(cliArgs());
  const url = `ws://127.0.0.1:${await cli.port()}/room`;
  await using m = await TestPeer.open(url);
  await using j = await TestPeer.open(url);
  assert.equal(await m.join(1), true);
  assert.equal(await j.join(2), false);
  j.sendContent({ data: "offer" });
  const offer = await m.nextContent();
  assert.equal(offer.data, "offer");
  m.sendContent({ recipientId: offer.senderId, data: "answer" });
  assert.equal((await j.nextContent()).data, "answer");
});

Deno.test("cli relays a frame of any size when given --max-message-size 0", async () => {
  await using cli = new Cli(cliArgs("--max-message-size", "0"));
  const url = `ws://127.0.0.1:${await cli.port()}/room`;
  await using m = await TestPeer.open(url);
  await using j = await TestPeer.open(url);
  assert.equal(await m.join(1), true);
  assert.equal(await j.join(2), false);
  // Over the default limit of 65536 bytes, which closes with 1009.
  const big = "x".repeat(100_000);
  j.sendContent({ data: big });
  assert.equal((await m.nextContent()).data, big);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`cli closes every socket with 1001 and exits 0 on ${signal}`, async () => {
    await using cli = new Cli(cliArgs());
    const url = `ws://127.0.0.1:${await cli.port()}/room`;
    await using m = await TestPeer.open(url);
    await using j = await TestPeer.open(url);
    await using other = await TestPeer.open(url.replace("room", "other"));
    // Joining proves the server is past start-up (its signal handlers set).
    assert.equal(await m.join(1), true);
    assert.equal(await j.join(2), false);
    cli.process.kill(signal);
    for (const peer of [m, j, other]) {
      assert.equal((await peer.waitClosed()).code, CLOSE_GOING_AWAY);
    }
    assert.equal(await cli.exit(), 0);
    assert.match(cli.stderr, new RegExp(`shutdown signal=${signal} peers=3`));
    assert.match(cli.stderr, /INFO stopped/);
  });
}

Deno.test("cli keeps serving when nobody reads its stderr", async () => {
  // A free port, found by the OS: this child's stderr is never read, so the
  // listen line cannot tell it.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const child = command(["--host", "127.0.0.1", "--port", `${port}`]).spawn();
  try {
    const base = `127.0.0.1:${port}`;
    // Up once a plain request gets through. A real wait: the child starts
    // in real time (a CLI runs the system clock), and with its stderr
    // unread no listen line can tell when, so poll.
    await waitFor(
      () =>
        fetch(`http://${base}/healthz`).then(
          (r) => r.body?.cancel().then(() => true) ?? true,
          () => false,
        ),
      "the server to start",
    );
    // 800 opens and closes log about 170 KB: far more than a pipe holds.
    for (let round = 0; round < 16; round++) {
      const peers = await Promise.all(
        Array.from(
          { length: 50 },
          () => TestPeer.open(`ws://${base}/room-${round}`),
        ),
      );
      await Promise.all(peers.map((peer) => peer[Symbol.asyncDispose]()));
    }
    const response = await fetch(`http://${base}/healthz`, {
      signal: AbortSignal.timeout(WAIT_TIMEOUT),
    });
    assert.equal(await response.text(), "ok\n");
    await using m = await TestPeer.open(`ws://${base}/last`);
    assert.equal(await m.join(1), true);
    child.kill("SIGTERM");
    assert.equal((await m.waitClosed()).code, CLOSE_GOING_AWAY);
    assert.equal((await child.status).code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await child.stdout.cancel();
    await child.stderr.cancel();
  }
});

Deno.test("cli serves wss and https when given a key and a certificate", async () => {
  await using dir = await tempDir();
  await makeCertificates(dir.path);
  await using cli = new Cli(cliArgs(
    "--key",
    `${dir.path}/key.pem`,
    "--cert",
    `${dir.path}/cert.pem`,
    "--ca",
    `${dir.path}/ca.pem`,
  ));
  const port = await cli.port("wss");
  using client = Deno.createHttpClient({
    caCerts: [await Deno.readTextFile(`${dir.path}/ca.pem`)],
  });
  const response = await fetch(`https://127.0.0.1:${port}/healthz`, {
    client,
  });
  assert.equal(response.status, 200);
  await response.body?.cancel();
  const url = `wss://127.0.0.1:${port}/room`;
  await using m = await TestPeer.open(url, { client });
  await using j = await TestPeer.open(url, { client });
  assert.equal(await m.join(1), true);
  assert.equal(await j.join(2), false);
  j.sendContent({ data: "offer over TLS" });
  assert.equal((await m.nextContent()).data, "offer over TLS");
  // Plain ws on the same port is refused: there is no fallback.
  const plain = new TestPeer(`ws://127.0.0.1:${port}/room`);
  await assert.rejects(plain.opened);
  await plain.waitClosed();
  cli.process.kill("SIGTERM");
  assert.equal((await m.waitClosed()).code, CLOSE_GOING_AWAY);
  assert.equal(await cli.exit(), 0);
});
