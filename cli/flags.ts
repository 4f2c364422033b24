/**
 * The command line's flags: compatible with the original Node.js sigver,
 * read by the pure parser of `lib/flags.ts` and turned into the options of
 * `serve` (and of the cluster, for `--redis`), with one clear error per bad
 * flag ({@linkcode UsageError}: exit code 2).
 *
 * @module
 */

import type { ServeOptions } from "../deno/serve.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "../lib/log.ts";
import { parseNodeUrl } from "../lib/node_url.ts";
import type { ClusterOptions } from "../cluster/node.ts";
import { MIN_SECRET_BYTES } from "../lib/secret.ts";
import { checkIceUrls } from "../lib/turn.ts";
import { parseFlags } from "../lib/flags.ts";
import type { TurnOptions } from "../deno/ice.ts";
import { MIN_HEARTBEAT_INTERVAL } from "../deno/options.ts";

/** A flag error: printed as one line, exit code 2. */
export class UsageError extends Error {}

/**
 * Refuses a secret under {@linkcode MIN_SECRET_BYTES} bytes: an HMAC key
 * that short falls to an offline search from one signed value. The message
 * says its length, never the secret.
 */
export function checkSecretFlag(what: string, secret: string): string {
  const bytes = new TextEncoder().encode(secret).length;
  if (bytes === 0) {
    throw new UsageError(`invalid value for ${what}: it is empty`);
  }
  if (bytes < MIN_SECRET_BYTES) {
    throw new UsageError(
      `invalid value for ${what}: ${bytes} bytes, under ${MIN_SECRET_BYTES} (use 32 random bytes: sigver secret)`,
    );
  }
  return secret;
}

export function numberFlag(
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
    throw new UsageError(`invalid value for --${name}: '${value}'`);
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
    throw new UsageError(
      `invalid value for --${name}: '${value}' must start with /`,
    );
  }
  return value;
}

/** `--peerjs-path`: like the other paths, but never the root. */
function _peerjsPath(value: string | undefined): string | false | undefined {
  const path = _path("peerjs-path", value);
  if (typeof path === "string" && (path === "/" || path.endsWith("/"))) {
    throw new UsageError(
      `invalid value for --peerjs-path: '${value}' (a path like /peerjs, no trailing /)`,
    );
  }
  return path;
}

/** `--peerjs-key`: one or more non-empty keys. */
function _peerjsKey(values: string[] | undefined): string[] | undefined {
  if (values?.some((key) => key === "")) {
    throw new UsageError("invalid value for --peerjs-key: ''");
  }
  return values;
}

/**
 * An environment variable, when the process may read it: `undefined` when
 * unset or when no `--allow-env` covers it (asking would prompt on a
 * terminal).
 */
export function readEnv(name: string): string | undefined {
  const { state } = Deno.permissions.querySync({ name: "env", variable: name });
  return state === "granted" ? Deno.env.get(name) : undefined;
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
export function parseCommandLine(args: string[]):
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
    throw new UsageError(
      error instanceof Error ? error.message.split("\n")[0] : String(error),
    );
  }
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  const port = numberFlag("port", values.port);
  if (port !== undefined && port > 65535) {
    throw new UsageError(`invalid value for --port: '${values.port}'`);
  }
  const adminPort = numberFlag("admin-port", values["admin-port"]);
  if (adminPort !== undefined && adminPort > 65535) {
    throw new UsageError(
      `invalid value for --admin-port: '${values["admin-port"]}'`,
    );
  }
  if (adminPort === undefined && values["admin-host"] !== undefined) {
    throw new UsageError("--admin-host needs --admin-port");
  }
  const level = values["log-level"];
  if (level !== undefined && !LOG_LEVELS.includes(level as LogLevel)) {
    throw new UsageError(
      `invalid value for --log-level: '${level}' (error, warn, info or debug)`,
    );
  }
  const format = values["log-format"];
  if (format !== undefined && format !== "text" && format !== "json") {
    throw new UsageError(
      `invalid value for --log-format: '${format}' (text or json)`,
    );
  }
  if ((values.key === undefined) !== (values.cert === undefined)) {
    throw new UsageError("--key and --cert go together");
  }
  if (values.ca !== undefined && values.cert === undefined) {
    throw new UsageError("--ca needs --key and --cert");
  }
  // The flags count seconds; every duration of the API is milliseconds.
  const seconds = (name: string) => {
    const s = numberFlag(name, values[name as "drain-timeout"], false);
    return s === undefined ? undefined : s * 1000;
  };
  const heartbeat = seconds("heartbeat-interval");
  if (heartbeat !== undefined && heartbeat < MIN_HEARTBEAT_INTERVAL) {
    throw new UsageError(
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
      maxMessageSize: numberFlag(
        "max-message-size",
        values["max-message-size"],
      ),
      maxPeers: numberFlag("max-peers", values["max-peers"]),
      maxPeersPerAddress: numberFlag(
        "max-peers-per-address",
        values["max-peers-per-address"],
      ),
      trustProxy: values["trust-proxy"],
      messageRate: numberFlag("message-rate", values["message-rate"], false),
      messageBurst: numberFlag("message-burst", values["message-burst"]),
      maxBufferedAmount: numberFlag("max-buffered", values["max-buffered"]),
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
      peerjsMaxIds: numberFlag("peerjs-max-ids", values["peerjs-max-ids"]),
      peerjsMaxQueued: numberFlag(
        "peerjs-max-queued",
        values["peerjs-max-queued"],
      ),
      yWebrtcPath: _path("y-webrtc-path", values["y-webrtc-path"]),
      yWebrtcMaxTopics: numberFlag(
        "y-webrtc-max-topics",
        values["y-webrtc-max-topics"],
      ),
      yWebrtcMaxSubscribers: numberFlag(
        "y-webrtc-max-subscribers",
        values["y-webrtc-max-subscribers"],
      ),
      yWebrtcMaxTopicLength: numberFlag(
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
    return flags.map((secret) => checkSecretFlag("--auth-secret", secret));
  }
  const env = readEnv("SIGVER_AUTH_SECRETS");
  if (env === undefined) return undefined;
  const secrets = env.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (secrets.length === 0) {
    throw new UsageError("SIGVER_AUTH_SECRETS is set but holds no secret");
  }
  return secrets.map((secret, i) =>
    checkSecretFlag(`SIGVER_AUTH_SECRETS (secret ${i + 1})`, secret)
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
  const secret = values["turn-secret"] ?? readEnv("SIGVER_TURN_SECRET");
  const urls = values["turn-url"] ?? [];
  const stunUrls = values["stun-url"] ?? [];
  const ttl = numberFlag("turn-ttl", values["turn-ttl"]);
  const open = values["ice-servers-public"] === true;
  if (secret === undefined) {
    for (
      const name of ["turn-url", "stun-url", "turn-ttl", "ice-servers-public"]
    ) {
      if (values[name as "turn-ttl"] !== undefined) {
        throw new UsageError(
          `--${name} needs --turn-secret (or SIGVER_TURN_SECRET)`,
        );
      }
    }
    return undefined;
  }
  checkSecretFlag(
    values["turn-secret"] === undefined
      ? "SIGVER_TURN_SECRET"
      : "--turn-secret",
    secret,
  );
  if (urls.length === 0) {
    throw new UsageError(
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
        throw new UsageError(
          `invalid value for --${flag}: '${url}' (a ${scheme} URL)`,
        );
      }
    }
  }
  if (ttl === 0) throw new UsageError("invalid value for --turn-ttl: '0'");
  if (!tokens && !open) {
    throw new UsageError(
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
        throw new UsageError(`--${flag} needs --redis`);
      }
    }
    return undefined;
  }
  if (!/^redis:\/\//.test(redis)) {
    throw new UsageError(
      `invalid value for --redis: '${redis}' (redis://host:port[/db])`,
    );
  }
  if (url === undefined) {
    throw new UsageError(
      "--redis needs --cluster-url: how other nodes reach this one (ws://address:port)",
    );
  }
  try {
    parseNodeUrl(url);
  } catch {
    throw new UsageError(
      `invalid value for --cluster-url: '${url}' (ws://address:port: no path, query or credentials)`,
    );
  }
  const secret = values["cluster-secret"] ?? readEnv("SIGVER_CLUSTER_SECRET");
  if (secret === undefined || secret === "") {
    throw new UsageError(
      "--redis needs --cluster-secret (or SIGVER_CLUSTER_SECRET)",
    );
  }
  checkSecretFlag(
    values["cluster-secret"] === undefined
      ? "SIGVER_CLUSTER_SECRET"
      : "--cluster-secret",
    secret,
  );
  const leaseTtl = numberFlag(
    "cluster-lease-ttl",
    values["cluster-lease-ttl"],
    false,
  );
  if (leaseTtl !== undefined && leaseTtl < 3) {
    throw new UsageError(
      `invalid value for --cluster-lease-ttl: '${leaseTtl}' (3 s or more)`,
    );
  }
  const redisTimeout = numberFlag(
    "redis-timeout",
    values["redis-timeout"],
    false,
  );
  if (redisTimeout !== undefined && !(redisTimeout > 0)) {
    throw new UsageError(
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
