/**
 * The documented deployment, run for real: Debian's nginx with the
 * configuration of `docs/deploy.md`, TLS from a certificate made here, in
 * front of sigver started with the documented `ExecStart` line (and access
 * tokens on, so that every request carries one in its path). Real clients
 * connect over wss, from several loopback source addresses, so that the
 * per-address limit can be seen counting clients and not nginx; a fallback
 * session posts SDP-sized frames through it; and the access log it leaves
 * holds no token and no session id.
 *
 * Run by `deno task test:nginx` (not by `deno task test`: it needs nginx and
 * openssl). Everything binds 127.0.0.1; nginx runs in the foreground with its
 * pid, logs and temporary files in a temporary directory, so it runs as any
 * user. The nginx binary is `$NGINX`, else `/usr/sbin/nginx`, else `nginx`.
 */

import assert from "node:assert/strict";
import { TestPeer, UPGRADE_HEADERS } from "../_helpers.ts";
import { EventStream, fromBase64 } from "../_sse_peer.ts";
import { type ChildProcess, freePort, run, spawn } from "../../dev/process.ts";
import { relaySession } from "../dist/_session.ts";
import { resolveHandlerOptions } from "../../deno/options.ts";
import { decodeMessage, encodeMessage } from "../../lib/netflux/wire.ts";
import type { Message } from "../../lib/netflux/wire.ts";
import { mintToken } from "../../lib/token.ts";

const ROOT = new URL("../../", import.meta.url);
const DOC = new URL("docs/deploy.md", ROOT);
const MARKER = "<!-- tested by tests/nginx/proxy.ts";
const WAIT = 15_000;

/** The nginx binary to run. */
function _nginx(): string {
  const env = Deno.env.get("NGINX");
  if (env) return env;
  try {
    Deno.statSync("/usr/sbin/nginx");
    return "/usr/sbin/nginx";
  } catch {
    return "nginx";
  }
}

/**
 * Replaces `from` by `to` in `text`, which must hold it exactly `count`
 * times: a documentation change that the test no longer matches fails here
 * instead of testing something else.
 */
function _replace(text: string, from: string, to: string, count = 1): string {
  const found = text.split(from).length - 1;
  assert.equal(
    found,
    count,
    `docs/deploy.md: expected '${from}' ${count} time(s) in the tested block, found ${found}`,
  );
  return text.replaceAll(from, to);
}

/** The fenced block of `lang` that follows `after` in `doc`. */
function _block(doc: string, lang: string, after: number): string {
  const open = doc.indexOf("```" + lang + "\n", after);
  assert.notEqual(open, -1, `docs/deploy.md: no \`\`\`${lang} block`);
  const start = open + lang.length + 4;
  return doc.slice(start, doc.indexOf("\n```", start) + 1);
}

/** The documented nginx block, as it is written. */
function _documentedSite(doc: string): string {
  const at = doc.indexOf(MARKER);
  assert.notEqual(at, -1, `docs/deploy.md: marker '${MARKER}' not found`);
  return _block(doc, "nginx", at);
}

/** The documented nginx block, listening and logging where the test says. */
function _nginxSite(
  doc: string,
  ports: { tls: number; plain: number; sigver: number },
  files: { cert: string; key: string; accessLog: string },
  headerTimeout: string,
): string {
  let conf = _documentedSite(doc);
  conf = _replace(
    conf,
    "listen 443 ssl;",
    `listen 127.0.0.1:${ports.tls} ssl;`,
  );
  conf = _replace(conf, "listen [::]:443 ssl;", "");
  conf = _replace(conf, "listen 80;", `listen 127.0.0.1:${ports.plain};`);
  conf = _replace(conf, "listen [::]:80;", "");
  conf = _replace(
    conf,
    "/etc/letsencrypt/live/sigver.example.org/fullchain.pem",
    files.cert,
  );
  conf = _replace(
    conf,
    "/etc/letsencrypt/live/sigver.example.org/privkey.pem",
    files.key,
  );
  // Both servers log to it, in the documented format.
  conf = _replace(
    conf,
    "access_log /var/log/nginx/sigver.access.log sigver_redacted;",
    `access_log ${files.accessLog} sigver_redacted;`,
    2,
  );
  conf = _replace(
    conf,
    "proxy_pass http://127.0.0.1:8000;",
    `proxy_pass http://127.0.0.1:${ports.sigver};`,
  );
  conf = _replace(
    conf,
    "client_header_timeout 10s;",
    `client_header_timeout ${headerTimeout};`,
  );
  return conf;
}

/** The documented `ExecStart` command line, run from this checkout. */
function _execStart(doc: string, port: number, version: string): string[] {
  const unit = _block(doc, "ini", 0);
  const line = unit.split("\n").find((l) => l.startsWith("ExecStart="));
  assert.ok(line, "docs/deploy.md: no ExecStart= line in the ini block");
  let command = line.slice("ExecStart=".length);
  command = _replace(command, "/usr/bin/deno run ", "");
  command = _replace(
    command,
    `jsr:@coast/sigver@${version} `,
    `${new URL("mod.ts", ROOT).pathname} `,
  );
  command = _replace(command, "127.0.0.1:8000", `127.0.0.1:${port}`);
  command = _replace(command, "--port 8000", `--port ${port}`);
  return ["run", ...command.split(/\s+/).filter((a) => a !== "")];
}

/** Runs a command to completion, failing with its output. */
async function _run(
  command: string,
  args: string[],
  cwd: string,
): Promise<void> {
  const out = await run(command, { args, cwd });
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")} failed:\n${out.stderr}`);
  }
}

/** A CA, and a server certificate it signed for 127.0.0.1 and localhost. */
async function _certificates(dir: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  // deno-fmt-ignore
  await _run("openssl", [
    "req", "-x509", ...ec, "-nodes", "-days", "1",
    "-subj", "/CN=sigver test CA", "-keyout", "ca.key", "-out", "ca.pem",
  ], dir);
  // deno-fmt-ignore
  await _run("openssl", [
    "req", ...ec, "-nodes", "-subj", "/CN=localhost",
    "-keyout", "key.pem", "-out", "server.csr",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n" +
      "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  // deno-fmt-ignore
  await _run("openssl", [
    "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
    "-CAcreateserial", "-days", "1", "-extfile", "server.ext",
    "-out", "cert.pem",
  ], dir);
}

/**
 * The HTTP status of a WebSocket upgrade request, for a refusal that a
 * `WebSocket` would only show as code 1006.
 */
async function _upgradeStatus(
  url: string,
  client: Deno.HttpClient,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const response = await fetch(url, {
    client,
    signal: AbortSignal.timeout(WAIT),
    headers: { ...UPGRADE_HEADERS, ...headers },
  });
  if (response.status === 101) {
    await response.body?.cancel();
    return { status: 101, body: "" };
  }
  return { status: response.status, body: await response.text() };
}

/** A size of nginx's syntax (`64k`, `1m`, `512`) in bytes. */
function _nginxSize(site: string, directive: string): number {
  const found = new RegExp(`^ *${directive} (\\d+)([km]?);$`, "m").exec(site);
  assert.ok(found, `docs/deploy.md: no '${directive}' in the tested block`);
  const unit = { "": 1, k: 1024, m: 1024 * 1024 }[found[2]]!;
  return Number(found[1]) * unit;
}

/**
 * The text of an SDP offer with its ICE candidates, about `size` bytes:
 * what a browser posts up the fallback when it offers a connection.
 */
function _sdpOffer(size: number): string {
  let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n" +
    "t=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n" +
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
    "c=IN IP4 0.0.0.0\r\na=ice-ufrag:Fp4z\r\n" +
    "a=ice-pwd:Kp2q0mWm2vDk8J1uGZ5s3R7a\r\na=ice-options:trickle\r\n" +
    "a=fingerprint:sha-256 " +
    Array.from(
      { length: 32 },
      (_, i) => (i * 7 % 256).toString(16).padStart(2, "0").toUpperCase(),
    ).join(":") +
    "\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";
  for (let i = 0; sdp.length < size; i++) {
    sdp += `a=candidate:${1000 + i} 1 udp ${2122260223 - i} 192.0.2.${
      i % 250
    } ${50000 + i} typ host generation 0 network-id ${i % 4}\r\n`;
  }
  return sdp.slice(0, size);
}

/**
 * A fallback peer through a TLS proxy: the stream and the POSTs go through
 * `client` (which trusts the test's CA), the events are read with the
 * tests' {@linkcode EventStream}.
 */
class _FallbackPeer implements AsyncDisposable {
  readonly url: string;
  readonly id: string;
  readonly stream: EventStream;
  readonly #client: Deno.HttpClient;

  private constructor(
    url: string,
    id: string,
    stream: EventStream,
    client: Deno.HttpClient,
  ) {
    this.url = url;
    this.id = id;
    this.stream = stream;
    this.#client = client;
  }

  /** Opens a session on `url` and reads its session event. */
  static async open(
    url: string,
    client: Deno.HttpClient,
  ): Promise<_FallbackPeer> {
    const abort = new AbortController();
    const response = await fetch(url, {
      client,
      headers: { accept: "text/event-stream" },
      signal: abort.signal,
    });
    const stream = new EventStream(response, abort);
    if (response.status !== 200) {
      await stream.done;
      throw new Error(`Expected 200, got ${response.status}: ${stream.text}`);
    }
    const first = await stream.next(WAIT);
    assert.equal(first.event, "session");
    return new _FallbackPeer(url, first.data, stream, client);
  }

  /** `url` with `?session=<id>`. */
  get sessionUrl(): string {
    return `${this.url}?session=${this.id}`;
  }

  /** POSTs one body; the answer's status. */
  async post(body: Uint8Array): Promise<number> {
    const response = await fetch(this.sessionUrl, {
      client: this.#client,
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: new Uint8Array(body),
      signal: AbortSignal.timeout(WAIT),
    });
    await response.body?.cancel();
    return response.status;
  }

  /** Sends one message up: its POST must get 204. */
  async send(message: Message): Promise<void> {
    assert.equal(await this.post(encodeMessage(message)), 204);
  }

  /** The next message down the stream, heartbeats skipped. */
  async next(): Promise<Message> {
    for (;;) {
      const event = await this.stream.next(WAIT);
      assert.equal(event.event, "message", `${event.event}: ${event.data}`);
      const message = decodeMessage(fromBase64(event.data));
      assert.ok(message !== undefined, "a frame with no type");
      if (message.type !== "heartbeat") return message;
    }
  }

  /** Ends the session with a DELETE, and waits for its stream to end. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.stream.ended) {
      const response = await fetch(this.sessionUrl, {
        client: this.#client,
        method: "DELETE",
        signal: AbortSignal.timeout(WAIT),
      });
      await response.body?.cancel();
      assert.equal(response.status, 204);
    }
    await this.stream.cancel();
  }
}

/** A `content` message with `data`. */
function _content(data: Uint8Array, recipientId = 0): Message {
  return {
    type: "content",
    content: { senderId: 0, recipientId, lastData: false, data },
  };
}

/** A `content` message whose encoding is exactly `size` bytes. */
function _contentOfSize(size: number): Uint8Array {
  // The framing around the data is a few bytes: try the lengths below.
  for (let n = size; n > size - 16; n--) {
    const bytes = encodeMessage(_content(new Uint8Array(n).fill(0x61)));
    if (bytes.length === size) return bytes;
  }
  throw new Error(`Cannot encode a content of exactly ${size} bytes`);
}

/** Waits until the access log holds a line that matches `line`. */
async function _logged(file: string, line: RegExp): Promise<string> {
  let log = "";
  // nginx writes a line once its response is out: poll, for WAIT at most.
  for (let i = 0; i < WAIT / 20 && !line.test(log); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    log = await Deno.readTextFile(file).catch(() => "");
  }
  assert.match(log, line, "the access log");
  return log;
}

Deno.test("nginx configured as documented proxies wss to sigver and reports each client's address", async (t) => {
  const doc = await Deno.readTextFile(DOC);
  const { version } = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  const dir = await Deno.makeTempDir({ prefix: "sigver_nginx_" });
  const accessLog = `${dir}/sigver.access.log`;
  // Tokens on, so that every request below carries one in its path.
  const secret = Array.from(
    crypto.getRandomValues(new Uint8Array(32)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const token = await mintToken(secret, { ttl: 600_000 });
  const sessionIds: string[] = [];
  const clients: Deno.HttpClient[] = [];
  let server: ChildProcess | undefined;
  let nginx: ChildProcess | undefined;
  try {
    await _certificates(dir);
    const ca = await Deno.readTextFile(`${dir}/ca.pem`);
    const client = (localAddress?: string) => {
      const c = Deno.createHttpClient({ caCerts: [ca], localAddress });
      clients.push(c);
      return c;
    };
    const ports = { tls: freePort(), plain: freePort(), sigver: freePort() };

    server = spawn(Deno.execPath(), {
      args: [
        ..._execStart(doc, ports.sigver, version),
        "--auth-secret",
        secret,
        "--max-peers-per-address",
        "2",
        // Peers' opens are debug lines: the test reads the addresses in them.
        "--log-level",
        "debug",
      ],
      cwd: dir,
      env: { NO_COLOR: "1" },
    });
    await server.waitFor(
      /INFO listen url=/,
      { timeout: WAIT, what: "sigver to listen" },
    );

    const site = _nginxSite(
      doc,
      ports,
      { cert: `${dir}/cert.pem`, key: `${dir}/key.pem`, accessLog },
      "2s",
    );
    await Deno.writeTextFile(`${dir}/sigver.conf`, site);
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr info;
events {
    worker_connections 256;
}
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${dir}/sigver.conf;
}
`,
    );
    const nginxArgs = [
      "-p",
      `${dir}/`,
      "-c",
      `${dir}/nginx.conf`,
      "-e",
      "stderr",
    ];
    await _run(_nginx(), ["-t", ...nginxArgs], dir);
    nginx = spawn(_nginx(), {
      args: nginxArgs,
      cwd: dir,
    });
    await nginx.waitForPort(ports.tls, WAIT);
    const origin = `127.0.0.1:${ports.tls}`;
    const base = `wss://${origin}/t/${token}/`;

    await t.step("a session runs through nginx over wss", async () => {
      await relaySession(base, { client: client() });
    });

    await t.step(
      "the per-address limit counts the client's address, not nginx's",
      async () => {
        const key = `limit-${crypto.randomUUID()}`;
        const first = client("127.0.0.2");
        await using a1 = await TestPeer.open(base + key, { client: first });
        await using a2 = await TestPeer.open(base + key, { client: first });
        assert.equal(await a1.join(1), true);
        assert.equal(await a2.join(2, [1]), true);

        const third = await _upgradeStatus(
          base.replace("wss:", "https:") + key,
          first,
        );
        assert.equal(
          third.status,
          429,
          `third peer from 127.0.0.2: ${third.body}`,
        );
        assert.match(third.body, /Too Many Requests/);
        // A client's own X-Forwarded-For comes first; nginx appends the address
        // it saw, which is the one sigver takes.
        const forged = await _upgradeStatus(
          base.replace("wss:", "https:") + key,
          first,
          { "x-forwarded-for": "203.0.113.7" },
        );
        assert.equal(
          forged.status,
          429,
          "a forged X-Forwarded-For is no way out",
        );

        await using b1 = await TestPeer.open(base + key, {
          client: client("127.0.0.3"),
        });
        assert.equal(
          await b1.join(3, [1]),
          true,
          "another address still joins",
        );

        await server!.waitFor(
          /INFO reject reason=address status=429 (?:key=[0-9a-f]{8} )?addr=127\.0\.0\.2\n[^]*INFO reject reason=address status=429 (?:key=[0-9a-f]{8} )?addr=127\.0\.0\.2\n/,
          { timeout: WAIT, what: "two refusals of 127.0.0.2" },
        );
        await server!.waitFor(
          /DEBUG open .*addr=127\.0\.0\.3/,
          { timeout: WAIT, what: "127.0.0.3" },
        );
        assert.doesNotMatch(server!.stderr, /addr=203\.0\.113\.7/);
        assert.doesNotMatch(
          server!.stderr,
          /reject reason=address .*addr=127\.0\.0\.1\b/,
          "nginx's own address is never refused",
        );
      },
    );

    await t.step(
      "a client that stalls in its request head is dropped by client_header_timeout",
      async () => {
        const stalled = await Deno.connectTls({
          hostname: "127.0.0.1",
          port: ports.tls,
          caCerts: [ca],
        });
        try {
          const start = performance.now();
          await stalled.write(
            new TextEncoder().encode(
              `GET /stalled HTTP/1.1\r\nHost: 127.0.0.1\r\n`,
            ),
          );
          // Other clients are served while the stalled one is held.
          await relaySession(base, { client: client("127.0.0.4") });
          const read = stalled.read(new Uint8Array(1024)).catch(() => null);
          let timer: ReturnType<typeof setTimeout> | undefined;
          const late = new Promise<"late">((resolve) => {
            timer = setTimeout(() => resolve("late"), 10_000);
          });
          const end = await Promise.race([read, late]);
          clearTimeout(timer);
          assert.notEqual(
            end,
            "late",
            "nginx still holds the stalled client after 10 s",
          );
          assert.equal(end, null, "nginx closes without answering");
          const elapsed = performance.now() - start;
          assert.ok(
            elapsed >= 1500,
            `closed after ${elapsed} ms, before the 2 s timeout`,
          );
          await nginx!.waitFor(
            /client timed out .* while reading client request headers/,
            { timeout: WAIT, what: "nginx to log the header timeout" },
          );
        } finally {
          stalled.close();
        }
      },
    );

    await t.step(
      "the fallback posts SDP-sized frames, up to --max-message-size, through nginx",
      async () => {
        const limit = _nginxSize(site, "client_max_body_size");
        assert.equal(
          limit,
          resolveHandlerOptions({ maxPeers: 0 }).maxMessageSize,
          "client_max_body_size is sigver's default --max-message-size",
        );
        assert.equal(
          _nginxSize(site, "client_body_buffer_size"),
          limit,
          "frames are never written to a temporary file",
        );
        const key = `fallback-${crypto.randomUUID()}`;
        const https = client();
        await using member = await TestPeer.open(base + key, {
          client: https,
        });
        assert.equal(await member.join(1), true);
        await using joiner = await _FallbackPeer.open(
          `https://${origin}/t/${token}/${key}`,
          https,
        );
        sessionIds.push(joiner.id);
        await joiner.send({ type: "connect", connect: { id: 2, members: [] } });
        assert.deepEqual(await joiner.next(), {
          type: "connected",
          connected: false,
        });

        const offer = _sdpOffer(6000);
        await joiner.send(_content(new TextEncoder().encode(offer)));
        const got = await member.nextContent();
        assert.equal(got.data, offer, "the offer, whole");
        const answer = _sdpOffer(3000).replace(
          "a=setup:actpass",
          "a=setup:active",
        );
        member.sendContent({ recipientId: got.senderId, data: answer });
        const down = await joiner.next();
        assert.equal(down.type, "content");
        if (down.type === "content") {
          assert.equal(new TextDecoder().decode(down.content.data), answer);
        }

        // A frame of exactly the limit passes nginx and sigver; a byte
        // more is refused (nginx answers first) and the session goes on.
        const largest = _contentOfSize(limit);
        assert.equal(await joiner.post(largest), 204, `${limit} bytes`);
        const sent = decodeMessage(largest);
        assert.equal(sent?.type, "content");
        assert.equal(
          (await member.nextContent()).data.length,
          sent.type === "content" ? sent.content.data.length : -1,
        );
        assert.equal(
          await joiner.post(new Uint8Array(limit + 1)),
          413,
          `${limit + 1} bytes`,
        );
        await joiner.send(_content(new TextEncoder().encode("still on")));
        assert.equal((await member.nextContent()).data, "still on");
      },
    );

    await t.step(
      "the access log keeps the fallback's requests without token or session id",
      async () => {
        const [id] = sessionIds;
        const log = await _logged(
          accessLog,
          /"DELETE \/t\/-\/fallback-[0-9a-f-]+\?session=- HTTP\/1\.1" 204 /,
        );
        const lines = log.split("\n").filter((l) => l.includes("/fallback-"));
        assert.ok(
          lines.some((l) =>
            /"GET \/t\/-\/fallback-[0-9a-f-]+ HTTP\/1\.1" 200 /.test(l)
          ),
          `the stream's GET, redacted:\n${lines.join("\n")}`,
        );
        const posts = lines.filter((l) =>
          /"POST \/t\/-\/fallback-[0-9a-f-]+\?session=- HTTP\/1\.1" /.test(l)
        );
        assert.deepEqual(
          posts.map((l) => Number(l.split('" ')[1].split(" ")[0])),
          [204, 204, 204, 413, 204],
          `the POSTs, redacted:\n${lines.join("\n")}`,
        );
        assert.ok(!log.includes(token), "no token in the access log");
        assert.ok(!log.includes(id), "no session id in the access log");
      },
    );

    await t.step(
      "/metrics is kept off the proxy and still served locally",
      async () => {
        const proxied = await fetch(`https://127.0.0.1:${ports.tls}/metrics`, {
          signal: AbortSignal.timeout(WAIT),
          client: client(),
        });
        await proxied.body?.cancel();
        assert.equal(proxied.status, 403);
        const local = await fetch(`http://127.0.0.1:${ports.sigver}/metrics`, {
          signal: AbortSignal.timeout(WAIT),
        });
        assert.match(await local.text(), /sigver_peers /);
      },
    );

    await t.step("plain http is redirected to https", async () => {
      const response = await fetch(`http://127.0.0.1:${ports.plain}/room`, {
        signal: AbortSignal.timeout(WAIT),
        redirect: "manual",
      });
      await response.body?.cancel();
      assert.equal(response.status, 301);
      assert.equal(response.headers.get("location"), "https://127.0.0.1/room");
    });

    const nginxEnd = await nginx.stop({ timeout: 15_000 });
    assert.equal(nginxEnd.code, 0, nginxEnd.stderr);
    // Every request of every step carried the token; none left it behind.
    const log = await Deno.readTextFile(accessLog);
    assert.match(log, /"GET \/t\/-\/dist-[0-9a-f-]+ HTTP\/1\.1" 101 /);
    assert.ok(!log.includes(token), "no token in the access log");
    for (const id of sessionIds) assert.ok(!log.includes(id), id);
    const serverEnd = await server.stop({ timeout: 15_000 });
    assert.equal(serverEnd.code, 0, serverEnd.stderr);
  } finally {
    for (const c of clients) c.close();
    await nginx?.[Symbol.asyncDispose]();
    await server?.[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
});
