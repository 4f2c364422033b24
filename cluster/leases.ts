/**
 * The cluster's state in Redis: who owns each group, and which nodes are
 * alive. Every group key has at most one owner node, recorded as a lease
 * that expires unless renewed; every node has a liveness key that expires
 * unless refreshed and holds the URL other nodes reach it at.
 *
 * ```
 * <prefix>lease:<group key> = <owner node id>   PX lease TTL
 * <prefix>node:<node id>    = <node's cluster URL>  PX node TTL
 * ```
 *
 * Each operation is one Lua script, so that it is atomic in Redis and one
 * round trip from the node:
 *
 * - resolve: the owner of a key, claiming the lease when it is free or when
 *   its owner's liveness key has expired;
 * - take over: claim the lease from a given owner (that this node could not
 *   reach), and only from it;
 * - renew: extend many leases at once, re-assert those that expired (Redis
 *   was down or restarted), and report those another node holds now;
 * - release: compare-and-delete, when a group empties.
 *
 * Scripts read the node key of a lease's owner, which the script does not
 * declare: that needs a standalone Redis (or Valkey), not Redis Cluster.
 *
 * @module
 */

import { type Reply, RespError } from "../lib/resp.ts";
import type { RedisClient } from "./redis.ts";

/** Who owns a group. */
export type Owner =
  | { readonly self: true }
  | { readonly self: false; readonly node: string; readonly url: string };

/** Options of {@linkcode LeaseStore}. */
export interface LeaseStoreOptions {
  /** Prefix of every key this cluster writes. */
  prefix: string;
  /** This node's id. */
  node: string;
  /** Milliseconds a lease lives without renewal. */
  leaseTtl: number;
  /** Milliseconds a node's liveness key lives without refresh. */
  nodeTtl: number;
  /** This node's cluster URL (a lease held under it by another id is dead). */
  url: string;
}

// An owner is alive while its liveness key lives, unless that key holds this
// node's own URL under another id: a previous process on this address, gone
// (a restart after a crash), whose liveness key has not expired yet.

// KEYS[1] lease key. ARGV: node id, lease TTL, node key prefix, node URL.
const RESOLVE = `
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {owner, ''}
end
if owner then
  local url = redis.call('GET', ARGV[3] .. owner)
  if url and url ~= ARGV[4] then return {owner, url} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {ARGV[1], ''}
`;

// KEYS[1] lease key. ARGV: node id, lease TTL, expected owner, node prefix,
// node URL.
const TAKE_OVER = `
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[3] or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], ''}
end
local url = redis.call('GET', ARGV[4] .. owner)
if url and url ~= ARGV[5] then return {owner, url} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {ARGV[1], ''}
`;

// KEYS: lease keys. ARGV: node id, lease TTL. Returns the indexes (1-based)
// of the keys another node holds.
const RENEW = `
local lost = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif owner == false then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    lost[#lost + 1] = i
  end
end
return lost
`;

// KEYS[1] lease key. ARGV[1] node id.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

/** Keys per renewal script: bounds each script's time in Redis. */
const RENEW_BATCH = 500;

async function _sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(text),
  );
  return Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** Thrown when Redis answers a script with something it cannot return. */
export class LeaseError extends Error {
  /**
   * Creates the error.
   *
   * @param message What went wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "LeaseError";
  }
}

/**
 * Leases and liveness keys of one node, in one Redis.
 *
 * @example
 * ```ts ignore
 * const store = new LeaseStore(redis, {
 *   prefix: "sigver:", node: "n1", leaseTtl: 10_000, nodeTtl: 5_000,
 *   url: "ws://10.0.0.1:8000",
 * });
 * await store.announce();
 * const owner = await store.resolve("room");
 * ```
 */
export class LeaseStore {
  readonly #redis: RedisClient;
  readonly #options: LeaseStoreOptions;
  readonly #shas = new Map<string, Promise<string>>();
  /** Lease renewals sent (one per key). */
  renewals = 0;

  /**
   * Creates the store.
   *
   * @param redis The connection.
   * @param options Prefix, node id and TTLs.
   */
  constructor(redis: RedisClient, options: LeaseStoreOptions) {
    this.#redis = redis;
    this.#options = options;
  }

  /** The Redis key of a group's lease. */
  leaseKey(key: string): string {
    return `${this.#options.prefix}lease:${key}`;
  }

  /** The Redis key of a node's liveness. */
  nodeKey(node: string): string {
    return `${this.#options.prefix}node:${node}`;
  }

  /** Says this node is alive and where it is reached, for the node TTL. */
  async announce(): Promise<void> {
    await this.#redis.command(
      "SET",
      this.nodeKey(this.#options.node),
      this.#options.url,
      "PX",
      this.#options.nodeTtl,
    );
  }

  /**
   * Where a live node is reached.
   *
   * @param node The node's id.
   * @returns Its cluster URL, or `undefined` when it is not alive.
   */
  async nodeUrl(node: string): Promise<string | undefined> {
    const url = await this.#redis.command("GET", this.nodeKey(node));
    return typeof url === "string" ? url : undefined;
  }

  /** Removes this node's liveness key (a clean shutdown). */
  async retire(): Promise<void> {
    await this.#redis.command("DEL", this.nodeKey(this.#options.node));
  }

  /**
   * The owner of a group: this node when the lease was free, already ours,
   * or held by a node whose liveness key expired (the lease is then ours).
   *
   * @param key The group key.
   * @returns The owner.
   */
  async resolve(key: string): Promise<Owner> {
    const { node, leaseTtl, prefix, url } = this.#options;
    return this.#owner(
      await this.#eval(RESOLVE, [this.leaseKey(key)], [
        node,
        leaseTtl,
        `${prefix}node:`,
        url,
      ]),
    );
  }

  /**
   * Takes a lease over from an owner this node could not reach; another
   * owner (one that took it meanwhile and is alive) keeps it.
   *
   * @param key The group key.
   * @param from The owner that could not be reached.
   * @returns The owner now.
   */
  async takeOver(key: string, from: string): Promise<Owner> {
    const { node, leaseTtl, prefix, url } = this.#options;
    return this.#owner(
      await this.#eval(TAKE_OVER, [this.leaseKey(key)], [
        node,
        leaseTtl,
        from,
        `${prefix}node:`,
        url,
      ]),
    );
  }

  /**
   * Renews leases in batches (one pipelined round trip), re-asserting the
   * ones that expired.
   *
   * @param keys The group keys this node owns.
   * @returns The keys another node holds now: this node lost them.
   */
  async renew(keys: readonly string[]): Promise<string[]> {
    if (keys.length === 0) return [];
    const { node, leaseTtl } = this.#options;
    const sha = await this.#sha(RENEW);
    const batches: string[][] = [];
    for (let i = 0; i < keys.length; i += RENEW_BATCH) {
      batches.push(keys.slice(i, i + RENEW_BATCH));
    }
    const commands = batches.map((batch) => [
      "EVALSHA",
      sha,
      batch.length,
      ...batch.map((k) => this.leaseKey(k)),
      node,
      leaseTtl,
    ]);
    let replies = await this.#redis.pipeline(commands);
    if (replies.some(_noScript)) {
      replies = await this.#redis.pipeline(
        commands.map((c) => ["EVAL", RENEW, ...c.slice(2)]),
      );
    }
    this.renewals += keys.length;
    const lost: string[] = [];
    replies.forEach((reply, b) => {
      if (reply instanceof RespError) throw new LeaseError(reply.message);
      if (!Array.isArray(reply)) {
        throw new LeaseError("Cannot renew: the script returned no list");
      }
      for (const i of reply) lost.push(batches[b][Number(i) - 1]);
    });
    return lost;
  }

  /**
   * Deletes a lease if this node still holds it.
   *
   * @param key The group key.
   */
  async release(key: string): Promise<void> {
    await this.#eval(RELEASE, [this.leaseKey(key)], [this.#options.node]);
  }

  #owner(reply: Reply): Owner {
    if (
      !Array.isArray(reply) || typeof reply[0] !== "string" ||
      typeof reply[1] !== "string"
    ) {
      throw new LeaseError("Cannot resolve: the script returned no owner");
    }
    const [node, url] = reply as [string, string];
    return node === this.#options.node
      ? { self: true }
      : { self: false, node, url };
  }

  /** Runs a script by its SHA, loading it when Redis does not know it. */
  async #eval(
    script: string,
    keys: string[],
    args: (string | number)[],
  ): Promise<Reply> {
    const sha = await this.#sha(script);
    const [reply] = await this.#redis.pipeline([
      ["EVALSHA", sha, keys.length, ...keys, ...args],
    ]);
    const result = _noScript(reply)
      ? (await this.#redis.pipeline([
        ["EVAL", script, keys.length, ...keys, ...args],
      ]))[0]
      : reply;
    if (result instanceof RespError) throw new LeaseError(result.message);
    return result;
  }

  #sha(script: string): Promise<string> {
    let sha = this.#shas.get(script);
    if (sha === undefined) this.#shas.set(script, sha = _sha1(script));
    return sha;
  }
}

function _noScript(reply: Reply): boolean {
  return reply instanceof RespError && reply.message.startsWith("NOSCRIPT");
}
