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

import { servePlaced, type SigverServer } from "./deno/serve.ts";
import {
  enabled,
  formatLine,
  type LogFields,
  Logger,
  type LogLevel,
} from "./lib/log.ts";
import { VERSION } from "./deno/version.ts";
import { ClusterPlacement } from "./cluster/placement.ts";
import { RedisTopicBus } from "./cluster/topic_bus.ts";
import { RedisPeerjsBus } from "./cluster/peerjs_bus.ts";
import { MAX_TOKEN_EXPIRY, mintToken } from "./lib/token.ts";
import { newSecret } from "./lib/secret.ts";
import { parseFlags } from "./lib/flags.ts";
import { SECRET_USAGE, TOKEN_USAGE, USAGE } from "./cli/usage.ts";
import { stderrLines } from "./cli/stderr.ts";
import {
  checkSecretFlag,
  numberFlag,
  parseCommandLine,
  readEnv,
  UsageError,
} from "./cli/flags.ts";

/** The `token` command's flags. */
const _TOKEN_FLAGS = {
  secret: { type: "string" },
  prefix: { type: "string" },
  ttl: { type: "string" },
  help: { type: "boolean" },
} as const;

function _read(flag: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot read --${flag} file '${path}': ${why}`);
  }
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
      throw new UsageError(
        error instanceof Error ? error.message : String(error),
      );
    }
    if (values.help) {
      console.log(TOKEN_USAGE);
      return 0;
    }
    const secret = values.secret ??
      readEnv("SIGVER_AUTH_SECRETS")?.split(",").map((s) => s.trim()).find((
        s,
      ) => s !== "");
    if (secret === undefined || secret === "") {
      throw new UsageError(
        "token needs --secret: one of the server's --auth-secret (or SIGVER_AUTH_SECRETS, read with --allow-env)",
      );
    }
    checkSecretFlag(
      values.secret === undefined ? "SIGVER_AUTH_SECRETS" : "--secret",
      secret,
    );
    const ttl = numberFlag("ttl", values.ttl);
    if (ttl === 0) throw new UsageError("invalid value for --ttl: '0'");
    let token;
    try {
      token = await mintToken(secret, {
        prefix: values.prefix,
        ttl: ttl === undefined ? undefined : ttl * 1000,
      });
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      throw new UsageError(
        `invalid value for --ttl: '${values.ttl}' (the expiry must stay below ${MAX_TOKEN_EXPIRY})`,
      );
    }
    console.log(token);
    return 0;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
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
    parsed = parseCommandLine(args);
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
  const stderr = stderrLines();
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
  // PeerJS ids are held, and reached, across the cluster on Redis.
  let peerjsBus: RedisPeerjsBus | undefined;
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
      peerjsBus: cluster &&
        ((events) =>
          peerjsBus = new RedisPeerjsBus(events, {
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
    await peerjsBus?.close();
    await stderr.close(1000);
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    return 1;
  }
  await stopped.promise;
  unlisten();
  await bus?.close();
  await peerjsBus?.close();
  logEvent("info", "stopped");
  await stderr.close(1000);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
