/**
 * The sigver command line: parses flags compatible with the original Node.js
 * sigver, starts the server, logs where it listens and drains on SIGINT or
 * SIGTERM.
 *
 * ```sh
 * deno run --allow-net --allow-read server.ts --port 8000
 * ```
 *
 * @module
 */

import {
  type ServeOptions,
  servePlaced,
  type SigverServer,
} from "./deno/serve.ts";
import {
  enabled,
  formatLine,
  LOG_LEVELS,
  type LogFields,
  type LogFormat,
  Logger,
  type LogLevel,
} from "./lib/log.ts";
import { VERSION } from "./deno/version.ts";
import { ClusterPlacement } from "./cluster/placement.ts";
import { RedisTopicBus } from "./cluster/topic_bus.ts";
import { parseNodeUrl } from "./lib/node_url.ts";
import type { ClusterOptions } from "./cluster/node.ts";
import { MAX_TOKEN_EXPIRY, mintToken } from "./lib/token.ts";
import { MIN_SECRET_BYTES, newSecret } from "./lib/secret.ts";
import { checkIceUrls } from "./lib/turn.ts";
import { settleWithin } from "./lib/deadline.ts";
import { parseFlags } from "./lib/flags.ts";
import type { TurnOptions } from "./deno/ice.ts";
import { MIN_HEARTBEAT_INTERVAL } from "./deno/options.ts";

const USAGE = `sigver ${VERSION}: WebRTC signaling server for Netflux

Usage: sigver [options]
       sigver token --secret <secret> [--prefix <prefix>] [--ttl <s>]
       sigver secret

Server:
  -h, --host <host>              interface to listen on (default 0.0.0.0)
  -p, --port <port>              port to listen on (default 8000)
  -k, --key <file>               TLS private key (PEM); with --cert: wss/https
  -c, --cert <file>              TLS certificate chain (PEM)
  -a, --ca <file>                CA certificates (PEM), appended to the chain
  -V, --version                  print the version and exit
      --help                     print this help and exit

Limits (0 turns a limit off):
      --max-message-size <bytes> largest frame; larger closes with 1009 (default 65536)
      --max-peers <n>            peers at once; more get HTTP 503
                                 (default: open-file limit less 256)
      --max-peers-per-address <n> peers per client address; more get HTTP 429
                                 (default 256; loopback not counted without --trust-proxy)
      --trust-proxy              client address from X-Forwarded-For / Forwarded
      --message-rate <n>         messages per second per peer; over it closes with 1008 (default 2000)
      --message-burst <n>        messages a peer may send at once over its rate (default 4000)
      --max-buffered <bytes>     unsent bytes per peer; a slower reader closes with 1008
                                 (default 1048576)
      --upgrade-timeout <s>      seconds an upgrade may take to open (default 10)
      --allow-origin <origin>    allowed Origin (repeatable); others get HTTP 403
      --require-origin           refuse upgrades without an Origin header (HTTP 403)

Operations:
      --health-path <path>       liveness endpoint, "off" to disable (default /healthz)
      --ready-path <path>        readiness endpoint, 503 while draining (default /readyz)
      --metrics-path <path>      Prometheus metrics, "off" to disable (default /metrics)
      --admin-port <port>        serve health, readiness, metrics and the cluster view on
                                 a listener of their own; the client port then keeps
                                 no metrics (without it, no cluster view is served)
      --admin-host <host>        interface of the admin listener (default 127.0.0.1)
      --no-demo                  do not serve the demo page at / (served by default)
      --log-level <level>        error, warn, info or debug (default info)
      --log-format <format>      text or json (default text)
      --drain-timeout <s>        seconds a shutdown waits for sockets to close (default 10)
      --heartbeat-interval <s>   seconds between heartbeats, 0.1 or more (default 5)

Cluster (peers of one key meet on the node that owns it, wherever they connect):
      --redis <url>              redis://host:port[/db]: run as a cluster node
      --cluster-url <url>        ws://address:port where other nodes reach this one
      --cluster-secret <secret>  secret that signs node-to-node pipes, 16 bytes or more
                                 (or the SIGVER_CLUSTER_SECRET environment variable)
      --cluster-prefix <prefix>  prefix of the cluster's Redis keys (default sigver:)
      --cluster-lease-ttl <s>    seconds a group's lease lives unrenewed (default 30)
      --redis-timeout <s>        seconds a Redis command may take before Redis counts as
                                 unreachable (default 1)
      --cluster-path <path>      this node's view as JSON on the admin listener, "off" to
                                 disable (default /cluster)

Access tokens and TURN credentials (secrets: 16 bytes or more; sigver secret makes one):
      --auth-secret <secret>     peers need an access token: ws[s]://HOST/t/<token>/<key>
                                 (repeatable: any one validates, the first signs; or
                                 SIGVER_AUTH_SECRETS=s1,s2, read with --allow-env)
      --turn-secret <secret>     coturn's static-auth-secret: GET /ice-servers hands out
                                 TURN credentials (or SIGVER_TURN_SECRET, read with --allow-env);
                                 needs --auth-secret, or --ice-servers-public
      --ice-servers-public       hand TURN credentials to anyone, without a token: an open
                                 relay for whoever finds the URL (logs a warning)
      --turn-url <url>           turn: or turns: URL of the TURN server (repeatable)
      --stun-url <url>           stun: URL handed out beside it (repeatable)
      --turn-ttl <s>             seconds TURN credentials are valid for (default 3600)
      --ice-servers-path <path>  the TURN credentials endpoint, "off" to disable
                                 (default /ice-servers)

y-webrtc clients (Yjs's WebrtcProvider, signaling: ["wss://HOST/y-webrtc"]):
      --y-webrtc-path <path>     where they connect (never a Netflux group), "off" to
                                 disable (default /y-webrtc)
      --y-webrtc-max-topics <n>  topics (rooms) per connection; more close with 4751
                                 (default 64)
      --y-webrtc-max-subscribers <n>
                                 subscribers per topic; more close with 4752 (default 256)
      --y-webrtc-max-topic-length <n>
                                 longest topic; longer closes with 4750 (default 512)
      --y-webrtc-idle-timeout <s>
                                 seconds a client may send nothing (it pings every 15 s),
                                 then closed with 4742; 0 never (default 60)

PeerJS clients (new Peer({ host, port, path: "/peerjs" }); with tokens "/t/<token>/peerjs"):
      --peerjs-path <path>       where they are served (socket <path>/peerjs, routes
                                 <path>/<key>/id and /peers), "off" to disable (default /peerjs)
      --peerjs-key <key>         API key served, repeatable, an id namespace each (default peerjs)
      --peerjs-discovery         let <path>/<key>/peers list the ids held (else 401)
      --peerjs-alive-timeout <s> seconds a client may be silent (it beats every 5 s),
                                 then closed with 4742 (default 60)
      --peerjs-expire-timeout <s>
                                 seconds messages wait for an absent id before EXPIRE (default 5)
      --peerjs-max-ids <n>       ids held at once; more get ERROR (default 0: no limit)
      --peerjs-max-queued <n>    messages waiting per absent id; more get ERROR (default 64)

Commands:
  token                          print an access token for --auth-secret (sigver token --help)
  secret                         print a new random secret (32 bytes, base64url)

Peers connect to ws[s]://HOST:PORT/<key>; peers with the same key form a group.
`;

/**
 * Log lines to stderr, batched and never blocking: the lines of one turn of
 * the event loop go out in one asynchronous write. `console.error` costs about
 * 12 µs a line and blocks the whole server when stderr is a pipe nobody
 * drains (a full pipe, a stuck log collector); here a writer that falls more
 * than {@linkcode _LOG_BACKLOG} characters behind drops lines and says how
 * many once it catches up.
 */
function _stderrLines(): {
  write: (line: string) => void;
  close: (timeout: number) => Promise<void>;
} {
  const encoder = new TextEncoder();
  let lines: string[] = [];
  let backlog = 0;
  let dropped = 0;
  let writing: Promise<void> | undefined;
  const take = (): Uint8Array | undefined => {
    if (dropped > 0) {
      lines.push(`${new Date().toISOString()} WARN log dropped=${dropped}`);
      dropped = 0;
    }
    if (lines.length === 0) return undefined;
    const bytes = encoder.encode(lines.join("\n") + "\n");
    lines = [];
    backlog = 0;
    return bytes;
  };
  const pump = async () => {
    try {
      for (let bytes = take(); bytes !== undefined; bytes = take()) {
        for (let n = 0; n < bytes.length;) {
          n += await Deno.stderr.write(bytes.subarray(n));
        }
      }
    } catch {
      // stderr is gone: there is nowhere left to log to.
    } finally {
      writing = undefined;
    }
  };
  // An uncaught exception ends the process before the write completes.
  const last = () => {
    const bytes = take();
    try {
      if (bytes !== undefined) Deno.stderr.writeSync(bytes);
    } catch {
      // Nowhere to log to.
    }
  };
  globalThis.addEventListener("error", last);
  globalThis.addEventListener("unhandledrejection", last);
  return {
    write: (line) => {
      if (backlog > _LOG_BACKLOG) {
        dropped++;
        return;
      }
      lines.push(line);
      backlog += line.length;
      writing ??= Promise.resolve().then(pump);
    },
    close: async (timeout) => {
      globalThis.removeEventListener("error", last);
      globalThis.removeEventListener("unhandledrejection", last);
      writing ??= Promise.resolve().then(pump);
      await settleWithin(writing, timeout);
    },
  };
}

const TOKEN_USAGE = `sigver ${VERSION}: mint an access token

Usage: sigver token --secret <secret> [--prefix <prefix>] [--ttl <s>]

Prints a token alone on the first line of stdout. Peers connect to
ws[s]://HOST/t/<token>/<key> with it, for keys that start with the prefix,
until it expires (30 s of clock skew allowed).

      --secret <secret>  one of the server's --auth-secret (default: the first of
                         SIGVER_AUTH_SECRETS, read with --allow-env)
      --prefix <prefix>  keys granted start with it, as the server reads them
                         (percent-encoding kept); end it with / for a namespace
                         (default: every key)
      --ttl <s>          seconds the token is valid for (default 3600)
      --help             print this help and exit
`;

const SECRET_USAGE = `sigver ${VERSION}: make a secret

Usage: sigver secret

Prints 32 random bytes, base64url without padding, alone on the first line
of stdout: a secret for --auth-secret, --turn-secret (and coturn's
static-auth-secret) or --cluster-secret. Make one per use.
`;

/** The `token` command's flags. */
const _TOKEN_FLAGS = {
  secret: { type: "string" },
  prefix: { type: "string" },
  ttl: { type: "string" },
  help: { type: "boolean" },
} as const;

/** Characters of log lines that may wait for stderr before lines are dropped. */
const _LOG_BACKLOG = 1 << 20;

/** A flag error: printed as one line, exit code 2. */
class _UsageError extends Error {}

/**
 * Refuses a secret under {@linkcode MIN_SECRET_BYTES} bytes: an HMAC key
 * that short falls to an offline search from one signed value. The message
 * says its length, never the secret.
 */
function _secret(what: string, secret: string): string {
  const bytes = new TextEncoder().encode(secret).length;
  if (bytes === 0) {
    throw new _UsageError(`invalid value for ${what}: it is empty`);
  }
  if (bytes < MIN_SECRET_BYTES) {
    throw new _UsageError(
      `invalid value for ${what}: ${bytes} bytes, under ${MIN_SECRET_BYTES} (use 32 random bytes: sigver secret)`,
    );
  }
  return secret;
}

function _number(
  name: string,
  value: string | undefined,
  integer = true,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  // Plain decimals only: Number() also takes "0x50", "1e3" and " 80 ".
  if (
    !(integer ? /^\d+$/ : /^\d+(\.\d+)?$/).test(value) || !Number.isFinite(n)
  ) {
    throw new _UsageError(`invalid value for --${name}: '${value}'`);
  }
  return n;
}

function _path(
  name: string,
  value: string | undefined,
): string | false | undefined {
  if (value === undefined) return undefined;
  if (value === "off" || value === "") return false;
  if (!value.startsWith("/")) {
    throw new _UsageError(
      `invalid value for --${name}: '${value}' must start with /`,
    );
  }
  return value;
}

/** `--peerjs-path`: like the other paths, but never the root. */
function _peerjsPath(value: string | undefined): string | false | undefined {
  const path = _path("peerjs-path", value);
  if (typeof path === "string" && (path === "/" || path.endsWith("/"))) {
    throw new _UsageError(
      `invalid value for --peerjs-path: '${value}' (a path like /peerjs, no trailing /)`,
    );
  }
  return path;
}

/** `--peerjs-key`: one or more non-empty keys. */
function _peerjsKey(values: string[] | undefined): string[] | undefined {
  if (values?.some((key) => key === "")) {
    throw new _UsageError("invalid value for --peerjs-key: ''");
  }
  return values;
}

/**
 * An environment variable, when the process may read it: `undefined` when
 * unset or when no `--allow-env` covers it (asking would prompt on a
 * terminal).
 */
function _env(name: string): string | undefined {
  const { state } = Deno.permissions.querySync({ name: "env", variable: name });
  return state === "granted" ? Deno.env.get(name) : undefined;
}

function _read(flag: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot read --${flag} file '${path}': ${why}`);
  }
}

/** The server's flags. */
const _FLAGS = {
  host: { type: "string", short: "h" },
  port: { type: "string", short: "p" },
  key: { type: "string", short: "k" },
  cert: { type: "string", short: "c" },
  ca: { type: "string", short: "a" },
  version: { type: "boolean", short: "V" },
  help: { type: "boolean" },
  "max-message-size": { type: "string" },
  "max-peers": { type: "string" },
  "max-peers-per-address": { type: "string" },
  "trust-proxy": { type: "boolean" },
  "message-rate": { type: "string" },
  "message-burst": { type: "string" },
  "max-buffered": { type: "string" },
  "upgrade-timeout": { type: "string" },
  "allow-origin": { type: "string", multiple: true },
  "require-origin": { type: "boolean" },
  "health-path": { type: "string" },
  "ready-path": { type: "string" },
  "metrics-path": { type: "string" },
  "admin-port": { type: "string" },
  "admin-host": { type: "string" },
  "no-demo": { type: "boolean" },
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  "drain-timeout": { type: "string" },
  "heartbeat-interval": { type: "string" },
  redis: { type: "string" },
  "cluster-url": { type: "string" },
  "cluster-secret": { type: "string" },
  "cluster-prefix": { type: "string" },
  "cluster-lease-ttl": { type: "string" },
  "redis-timeout": { type: "string" },
  "cluster-path": { type: "string" },
  // y-webrtc flags
  "y-webrtc-path": { type: "string" },
  "y-webrtc-max-topics": { type: "string" },
  "y-webrtc-max-subscribers": { type: "string" },
  "y-webrtc-max-topic-length": { type: "string" },
  "y-webrtc-idle-timeout": { type: "string" },
  // PeerJS flags
  "peerjs-path": { type: "string" },
  "peerjs-key": { type: "string", multiple: true },
  "peerjs-discovery": { type: "boolean" },
  "peerjs-alive-timeout": { type: "string" },
  "peerjs-expire-timeout": { type: "string" },
  "peerjs-max-ids": { type: "string" },
  "peerjs-max-queued": { type: "string" },
  "auth-secret": { type: "string", multiple: true },
  "turn-secret": { type: "string" },
  "turn-url": { type: "string", multiple: true },
  "stun-url": { type: "string", multiple: true },
  "turn-ttl": { type: "string" },
  "ice-servers-path": { type: "string" },
  "ice-servers-public": { type: "boolean" },
} as const;

function _parseFlags(args: string[]) {
  return parseFlags(args, _FLAGS);
}

/**
 * Parses the command line into server options.
 *
 * @param args The arguments, without the program name.
 * @returns `help`, `version`, or the options (TLS files still as paths).
 * @throws {Error} A usage error for a bad flag or value.
 */
function _parse(args: string[]):
  | { kind: "help" | "version" }
  | {
    kind: "serve";
    options: ServeOptions;
    cluster: ClusterOptions | undefined;
    files: { key?: string; cert?: string; ca?: string };
  } {
  let values: ReturnType<typeof _parseFlags>;
  try {
    values = _parseFlags(args);
  } catch (error) {
    throw new _UsageError(
      error instanceof Error ? error.message.split("\n")[0] : String(error),
    );
  }
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  const port = _number("port", values.port);
  if (port !== undefined && port > 65535) {
    throw new _UsageError(`invalid value for --port: '${values.port}'`);
  }
  const adminPort = _number("admin-port", values["admin-port"]);
  if (adminPort !== undefined && adminPort > 65535) {
    throw new _UsageError(
      `invalid value for --admin-port: '${values["admin-port"]}'`,
    );
  }
  if (adminPort === undefined && values["admin-host"] !== undefined) {
    throw new _UsageError("--admin-host needs --admin-port");
  }
  const level = values["log-level"];
  if (level !== undefined && !LOG_LEVELS.includes(level as LogLevel)) {
    throw new _UsageError(
      `invalid value for --log-level: '${level}' (error, warn, info or debug)`,
    );
  }
  const format = values["log-format"];
  if (format !== undefined && format !== "text" && format !== "json") {
    throw new _UsageError(
      `invalid value for --log-format: '${format}' (text or json)`,
    );
  }
  if ((values.key === undefined) !== (values.cert === undefined)) {
    throw new _UsageError("--key and --cert go together");
  }
  if (values.ca !== undefined && values.cert === undefined) {
    throw new _UsageError("--ca needs --key and --cert");
  }
  // The flags count seconds; every duration of the API is milliseconds.
  const seconds = (name: string) => {
    const s = _number(name, values[name as "drain-timeout"], false);
    return s === undefined ? undefined : s * 1000;
  };
  const heartbeat = seconds("heartbeat-interval");
  if (heartbeat !== undefined && heartbeat < MIN_HEARTBEAT_INTERVAL) {
    throw new _UsageError(
      `invalid value for --heartbeat-interval: '${
        values["heartbeat-interval"]
      }' (${MIN_HEARTBEAT_INTERVAL / 1000} s or more)`,
    );
  }
  const upgrade = seconds("upgrade-timeout");
  const cluster = _cluster(values);
  const authSecrets = _authSecrets(values["auth-secret"]);
  const turn = _turn(values, authSecrets !== undefined);
  return {
    kind: "serve",
    cluster,
    files: { key: values.key, cert: values.cert, ca: values.ca },
    options: {
      hostname: values.host ?? "0.0.0.0",
      port: port ?? 8000,
      maxMessageSize: _number("max-message-size", values["max-message-size"]),
      maxPeers: _number("max-peers", values["max-peers"]),
      maxPeersPerAddress: _number(
        "max-peers-per-address",
        values["max-peers-per-address"],
      ),
      trustProxy: values["trust-proxy"],
      messageRate: _number("message-rate", values["message-rate"], false),
      messageBurst: _number("message-burst", values["message-burst"]),
      maxBufferedAmount: _number("max-buffered", values["max-buffered"]),
      upgradeTimeout: upgrade,
      allowOrigins: values["allow-origin"],
      requireOrigin: values["require-origin"],
      healthPath: _path("health-path", values["health-path"]),
      readyPath: _path("ready-path", values["ready-path"]),
      metricsPath: _path("metrics-path", values["metrics-path"]),
      adminPort,
      adminHostname: values["admin-host"],
      demo: values["no-demo"] ? false : undefined,
      logLevel: level as LogLevel | undefined,
      logFormat: format as LogFormat | undefined,
      drainTimeout: seconds("drain-timeout"),
      heartbeatInterval: heartbeat,
      clusterPath: _path("cluster-path", values["cluster-path"]),
      authSecrets,
      turn,
      iceServersPath: _path("ice-servers-path", values["ice-servers-path"]),
      peerjsPath: _peerjsPath(values["peerjs-path"]),
      peerjsKey: _peerjsKey(values["peerjs-key"]),
      peerjsDiscovery: values["peerjs-discovery"],
      peerjsAliveTimeout: seconds("peerjs-alive-timeout"),
      peerjsExpireTimeout: seconds("peerjs-expire-timeout"),
      peerjsMaxIds: _number("peerjs-max-ids", values["peerjs-max-ids"]),
      peerjsMaxQueued: _number(
        "peerjs-max-queued",
        values["peerjs-max-queued"],
      ),
      yWebrtcPath: _path("y-webrtc-path", values["y-webrtc-path"]),
      yWebrtcMaxTopics: _number(
        "y-webrtc-max-topics",
        values["y-webrtc-max-topics"],
      ),
      yWebrtcMaxSubscribers: _number(
        "y-webrtc-max-subscribers",
        values["y-webrtc-max-subscribers"],
      ),
      yWebrtcMaxTopicLength: _number(
        "y-webrtc-max-topic-length",
        values["y-webrtc-max-topic-length"],
      ),
      yWebrtcIdleTimeout: seconds("y-webrtc-idle-timeout"),
    },
  };
}

/**
 * The token secrets: the `--auth-secret` flags, else `SIGVER_AUTH_SECRETS`
 * (comma-separated, spaces around each trimmed). A variable that is set but
 * holds no secret stops the start: a server meant to be closed must not
 * come up open.
 */
function _authSecrets(flags: string[] | undefined): string[] | undefined {
  if (flags !== undefined) {
    return flags.map((secret) => _secret("--auth-secret", secret));
  }
  const env = _env("SIGVER_AUTH_SECRETS");
  if (env === undefined) return undefined;
  const secrets = env.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (secrets.length === 0) {
    throw new _UsageError("SIGVER_AUTH_SECRETS is set but holds no secret");
  }
  return secrets.map((secret, i) =>
    _secret(`SIGVER_AUTH_SECRETS (secret ${i + 1})`, secret)
  );
}

/**
 * The TURN flags: a secret and at least one URL, or none of them. Without
 * tokens the credentials go to anyone who asks, so that needs
 * `--ice-servers-public`.
 */
function _turn(
  values: ReturnType<typeof _parseFlags>,
  tokens: boolean,
): TurnOptions | undefined {
  const secret = values["turn-secret"] ?? _env("SIGVER_TURN_SECRET");
  const urls = values["turn-url"] ?? [];
  const stunUrls = values["stun-url"] ?? [];
  const ttl = _number("turn-ttl", values["turn-ttl"]);
  const open = values["ice-servers-public"] === true;
  if (secret === undefined) {
    for (
      const name of ["turn-url", "stun-url", "turn-ttl", "ice-servers-public"]
    ) {
      if (values[name as "turn-ttl"] !== undefined) {
        throw new _UsageError(
          `--${name} needs --turn-secret (or SIGVER_TURN_SECRET)`,
        );
      }
    }
    return undefined;
  }
  _secret(
    values["turn-secret"] === undefined
      ? "SIGVER_TURN_SECRET"
      : "--turn-secret",
    secret,
  );
  if (urls.length === 0) {
    throw new _UsageError(
      "--turn-secret needs --turn-url: where peers reach the TURN server (turn:host:port)",
    );
  }
  for (
    const [flag, list, scheme] of [
      ["turn-url", urls, "turn: or turns:"],
      ["stun-url", stunUrls, "stun: or stuns:"],
    ] as const
  ) {
    for (const url of list) {
      try {
        if (flag === "turn-url") checkIceUrls([url]);
        else checkIceUrls(["turn:x"], [url]);
      } catch {
        throw new _UsageError(
          `invalid value for --${flag}: '${url}' (a ${scheme} URL)`,
        );
      }
    }
  }
  if (ttl === 0) throw new _UsageError("invalid value for --turn-ttl: '0'");
  if (!tokens && !open) {
    throw new _UsageError(
      "--turn-secret without --auth-secret hands TURN credentials to anyone who asks: add --auth-secret, or --ice-servers-public to mean it",
    );
  }
  return {
    secret,
    urls,
    stunUrls,
    ttl: ttl === undefined ? undefined : ttl * 1000,
    public: open || undefined,
  };
}

/**
 * The `token` command: mints a token and prints it alone on stdout.
 *
 * @returns The exit code: 0, or 2 for a bad flag.
 */
async function _tokenCommand(args: string[]): Promise<number> {
  try {
    let values;
    try {
      values = parseFlags(args, _TOKEN_FLAGS);
    } catch (error) {
      throw new _UsageError(
        error instanceof Error ? error.message : String(error),
      );
    }
    if (values.help) {
      console.log(TOKEN_USAGE);
      return 0;
    }
    const secret = values.secret ??
      _env("SIGVER_AUTH_SECRETS")?.split(",").map((s) => s.trim()).find((s) =>
        s !== ""
      );
    if (secret === undefined || secret === "") {
      throw new _UsageError(
        "token needs --secret: one of the server's --auth-secret (or SIGVER_AUTH_SECRETS, read with --allow-env)",
      );
    }
    _secret(
      values.secret === undefined ? "SIGVER_AUTH_SECRETS" : "--secret",
      secret,
    );
    const ttl = _number("ttl", values.ttl);
    if (ttl === 0) throw new _UsageError("invalid value for --ttl: '0'");
    let token;
    try {
      token = await mintToken(secret, {
        prefix: values.prefix,
        ttl: ttl === undefined ? undefined : ttl * 1000,
      });
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      throw new _UsageError(
        `invalid value for --ttl: '${values.ttl}' (the expiry must stay below ${MAX_TOKEN_EXPIRY})`,
      );
    }
    console.log(token);
    return 0;
  } catch (error) {
    if (!(error instanceof _UsageError)) throw error;
    console.error(`error: ${error.message}`);
    console.error("Try 'sigver token --help' for the list of options.");
    return 2;
  }
}

/**
 * The `secret` command: prints a new random secret alone on stdout.
 *
 * @returns The exit code: 0, or 2 for any argument but `--help`.
 */
function _secretCommand(args: string[]): number {
  if (args.length === 1 && args[0] === "--help") {
    console.log(SECRET_USAGE);
    return 0;
  }
  if (args.length > 0) {
    console.error(`error: secret takes no argument, got '${args[0]}'`);
    console.error("Try 'sigver secret --help' for its usage.");
    return 2;
  }
  console.log(newSecret());
  return 0;
}

/** The cluster flags: all of them with --redis, none of them without. */
function _cluster(
  values: ReturnType<typeof _parseFlags>,
): ClusterOptions | undefined {
  const redis = values.redis;
  const url = values["cluster-url"];
  if (redis === undefined) {
    for (
      const flag of [
        "cluster-url",
        "cluster-secret",
        "cluster-prefix",
        "cluster-lease-ttl",
        "redis-timeout",
      ]
    ) {
      if (values[flag as "cluster-url"] !== undefined) {
        throw new _UsageError(`--${flag} needs --redis`);
      }
    }
    return undefined;
  }
  if (!/^redis:\/\//.test(redis)) {
    throw new _UsageError(
      `invalid value for --redis: '${redis}' (redis://host:port[/db])`,
    );
  }
  if (url === undefined) {
    throw new _UsageError(
      "--redis needs --cluster-url: how other nodes reach this one (ws://address:port)",
    );
  }
  try {
    parseNodeUrl(url);
  } catch {
    throw new _UsageError(
      `invalid value for --cluster-url: '${url}' (ws://address:port: no path, query or credentials)`,
    );
  }
  const secret = values["cluster-secret"] ?? _env("SIGVER_CLUSTER_SECRET");
  if (secret === undefined || secret === "") {
    throw new _UsageError(
      "--redis needs --cluster-secret (or SIGVER_CLUSTER_SECRET)",
    );
  }
  _secret(
    values["cluster-secret"] === undefined
      ? "SIGVER_CLUSTER_SECRET"
      : "--cluster-secret",
    secret,
  );
  const leaseTtl = _number(
    "cluster-lease-ttl",
    values["cluster-lease-ttl"],
    false,
  );
  if (leaseTtl !== undefined && leaseTtl < 3) {
    throw new _UsageError(
      `invalid value for --cluster-lease-ttl: '${leaseTtl}' (3 s or more)`,
    );
  }
  const redisTimeout = _number("redis-timeout", values["redis-timeout"], false);
  if (redisTimeout !== undefined && !(redisTimeout > 0)) {
    throw new _UsageError(
      `invalid value for --redis-timeout: '${redisTimeout}' (more than 0 s)`,
    );
  }
  return {
    redis,
    url,
    secret,
    prefix: values["cluster-prefix"],
    leaseTtl: leaseTtl === undefined ? undefined : leaseTtl * 1000,
    redisTimeout: redisTimeout === undefined ? undefined : redisTimeout * 1000,
  };
}

/**
 * Runs the command line: serves until SIGINT or SIGTERM, then drains.
 *
 * @param args The arguments, without the program name.
 * @returns The exit code: 0 after a clean shutdown or `--help`, 1 when the
 * server cannot start, 2 for a bad flag.
 *
 * @example
 * ```ts ignore
 * import { main } from "./server.ts";
 * Deno.exitCode = await main(["--port", "8000"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  if (args[0] === "token") return await _tokenCommand(args.slice(1));
  if (args[0] === "secret") return _secretCommand(args.slice(1));
  let parsed;
  try {
    parsed = _parse(args);
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    console.error("Try 'sigver --help' for the list of options.");
    return 2;
  }
  if (parsed.kind !== "serve") {
    console.log(parsed.kind === "help" ? USAGE : VERSION);
    return 0;
  }
  const { options, cluster, files } = parsed;
  const level = options.logLevel ?? "info";
  const format = options.logFormat ?? "text";
  const stderr = _stderrLines();
  const logEvent = (lvl: LogLevel, event: string, fields?: LogFields) => {
    if (enabled(level, lvl)) {
      stderr.write(
        formatLine(format, new Date().toISOString(), lvl, event, fields),
      );
    }
  };
  // Listen for signals before the server exists: a signal that arrives
  // while it starts still drains it instead of killing the process.
  let server: SigverServer | undefined;
  // y-webrtc publishes cross the cluster on Redis pub/sub.
  let bus: RedisTopicBus | undefined;
  const stopped = Promise.withResolvers<void>();
  let stopping = false;
  const stop = (signal: Deno.Signal) => {
    // `deno task` and process managers may deliver a signal twice.
    if (stopping) return;
    stopping = true;
    logEvent("info", "shutdown", {
      signal,
      peers: server?.handler.stats().peers ?? 0,
    });
    if (server === undefined) stopped.resolve();
    else server.shutdown().then(stopped.resolve);
  };
  const onInt = () => stop("SIGINT");
  const onTerm = () => stop("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  const unlisten = () => {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  };
  try {
    const key = _read("key", files.key);
    const cert = _read("cert", files.cert);
    const ca = _read("ca", files.ca);
    server = servePlaced({
      ...options,
      key,
      cert,
      ca,
      log: stderr.write,
      yWebrtcBus: cluster && ((deliver) =>
        bus = new RedisTopicBus(deliver, {
          ...cluster,
          log: new Logger(stderr.write, level, format),
        })),
      onListen: (addr) => {
        const host = addr.hostname.includes(":")
          ? `[${addr.hostname}]`
          : addr.hostname;
        logEvent("info", "listen", {
          url: `${key === undefined ? "ws" : "wss"}://${host}:${addr.port}/`,
          version: VERSION,
          // Whether upgrades need a token: SIGVER_AUTH_SECRETS is silently
          // unreadable without --allow-env, so say it where it shows.
          auth: options.authSecrets === undefined ? "off" : "tokens",
          ice: options.turn === undefined || options.iceServersPath === false
            ? undefined
            : options.iceServersPath ?? "/ice-servers",
        });
        if (options.turn?.public && options.iceServersPath !== false) {
          logEvent("warn", "ice_public", {
            path: options.iceServersPath ?? "/ice-servers",
            why:
              "--ice-servers-public: TURN credentials go to anyone who asks, an open relay",
          });
        }
      },
      // Made last: a cluster node dials Redis as it is made.
    }, cluster === undefined ? undefined : new ClusterPlacement(cluster));
    const admin = server.adminAddr;
    if (admin !== undefined) {
      logEvent("info", "admin", {
        url: `http://${
          admin.hostname.includes(":") ? `[${admin.hostname}]` : admin.hostname
        }:${admin.port}/`,
      });
    }
  } catch (error) {
    unlisten();
    await bus?.close();
    await stderr.close(1000);
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    return 1;
  }
  await stopped.promise;
  unlisten();
  await bus?.close();
  logEvent("info", "stopped");
  await stderr.close(1000);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
