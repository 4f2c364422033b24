/**
 * `deno task cluster`: starts a local cluster ({@linkcode startCluster}),
 * prints its URLs, runs typed commands, and stops Redis, nginx and every
 * node on Ctrl-C (SIGINT), SIGTERM, SIGHUP (the terminal closed) or `quit`,
 * leaving no temp folder.
 *
 * ```sh
 * deno task cluster [--nodes N] [--balancer hash|round-robin] [-- node flags]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type LocalCluster, startCluster } from "./local_cluster.ts";
import { BALANCER_MODES, type BalancerMode } from "./nginx_config.ts";

/**
 * The signals that stop everything: Ctrl-C, a process manager's SIGTERM,
 * and SIGHUP when the terminal closes (its default would end this process
 * alone and leave Redis, nginx and the nodes running).
 */
const STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

const USAGE = `Usage: deno task cluster [options]

Starts redis-server, N sigver nodes and nginx on 127.0.0.1 (free ports),
prints their URLs, and stops them all on Ctrl-C, SIGTERM or SIGHUP.

Options:
  -n, --nodes <n>          nodes to start (default 3)
  -b, --balancer <mode>    hash (key affinity) or round-robin (default hash)
      --help               print this help and exit

More arguments after -- go to every node's server.ts
(e.g. -- --heartbeat-interval 2 --log-level debug).

Commands, typed while it runs:
  status          each node's /cluster view
  add             start one more node and reload nginx with it
  kill <n>        kill node n with SIGKILL
  restart <n>     kill node n and start it again on its port (a new node id)
  redis kill      kill redis-server with SIGKILL
  redis restart   start it again, empty, on the same port
  quit            stop everything (as Ctrl-C does)
`;

/** The cluster's addresses, process ids and folders, one per line. */
function _describe(cluster: LocalCluster): string {
  const redis = cluster.redis;
  const lines = [
    `redis    ${cluster.redisUrl}${
      redis === undefined ? "" : `   pid ${redis.pid}   dir ${redis.dir}`
    }`,
  ];
  for (const node of cluster.nodes) {
    lines.push(
      `node ${node.index}   ${node.url}/<key>   ${node.admin}/cluster   ${
        node.running ? `pid ${node.process.pid}` : "(killed)"
      }`,
    );
  }
  const balancer = cluster.balancer;
  if (balancer !== undefined) {
    lines.push(
      `nginx    ${balancer.url}/<key>   demo: ${balancer.http}/   (${balancer.mode})   pid ${balancer.process.pid}   dir ${balancer.dir}`,
    );
  }
  return lines.join("\n");
}

/** Runs one typed command; false for `quit`. */
async function _command(cluster: LocalCluster, line: string): Promise<boolean> {
  const words = line.trim().split(/\s+/);
  switch (words.join(" ").replace(/ \d+$/, " N")) {
    case "":
      return true;
    case "quit":
    case "exit":
      return false;
    case "status":
      for (const node of cluster.nodes) {
        const view = node.running
          ? JSON.stringify(await node.view())
          : "killed";
        console.log(`node ${node.index}: ${view}`);
      }
      return true;
    case "add": {
      const node = await cluster.addNode();
      console.log(`node ${node.index} added: ${node.url}`);
      return true;
    }
    case "kill N": {
      const index = Number(words[1]);
      if (!(index in cluster.nodes)) console.log(`No node ${index}`);
      else {
        await cluster.killNode(index);
        console.log(`node ${index} killed`);
      }
      return true;
    }
    case "restart N": {
      const index = Number(words[1]);
      if (!(index in cluster.nodes)) console.log(`No node ${index}`);
      else {
        const node = await cluster.restartNode(index);
        console.log(`node ${index} restarted on ${node.url}`);
      }
      return true;
    }
    case "redis kill":
      await cluster.killRedis();
      console.log("redis killed");
      return true;
    case "redis restart":
      await cluster.restartRedis();
      console.log("redis restarted");
      return true;
    default:
      console.log(
        "Commands: status, add, kill <n>, restart <n>, redis kill, redis restart, quit",
      );
      return true;
  }
}

/**
 * Reads typed lines, each one a command, until EOF or `signal`.
 *
 * @returns True when `quit` was typed.
 */
async function _readCommands(
  cluster: LocalCluster,
  signal: AbortSignal,
): Promise<boolean> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
    .getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          if (!await _command(cluster, line)) return true;
        } catch (error) {
          console.error(
            `error: ${error instanceof Error ? error.message : error}`,
          );
        }
      }
    }
  } catch {
    return false;
  } finally {
    signal.removeEventListener("abort", cancel);
    reader.releaseLock();
  }
}

/**
 * `deno task cluster`: starts a cluster, prints its URLs, runs typed
 * commands, and stops everything on Ctrl-C (SIGINT), SIGTERM, SIGHUP or
 * `quit`.
 *
 * @param args The arguments, without the program name.
 * @returns The exit code: 0 after a clean stop, 1 when it cannot start, 2
 * for a bad flag.
 */
export async function main(args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  const own = dash === -1 ? args : args.slice(0, dash);
  const nodeArgs = dash === -1 ? [] : args.slice(dash + 1);
  let values;
  try {
    values = parseArgs({
      args: own,
      strict: true,
      allowPositionals: false,
      options: {
        nodes: { type: "string", short: "n" },
        balancer: { type: "string", short: "b" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (error) {
    console.error(
      `error: ${error instanceof Error ? error.message.split("\n")[0] : error}`,
    );
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const nodes = Number(values.nodes ?? 3);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16) {
    console.error(
      `error: invalid value for --nodes: '${values.nodes}' (1 to 16)`,
    );
    return 2;
  }
  const balancer = values.balancer ?? "hash";
  if (!BALANCER_MODES.includes(balancer as BalancerMode)) {
    console.error(
      `error: invalid value for --balancer: '${balancer}' (hash or round-robin)`,
    );
    return 2;
  }
  const stopped = new AbortController();
  const onSignal = () => stopped.abort();
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, onSignal);
  let cluster: LocalCluster | undefined;
  try {
    const echo = (name: string, line: string) => {
      // nginx's notices (workers starting and stopping) are noise here.
      if (name === "nginx" && line.includes("[notice]")) return;
      console.error(`[${name}] ${line}`);
    };
    const starting = startCluster({
      nodes,
      balancer: balancer as BalancerMode,
      nodeArgs,
      echo,
    });
    // A signal while starting waits for the start, then stops.
    cluster = await starting;
    if (!stopped.signal.aborted) {
      console.log(_describe(cluster));
      console.log(
        "Type 'status', 'add', 'kill <n>', 'restart <n>', 'redis kill', 'redis restart'; Ctrl-C stops.",
      );
      const aborted = new Promise<void>((resolve) =>
        stopped.signal.addEventListener("abort", () => resolve(), {
          once: true,
        })
      );
      const quit = await Promise.race([
        aborted.then(() => false),
        _readCommands(cluster, stopped.signal),
      ]);
      // Without a terminal stdin ends at once: wait for a signal then.
      if (!quit) await aborted;
    }
    console.log("stopping...");
    await cluster.stop();
    return 0;
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    await cluster?.stop().catch(() => {});
    return 1;
  } finally {
    for (const signal of STOP_SIGNALS) {
      Deno.removeSignalListener(signal, onSignal);
    }
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
