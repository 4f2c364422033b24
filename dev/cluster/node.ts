/**
 * The sigver nodes of a local cluster: `deno run server.ts` processes on
 * 127.0.0.1 and free ports, sharing one Redis and one cluster secret, and
 * what a test reads of them (`/cluster`, `/metrics`, on each node's admin
 * listener).
 *
 * @module
 */

import type { ClusterView } from "../../cluster/node.ts";
import { type ChildProcess, freePort, spawn } from "../process.ts";

const ROOT = new URL("../../", import.meta.url);
const SERVER = decodeURIComponent(new URL("server.ts", ROOT).pathname);

/** Milliseconds a node may take to start listening and reach Redis. */
const START_TIMEOUT = 30_000;
/** Milliseconds a request to a node may take. */
const FETCH_TIMEOUT = 5_000;
/** Attempts at a free port that another process may take first. */
const PORT_ATTEMPTS = 3;

/** One sigver node of a local cluster. */
export class SigverNode {
  /** Its index in the cluster (0 for the first). */
  readonly index: number;
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** The port of its admin listener, on 127.0.0.1. */
  readonly adminPort: number;
  /** Its process. */
  readonly process: ChildProcess;
  /** The arguments it was added with, beyond the cluster's own. */
  readonly args: readonly string[];

  /**
   * Wraps a started node.
   *
   * @param index Its index in the cluster.
   * @param port Its port.
   * @param adminPort Its admin listener's port.
   * @param process Its process.
   * @param args The arguments it was added with.
   */
  constructor(
    index: number,
    port: number,
    adminPort: number,
    process: ChildProcess,
    args: readonly string[] = [],
  ) {
    this.index = index;
    this.port = port;
    this.adminPort = adminPort;
    this.process = process;
    this.args = args;
  }

  /** `ws://127.0.0.1:<port>`: append a path (`/room`) for a peer's URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** `http://127.0.0.1:<port>`. */
  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `http://127.0.0.1:<admin port>`: health, readiness, metrics, view. */
  get admin(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  /** Whether its process runs. */
  get running(): boolean {
    return this.process.running;
  }

  /**
   * The node's `/cluster` view.
   *
   * @returns The view.
   */
  async view(): Promise<ClusterView> {
    const response = await fetch(`${this.admin}/cluster`, {
      signal: AbortSignal.timeout(FETCH_TIMEOUT),
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(
        `Cannot read /cluster of node ${this.index}: ${response.status}`,
      );
    }
    return await response.json();
  }

  /**
   * The node's Prometheus text.
   *
   * @returns The text of `/metrics`.
   */
  async metrics(): Promise<string> {
    const response = await fetch(`${this.admin}/metrics`, {
      signal: AbortSignal.timeout(FETCH_TIMEOUT),
    });
    return await response.text();
  }

  /**
   * One sample of a metric without labels (or with exactly `labels`).
   *
   * @param name The metric's name.
   * @param labels Its labels as they are written (`direction="out"`).
   * @returns Its value.
   * @throws {Error} When the node does not report it.
   */
  async metric(name: string, labels = ""): Promise<number> {
    const text = await this.metrics();
    const series = labels === "" ? name : `${name}{${labels}}`;
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    if (line === undefined) {
      throw new Error(`Node ${this.index} reports no ${series}`);
    }
    return Number(line.slice(series.length + 1));
  }
}

/** Options of {@linkcode startNode}. */
export interface StartNodeOptions {
  /** The Redis URL. */
  redisUrl: string;
  /** The cluster secret. */
  secret: string;
  /** Whether to wait until the node reports Redis up. */
  awaitRedis: boolean;
  /** More arguments for every node's `server.ts`. */
  clusterArgs?: readonly string[];
  /** More arguments for this node's `server.ts` (after those). */
  args?: readonly string[];
  /**
   * The port, the same one again for a restart.
   * @default {a free port}
   */
  port?: number;
  /** Called with every line it writes. */
  echo?: (line: string) => void;
}

/**
 * Starts a node and waits until it listens (and, with `awaitRedis`, reaches
 * Redis). On a free port that another process took meanwhile, it tries
 * another.
 *
 * @param index Its index in the cluster, for names.
 * @param options Its Redis, secret, port and arguments.
 * @returns The running node.
 * @throws {Error} When it cannot start; it is stopped then.
 */
export async function startNode(
  index: number,
  options: StartNodeOptions,
): Promise<SigverNode> {
  const args = [...options.clusterArgs ?? [], ...options.args ?? []];
  for (let attempt = 1;; attempt++) {
    const port = options.port ?? freePort();
    const process = spawn(Deno.execPath(), {
      name: `node ${index}`,
      args: [
        "run",
        "--quiet",
        "--allow-net",
        "--allow-read",
        SERVER,
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--redis",
        options.redisUrl,
        "--cluster-url",
        `ws://127.0.0.1:${port}`,
        "--cluster-secret",
        options.secret,
        "--admin-port",
        "0",
        ...args,
      ],
      cwd: decodeURIComponent(ROOT.pathname),
      env: { NO_COLOR: "1" },
      echo: options.echo && ((line) => options.echo!(line)),
    });
    try {
      await process.waitFor(
        new RegExp(`INFO listen url=ws://127\\.0\\.0\\.1:${port}/`),
        { what: `node ${index} to listen`, timeout: START_TIMEOUT },
      );
      const [, admin] = await process.waitFor(
        /INFO admin url=http:\/\/127\.0\.0\.1:(\d+)\//,
        { what: `node ${index}'s admin listener`, timeout: START_TIMEOUT },
      );
      if (options.awaitRedis) {
        await process.waitFor(/INFO cluster what="redis up"/, {
          what: `node ${index} to reach Redis`,
          timeout: START_TIMEOUT,
        });
      }
      return new SigverNode(
        index,
        port,
        Number(admin),
        process,
        options.args,
      );
    } catch (error) {
      await process.stop();
      if (
        options.port !== undefined || attempt === PORT_ATTEMPTS ||
        !/AddrInUse|in use/i.test(process.output)
      ) {
        throw error;
      }
    }
  }
}
