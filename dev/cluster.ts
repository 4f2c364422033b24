/**
 * A sigver cluster on this machine, for the cluster tests and for
 * `deno task cluster`. The pieces live in `dev/cluster/`, one concern a
 * file; this module gathers what the tests import:
 *
 * - `local_cluster.ts`: {@linkcode startCluster}, Redis, nodes and nginx
 *   started and stopped together;
 * - `node.ts`: the sigver nodes ({@linkcode SigverNode});
 * - `balancer.ts`: nginx in front ({@linkcode Balancer});
 * - `nginx_config.ts`: its configuration, the blocks of `docs/scaling.md`
 *   and `docs/deploy.md` as written there;
 * - `main.ts`: the `deno task cluster` command line;
 * - Redis is `dev/redis_server.ts`, and every process runs through
 *   `dev/process.ts`.
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

export {
  LocalCluster,
  type LocalClusterOptions,
  startCluster,
} from "./cluster/local_cluster.ts";
export { type SigverNode, startNode } from "./cluster/node.ts";
export { Balancer } from "./cluster/balancer.ts";
export {
  BALANCER_MODES,
  type BalancerMode,
  serverConfig,
  upstreamConfig,
} from "./cluster/nginx_config.ts";
