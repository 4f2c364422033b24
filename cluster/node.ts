/**
 * One node of a sigver cluster: it decides where each arriving peer's group
 * lives, keeps the leases of the groups it owns, and says how it is doing.
 *
 * - A key whose group this node holds is served here, with no Redis round
 *   trip. Otherwise one script in Redis claims the lease (a free key, or one
 *   whose owner died) or names the owner, and the handler pipes the peer to
 *   it. A pipe that cannot reach its owner takes the lease over.
 * - Leases are counted by the connections that use them (open peers, and
 *   upgrades on their way) and released, compare-and-delete, when the last
 *   one goes. Every `leaseTtl / 3` they are renewed in one pipelined round
 *   trip; one that another node holds now is lost, and the handler closes
 *   that group's local peers with 1012 so that they reconnect to the owner.
 * - When Redis is unreachable the node keeps serving: pipes already open
 *   keep relaying, a key piped to a known owner keeps going there, and a new
 *   key is owned here (a warning says a group may split meanwhile). The
 *   leases are asserted again when Redis returns.
 * - Redis is not trusted with where peers go: a node's record (its URL) is
 *   signed with the cluster secret and checked on every read, and a lease
 *   that names a node with no valid record is free (`leases.ts`).
 *
 * @module
 */

import { type Clock, systemClock } from "../lib/clock.ts";
import { settleWithin } from "../lib/deadline.ts";
import type { Logger } from "../lib/log.ts";
import type { MetricFamily } from "../lib/metrics.ts";
import { parseNodeUrl } from "../lib/node_url.ts";
import { PipeAuthority } from "../lib/pipe_auth.ts";
import { LeaseStore, type Owner } from "./leases.ts";
import { RedisClient } from "./redis.ts";

/** Where a peer's group lives. */
export type Route =
  | { readonly local: true }
  | { readonly local: false; readonly node: string; readonly url: string };

/** Options of {@linkcode ClusterNode}. */
export interface ClusterOptions {
  /** `redis://[:password@]host:port[/db]`. */
  redis: string;
  /**
   * How other nodes reach this one: `ws://address:port` (or `wss://`), with
   * no path, query, fragment or credentials.
   */
  url: string;
  /** The secret every node signs and checks pipes with. */
  secret: string;
  /**
   * Prefix of every Redis key of this cluster.
   * @default {"sigver:"}
   */
  prefix?: string;
  /**
   * Milliseconds a lease lives without renewal; leases are renewed every
   * third of it. A dead owner is found by its liveness key (`nodeTtl`), not
   * by its leases expiring, so a long lease costs no failover time: it only
   * bounds how long the lease of a group that ended on a dead node lingers,
   * and how soon a node that was frozen learns that its groups moved.
   * Renewals, most of Redis's work, scale with its inverse.
   * @default {30000}
   */
  leaseTtl?: number;
  /**
   * Milliseconds a node's liveness key lives without refresh: how long a
   * dead owner still counts as alive for peers that do not try to reach it.
   * @default {5000}
   */
  nodeTtl?: number;
  /**
   * Milliseconds a Redis command may take.
   * @default {1000}
   */
  redisTimeout?: number;
  /** Where log records go. */
  log?: Logger;
  /**
   * The clock of the renewal and liveness loops.
   * @default {systemClock}
   */
  clock?: Clock;
}

/** What `/cluster` shows of this node. */
export interface ClusterView {
  /** This node's id. */
  node: string;
  /** Its cluster URL. */
  url: string;
  /** Whether Redis answers. */
  redis: "up" | "down";
  /** Groups this node owns (with at least one local peer). */
  ownedGroups: number;
  /** Peers piped from other nodes to this one. */
  pipedIn: number;
  /** Peers piped from this node to their owners. */
  pipedOut: number;
  /** Owners this node pipes peers to, by node id: peers piped. */
  remotes: Record<string, number>;
}

/**
 * Milliseconds a node id that Redis did not know (or whose record did not
 * check out) is not asked about again: fallback requests may name any node.
 */
const NODE_MISS_TTL = 1000;
/** Node ids remembered as unknown, at most. */
const NODE_MISS_MAX = 1024;

function _randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A remote owner this node pipes some peers of a key to. */
interface _Remote {
  node: string;
  url: string;
  /** Open pipes of this key to that owner. */
  pipes: number;
}

/**
 * A cluster node. Create it, and give it to the server as a placement
 * (`cluster/placement.ts`), which starts it.
 *
 * @example
 * ```ts ignore
 * const cluster = new ClusterNode({
 *   redis: "redis://127.0.0.1:6379",
 *   url: "ws://10.0.0.1:8000",
 *   secret: Deno.env.get("SIGVER_CLUSTER_SECRET")!,
 * });
 * await cluster.start();
 * ```
 */
export class ClusterNode {
  /** This node's id: random, new at every start. */
  readonly id: string = _randomId();
  /** Signs and checks pipes. */
  readonly auth: PipeAuthority;
  /** Called with the keys whose leases other nodes now hold. */
  onLost: (keys: ReadonlySet<string>) => void = () => {};
  readonly #options: Required<Omit<ClusterOptions, "log">>;
  #log: Logger | undefined;
  readonly #redis: RedisClient;
  readonly #store: LeaseStore;
  /** Keys this node owns: connections using each lease. */
  readonly #owned = new Map<string, number>();
  /** Releases in flight: a key is not claimed again until they end. */
  readonly #releasing = new Map<string, Promise<void>>();
  /**
   * Owner lookups under way, by key: peers of one key that arrive together
   * share one, so that none can release a lease another is still counting
   * on between two lookups.
   */
  readonly #resolving = new Map<string, Promise<Owner | undefined>>();
  /** URLs of other nodes, for a while, by id. */
  readonly #nodeUrls = new Map<string, { url: string; until: number }>();
  /** Node ids Redis did not know, until when, oldest first. */
  readonly #unknownNodes = new Map<string, number>();
  /** Node lookups under way, by id: requests that arrive together share one. */
  readonly #nodeLookups = new Map<string, Promise<string | undefined>>();
  /** Keys piped elsewhere, with their owner. */
  readonly #remote = new Map<string, _Remote>();
  #pipedIn = 0;
  #pipedOut = 0;
  #redisUp: boolean | undefined = undefined;
  #takeovers = 0;
  #lost = 0;
  #localWhileDown = 0;
  #loops: Disposable[] = [];
  #closed = false;
  /** Settles once the first announcement got an answer or failed. */
  #started: Promise<void> | undefined;
  readonly #firstState = Promise.withResolvers<void>();

  /**
   * Creates the node; it talks to Redis once started.
   *
   * @param options Redis, this node's URL, the secret, prefix and TTLs.
   * @throws {TypeError} When the URL is not `ws[s]://host:port` or the
   * secret is empty.
   */
  constructor(options: ClusterOptions) {
    this.#options = {
      redis: options.redis,
      url: parseNodeUrl(options.url),
      secret: options.secret,
      prefix: options.prefix ?? "sigver:",
      leaseTtl: options.leaseTtl ?? 30_000,
      nodeTtl: options.nodeTtl ?? 5_000,
      redisTimeout: options.redisTimeout ?? 1_000,
      clock: options.clock ?? systemClock,
    };
    this.#log = options.log;
    this.auth = new PipeAuthority(options.secret);
    this.#redis = new RedisClient(options.redis, {
      connectTimeout: this.#options.redisTimeout,
      commandTimeout: this.#options.redisTimeout,
      backoffMax: 2_000,
      onState: (up, error) => this.#redisState(up, error?.message),
    });
    this.#store = new LeaseStore(this.#redis, {
      prefix: this.#options.prefix,
      node: this.id,
      leaseTtl: this.#options.leaseTtl,
      nodeTtl: this.#options.nodeTtl,
      url: this.#options.url,
      secret: options.secret,
    });
  }

  /**
   * Logs to `log` when the node was made without a log of its own.
   *
   * @param log The server's log.
   */
  useLog(log: Logger): void {
    this.#log ??= log;
  }

  /** This node's cluster URL, as the URL standard writes it. */
  get url(): string {
    return this.#options.url;
  }

  /**
   * Announces the node and starts its liveness and renewal loops. A Redis
   * that does not answer yet is not an error: the node serves meanwhile.
   */
  start(): Promise<void> {
    const { clock, nodeTtl, leaseTtl } = this.#options;
    this.#loops.push(
      clock.every(Math.max(100, nodeTtl / 3), () => void this.#announce()),
      clock.every(Math.max(100, leaseTtl / 3), () => void this.#renew()),
    );
    // The client connects at once and reports its first attempt's outcome.
    return this.#started ??= settleWithin(
      this.#firstState.promise,
      this.#options.redisTimeout * 2,
    ).then(() => this.#announce());
  }

  /**
   * Where a peer of `key` must go. Takes a lease for this node when it
   * routes the peer here: pair it with {@linkcode ClusterNode.release}.
   *
   * @param key The group key.
   * @returns Local, or the owner to pipe to.
   */
  async route(key: string): Promise<Route> {
    // Before Redis first answered (or failed), every key would look free.
    if (this.#started !== undefined) await this.#started;
    const count = this.#owned.get(key);
    if (count !== undefined) {
      this.#owned.set(key, count + 1);
      return { local: true };
    }
    const remote = this.#remote.get(key);
    if (remote !== undefined && (remote.pipes > 0 || !this.#redisUp)) {
      return { local: false, node: remote.node, url: remote.url };
    }
    await this.#releasing.get(key);
    let owner = this.#resolving.get(key);
    if (owner === undefined) {
      owner = this.#ask(() => this.#store.resolve(key));
      this.#resolving.set(key, owner);
      void owner.then(() => this.#resolving.delete(key));
    }
    return this.#claimed(key, await owner);
  }

  /**
   * Routes a peer whose pipe could not reach `owner`: takes the lease over
   * from it, unless another live node holds it now.
   *
   * @param key The group key.
   * @param owner The node that could not be reached.
   * @returns Local, or the owner to pipe to.
   */
  async unreachable(key: string, owner: string): Promise<Route> {
    const remote = this.#remote.get(key);
    if (remote?.node === owner) this.#remote.delete(key);
    const route = this.#claimed(
      key,
      await this.#ask(() => this.#store.takeOver(key, owner)),
    );
    if (route.local) {
      this.#takeovers++;
      this.#log?.write("warn", "cluster", {
        what: "takeover",
        from: owner,
      });
    }
    return route;
  }

  /**
   * Routes a peer whose pipe `owner` refused because it no longer owns the
   * group: forgets what this node believed and asks Redis again.
   *
   * @param key The group key.
   * @param owner The node that refused.
   * @returns Local, or the owner to pipe to.
   */
  async refused(key: string, owner: string): Promise<Route> {
    const remote = this.#remote.get(key);
    if (remote?.node === owner) this.#remote.delete(key);
    return this.#claimed(key, await this.#ask(() => this.#store.resolve(key)));
  }

  /**
   * Claims a key for a pipe that arrives from another node: the pipe's edge
   * found this node in Redis. The lease is kept, or claimed when it is free;
   * when another node holds it, the pipe must be refused.
   *
   * @param key The group key.
   * @returns Whether this node owns the key (with the lease taken).
   */
  async accept(key: string): Promise<boolean> {
    const route = await this.route(key);
    return route.local;
  }

  /**
   * Gives back a lease taken by {@linkcode ClusterNode.route}; the last one
   * out releases it in Redis.
   *
   * @param key The group key.
   */
  release(key: string): void {
    const count = this.#owned.get(key);
    if (count === undefined) return;
    if (count > 1) {
      this.#owned.set(key, count - 1);
      return;
    }
    this.#owned.delete(key);
    if (!this.#redisUp) return;
    const done = this.#store.release(key).catch(() => {
      // Redis went away: the lease expires by itself.
    }).finally(() => {
      if (this.#releasing.get(key) === done) this.#releasing.delete(key);
    });
    this.#releasing.set(key, done);
  }

  /**
   * Counts a pipe this node opened to `owner` for `key` (until
   * {@linkcode ClusterNode.pipeClosed}).
   *
   * @param key The group key.
   * @param route The owner.
   */
  pipeOpened(key: string, route: Route & { local: false }): void {
    this.#pipedOut++;
    const remote = this.#remote.get(key);
    if (remote !== undefined && remote.node === route.node) remote.pipes++;
    else this.#remote.set(key, { node: route.node, url: route.url, pipes: 1 });
  }

  /**
   * Counts a pipe this node opened that has ended.
   *
   * @param key The group key.
   * @param node The owner it went to.
   */
  pipeClosed(key: string, node: string): void {
    this.#pipedOut--;
    const remote = this.#remote.get(key);
    if (remote === undefined || remote.node !== node) return;
    // Without Redis, a group's known owner is the only way to find it: keep
    // it until Redis returns.
    if (--remote.pipes <= 0 && this.#redisUp) this.#remote.delete(key);
  }

  /**
   * Where a live node is reached (for a fallback session that lives there).
   * A node Redis does not know (or whose record does not check out) is
   * not asked about again for a second: a request's session id may name
   * any node, and each would cost a Redis round trip.
   *
   * @param node The node's id.
   * @returns Its cluster URL, or `undefined` when it is gone or Redis cannot
   * say.
   */
  nodeUrl(node: string): Promise<string | undefined> {
    if (node === this.id) return Promise.resolve(this.#options.url);
    const now = this.#options.clock.now();
    const known = this.#nodeUrls.get(node);
    if (known !== undefined && known.until > now) {
      return Promise.resolve(known.url);
    }
    const unknown = this.#unknownNodes.get(node);
    if (unknown !== undefined && unknown > now) {
      return Promise.resolve(undefined);
    }
    let lookup = this.#nodeLookups.get(node);
    if (lookup === undefined) {
      lookup = this.#lookUpNode(node, now).finally(() =>
        this.#nodeLookups.delete(node)
      );
      this.#nodeLookups.set(node, lookup);
    }
    return lookup;
  }

  async #lookUpNode(node: string, now: number): Promise<string | undefined> {
    const found = await this.#ask(async () => ({
      url: await this.#store.nodeUrl(node),
    }));
    // Redis could not say: nothing is learned.
    if (found === undefined) return undefined;
    const url = found.url;
    this.#unknownNodes.delete(node);
    if (url === undefined) {
      this.#nodeUrls.delete(node);
      if (this.#unknownNodes.size >= NODE_MISS_MAX) {
        const oldest = this.#unknownNodes.keys().next().value!;
        this.#unknownNodes.delete(oldest);
      }
      this.#unknownNodes.set(node, now + NODE_MISS_TTL);
    } else {
      // A node's URL does not change while it lives: ask again only now and
      // then, to notice that it died. Only signed records get here.
      this.#nodeUrls.set(node, { url, until: now + this.#options.nodeTtl });
      if (this.#nodeUrls.size > 1024) this.#nodeUrls.clear();
    }
    return url;
  }

  /**
   * Counts pipes from other nodes to this one.
   *
   * @param delta +1 when one opens, -1 when it closes.
   */
  pipedIn(delta: number): void {
    this.#pipedIn += delta;
  }

  /**
   * This node's view, for `/cluster`.
   *
   * @returns The view.
   */
  view(): ClusterView {
    const remotes: Record<string, number> = {};
    for (const r of this.#remote.values()) {
      remotes[r.node] = (remotes[r.node] ?? 0) + r.pipes;
    }
    return {
      node: this.id,
      url: this.#options.url,
      redis: this.#redisUp === true ? "up" : "down",
      ownedGroups: this.#owned.size,
      pipedIn: this.#pipedIn,
      pipedOut: this.#pipedOut,
      remotes,
    };
  }

  /**
   * The cluster's metric families.
   *
   * @returns The families.
   */
  metrics(): MetricFamily[] {
    const redis = this.#redis.stats();
    const one = (
      name: string,
      type: "counter" | "gauge",
      help: string,
      value: number,
    ): MetricFamily => ({ name, type, help, samples: [[{}, value]] });
    return [
      one(
        "sigver_cluster_redis_up",
        "gauge",
        "1 while Redis answers.",
        this.#redisUp ? 1 : 0,
      ),
      one(
        "sigver_cluster_owned_groups",
        "gauge",
        "Groups this node owns.",
        this.#owned.size,
      ),
      {
        name: "sigver_cluster_piped_peers",
        type: "gauge",
        help: "Peers piped between nodes: in from edges, out to owners.",
        samples: [
          [{ direction: "in" }, this.#pipedIn],
          [{ direction: "out" }, this.#pipedOut],
        ],
      },
      one(
        "sigver_cluster_redis_round_trips_total",
        "counter",
        "Redis round trips (a pipeline is one).",
        redis.roundTrips,
      ),
      one(
        "sigver_cluster_redis_errors_total",
        "counter",
        "Redis failures: lost connections, timeouts and error replies.",
        redis.errors + redis.timeouts + redis.errorReplies,
      ),
      one(
        "sigver_cluster_lease_renewals_total",
        "counter",
        "Lease renewals sent (one per group and renewal).",
        this.#store.renewals,
      ),
      one(
        "sigver_cluster_takeovers_total",
        "counter",
        "Leases taken over from owners that could not be reached.",
        this.#takeovers,
      ),
      one(
        "sigver_cluster_lost_leases_total",
        "counter",
        "Leases found held by another node (their local peers closed).",
        this.#lost,
      ),
      one(
        "sigver_cluster_local_while_down_total",
        "counter",
        "Keys owned here without Redis (a group may have split).",
        this.#localWhileDown,
      ),
    ];
  }

  /** Stops the loops, removes this node's liveness key, closes Redis. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const loop of this.#loops) loop[Symbol.dispose]();
    this.#loops = [];
    if (this.#redisUp) {
      const leases = [...this.#owned.keys()];
      await Promise.allSettled([
        this.#store.retire(),
        ...leases.map((key) => this.#store.release(key)),
      ]);
    }
    await this.#redis.close();
  }

  /** Records the outcome of a resolve: a lease for a local route. */
  #claimed(key: string, owner: Owner | undefined): Route {
    if (owner === undefined) {
      // Redis is unreachable: serve here; renewal asserts the lease later.
      this.#localWhileDown++;
      this.#owned.set(key, (this.#owned.get(key) ?? 0) + 1);
      return { local: true };
    }
    if (owner.self) {
      this.#owned.set(key, (this.#owned.get(key) ?? 0) + 1);
      return { local: true };
    }
    return { local: false, node: owner.node, url: owner.url };
  }

  /** Runs a Redis operation; `undefined` when Redis cannot answer. */
  async #ask<T>(operation: () => Promise<T>): Promise<T | undefined> {
    if (!this.#redis.connected) return undefined;
    try {
      return await operation();
    } catch (error) {
      this.#log?.write("warn", "cluster", {
        what: "redis",
        error: error instanceof Error ? error.message : String(error),
      });
      return undefined;
    }
  }

  async #announce(): Promise<void> {
    if (this.#closed) return;
    await this.#ask(() => this.#store.announce());
  }

  async #renew(): Promise<void> {
    if (this.#closed || this.#owned.size === 0) return;
    const lost = await this.#ask(() =>
      this.#store.renew([...this.#owned.keys()])
    );
    const gone = new Set<string>();
    for (const key of lost ?? []) {
      if (this.#owned.delete(key)) gone.add(key);
    }
    if (gone.size === 0) return;
    // One pass over the peers and one line, however many groups moved.
    this.#lost += gone.size;
    this.#log?.write("warn", "cluster", { what: "lost", groups: gone.size });
    this.onLost(gone);
  }

  #redisState(up: boolean, error?: string): void {
    this.#firstState.resolve();
    if (this.#redisUp === up) return;
    this.#redisUp = up;
    if (up) {
      this.#log?.write("info", "cluster", { what: "redis up", node: this.id });
      // Owners kept through the outage: Redis says where groups are again.
      for (const [key, remote] of this.#remote) {
        if (remote.pipes <= 0) this.#remote.delete(key);
      }
      // Back: say where this node is, and assert its leases at once.
      void this.#announce().then(() => this.#renew());
    } else {
      this.#log?.write("warn", "cluster", {
        what: "redis down",
        error,
        effect:
          "new groups are owned locally until Redis returns; a group may split meanwhile",
      });
    }
  }
}
