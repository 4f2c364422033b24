/**
 * A sigver cluster on this machine, for the cluster tests and for
 * `deno task cluster`: Redis ({@linkcode startRedis}), N nodes
 * ({@linkcode startNode}) and nginx in front ({@linkcode Balancer}), all on
 * 127.0.0.1 and free ports, started together and stopped together.
 *
 * ```ts ignore
 * await using cluster = await startCluster({ nodes: 3, balancer: "hash" });
 * await using peer = await TestPeer.open(`${cluster.balancer!.url}/room`);
 * await cluster.killNode(0); // SIGKILL
 * await cluster.addNode(); // and nginx reloaded with it
 * ```
 *
 * @module
 */

import { type RedisServer, startRedis } from "../redis_server.ts";
import { Balancer } from "./balancer.ts";
import type { BalancerMode } from "./nginx_config.ts";
import { type SigverNode, startNode } from "./node.ts";

function _randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Options of {@linkcode startCluster}. */
export interface LocalClusterOptions {
  /**
   * Nodes to start.
   * @default {3}
   */
  nodes?: number;
  /**
   * The balancer in front, or `"none"` for none (peers connect to the nodes).
   * @default {"hash"}
   */
  balancer?: BalancerMode | "none";
  /**
   * More arguments for the nodes' `server.ts`: the same for every node, or
   * by node index.
   */
  nodeArgs?: readonly string[] | ((index: number) => readonly string[]);
  /**
   * The cluster secret.
   * @default {a random one}
   */
  secret?: string;
  /**
   * A Redis URL to use instead of starting `redis-server` (for example a
   * fake that answers garbage). The nodes do not wait for it to answer.
   */
  redisUrl?: string;
  /** Called with every line the nodes and nginx write, and which wrote it. */
  echo?: (name: string, line: string) => void;
}

/**
 * Redis, the nodes and the balancer. Dispose of it (`await using`) to stop
 * everything.
 */
export class LocalCluster implements AsyncDisposable {
  /** The `redis-server` (absent with `redisUrl`). */
  readonly redis: RedisServer | undefined;
  /** The Redis URL the nodes use. */
  readonly redisUrl: string;
  /** The nodes, by index; killed ones stay, not running. */
  readonly nodes: SigverNode[] = [];
  /** nginx, unless the balancer is `"none"`. */
  balancer: Balancer | undefined;
  /** The cluster secret. */
  readonly secret: string;
  readonly #options: LocalClusterOptions;
  #stopping: Promise<void> | undefined;

  /**
   * Prepares a cluster; {@linkcode startCluster} starts it.
   *
   * @param redis The Redis server, if this cluster runs one.
   * @param options The options.
   */
  constructor(redis: RedisServer | undefined, options: LocalClusterOptions) {
    this.redis = redis;
    this.redisUrl = options.redisUrl ?? redis!.url;
    this.secret = options.secret ?? _randomHex(16);
    this.#options = options;
  }

  /**
   * Starts one more node and, with a balancer, reloads nginx with it.
   *
   * @param args More arguments for this node's `server.ts`.
   * @returns The running node.
   */
  async addNode(args: readonly string[] = []): Promise<SigverNode> {
    const node = await this.#startNode(this.nodes.length, args);
    this.nodes.push(node);
    await this.balancer?.reload(this.nodes.map((n) => n.port));
    return node;
  }

  /** Starts the first nodes, in parallel, then the balancer. */
  async start(): Promise<void> {
    const n = this.#options.nodes ?? 3;
    const started = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => this.#startNode(i, [])),
    );
    for (const result of started) {
      if (result.status === "fulfilled") this.nodes.push(result.value);
    }
    const failed = started.find((r) => r.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    this.nodes.sort((a, b) => a.index - b.index);
    const mode = this.#options.balancer ?? "hash";
    if (mode !== "none") {
      const echo = this.#options.echo;
      this.balancer = await Balancer.start(
        mode,
        this.nodes.map((node) => node.port),
        echo && ((line) => echo("nginx", line)),
      );
    }
  }

  /**
   * Kills a node with SIGKILL and waits until it is gone. nginx keeps it in
   * its upstream (and skips it), as it would a crashed machine.
   *
   * @param index The node's index.
   */
  async killNode(index: number): Promise<void> {
    await this.nodes[index].process.kill();
  }

  /**
   * Starts a node again on its port and cluster URL, as a process manager
   * restarts a crashed one (it kills the running one first). The new process
   * gets a new node id.
   *
   * @param index The node's index.
   * @returns The new node, in the same place in {@linkcode LocalCluster.nodes}.
   */
  async restartNode(index: number): Promise<SigverNode> {
    const old = this.nodes[index];
    await old.process.kill();
    const node = await this.#startNode(index, old.args, old.port);
    this.nodes[index] = node;
    return node;
  }

  /**
   * Stops a node with SIGTERM (it drains), SIGKILL if it lingers.
   *
   * @param index The node's index.
   */
  async stopNode(index: number): Promise<void> {
    await this.nodes[index].process.stop();
  }

  /** Kills Redis with SIGKILL. */
  async killRedis(): Promise<void> {
    await this.#redisServer().kill();
  }

  /** Starts Redis again on its port, empty. */
  async restartRedis(): Promise<void> {
    await this.#redisServer().restart();
  }

  /**
   * The node whose `/cluster` view has this id.
   *
   * @param id A node id, as in the `lease:` keys.
   * @returns The node.
   */
  async nodeWithId(id: string): Promise<SigverNode> {
    for (const node of this.nodes) {
      if (node.running && (await node.view()).node === id) return node;
    }
    throw new Error(`No running node has the id ${id}`);
  }

  /** Stops nginx, then the nodes, then Redis. Idempotent. */
  stop(): Promise<void> {
    return this.#stopping ??= (async () => {
      const errors: unknown[] = [];
      const run = async (step: () => Promise<unknown>) => {
        try {
          await step();
        } catch (error) {
          errors.push(error);
        }
      };
      if (this.balancer !== undefined) await run(() => this.balancer!.stop());
      await Promise.all(
        this.nodes.map((node) => run(() => node.process.stop())),
      );
      if (this.redis !== undefined) {
        await run(() => this.redis![Symbol.asyncDispose]());
      }
      if (errors.length > 0) {
        throw new AggregateError(errors, "Cannot stop the cluster cleanly");
      }
    })();
  }

  /** Stops everything. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #redisServer(): RedisServer {
    if (this.redis === undefined) {
      throw new Error("Cannot control Redis: this cluster uses another one");
    }
    return this.redis;
  }

  #startNode(
    index: number,
    args: readonly string[],
    port?: number,
  ): Promise<SigverNode> {
    const more = this.#options.nodeArgs;
    const echo = this.#options.echo;
    return startNode(index, {
      redisUrl: this.redisUrl,
      secret: this.secret,
      awaitRedis: this.#redisUp(),
      clusterArgs: typeof more === "function" ? more(index) : more ?? [],
      args,
      port,
      echo: echo && ((line) => echo(`node ${index}`, line)),
    });
  }

  /** Whether the nodes should find Redis up when they start. */
  #redisUp(): boolean {
    return this.redis !== undefined && this.redis.pid !== undefined;
  }
}

/**
 * Starts Redis, the nodes and the balancer on 127.0.0.1 and free ports.
 * Use it with `await using`. When any part fails to start, what started is
 * stopped.
 *
 * @param options How many nodes, which balancer, more node arguments.
 * @returns The running cluster.
 */
export async function startCluster(
  options: LocalClusterOptions = {},
): Promise<LocalCluster> {
  const redis = options.redisUrl === undefined ? await startRedis() : undefined;
  const cluster = new LocalCluster(redis, options);
  try {
    await cluster.start();
  } catch (error) {
    await cluster.stop().catch(() => {});
    throw error;
  }
  return cluster;
}
