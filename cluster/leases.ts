/**
 * The cluster's state in Redis: who owns each group, and which nodes are
 * alive. Every group key has at most one owner node, recorded as a lease
 * that expires unless renewed; every node has a liveness key that expires
 * unless refreshed and holds its record: the URL other nodes reach it at,
 * signed with the cluster secret (`lib/node_record.ts`).
 *
 * ```
 * <prefix>lease:<group key> = <owner node id>                PX lease TTL
 * <prefix>node:<node id>    = <node's cluster URL>|<its HMAC>  PX node TTL
 * ```
 *
 * Redis is not trusted with where peers go: a node record is checked on
 * every read (here, in TypeScript, after the script that read it: Redis
 * never sees the secret), and a lease that names a node with no valid
 * record is free, claimed by the node that asks. So whoever can write to
 * Redis can move groups between the cluster's nodes, or split them, but
 * cannot send a peer or a request anywhere else.
 *
 * Each operation is one Lua script, so that it is atomic in Redis and one
 * round trip from the node:
 *
 * - resolve: the owner of a key, claiming the lease when it is free or when
 *   its owner's liveness key has expired; the guarded form first checks
 *   that this node's own liveness key is there (when it is not, Redis lost
 *   its state: a FLUSHALL, a restart) and claims nothing then, or when told
 *   not to, so that the nodes re-assert their leases first;
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

import { NodeRecords } from "../lib/node_record.ts";
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
  /** The cluster secret: node records are signed and checked with it. */
  secret: string;
}

// An owner is alive while its liveness key lives, unless that key holds this
// node's own URL under another id: a previous process on this address, gone
// (a restart after a crash), whose liveness key has not expired yet. The
// scripts return the owner's record for the caller to check: one that does
// not check out makes the lease free (a take-over from that owner).

// KEYS[1] lease key. ARGV: node id, lease TTL, node key prefix, the start of
// this node's record (its URL and '|').
const RESOLVE = `
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {owner, ''}
end
if owner then
  local record = redis.call('GET', ARGV[3] .. owner)
  if record and string.sub(record, 1, #ARGV[4]) ~= ARGV[4] then
    return {owner, record}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {ARGV[1], ''}
`;

// The same, guarded. ARGV[5]: '1' to claim a free lease. Returns {'', '',
// 'lost'} when this node's own liveness key is missing (Redis lost its
// state: claim nothing before the nodes re-assert theirs), {'', '', 'free'}
// for a free lease it was told not to claim.
const GUARDED_RESOLVE = `
if redis.call('EXISTS', ARGV[3] .. ARGV[1]) == 0 then
  return {'', '', 'lost'}
end
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {owner, ''}
end
if owner then
  local record = redis.call('GET', ARGV[3] .. owner)
  if record and string.sub(record, 1, #ARGV[4]) ~= ARGV[4] then
    return {owner, record}
  end
end
if ARGV[5] ~= '1' then
  return {'', '', 'free'}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {ARGV[1], ''}
`;

// KEYS[1] lease key. ARGV: node id, lease TTL, expected owner, node prefix,
// the start of this node's record.
const TAKE_OVER = `
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[3] or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], ''}
end
local record = redis.call('GET', ARGV[4] .. owner)
if record and string.sub(record, 1, #ARGV[5]) ~= ARGV[5] then
  return {owner, record}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {ARGV[1], ''}
`;

// KEYS: lease keys. ARGV: node id, lease TTL, node key prefix. Returns, for
// each key another node holds, its index (1-based), that node's id and its
// record ('' when it has none).
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
    lost[#lost + 1] = owner
    lost[#lost + 1] = redis.call('GET', ARGV[3] .. owner) or ''
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

/**
 * Take-overs tried for one key whose lease names a node with no valid
 * record, before giving up (a writer to Redis racing the node).
 */
const FREE_ATTEMPTS = 3;

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
 *   url: "ws://10.0.0.1:8000", secret: Deno.env.get("SIGVER_CLUSTER_SECRET")!,
 * });
 * await store.announce();
 * const owner = await store.resolve("room");
 * ```
 */
export class LeaseStore {
  readonly #redis: RedisClient;
  readonly #options: LeaseStoreOptions;
  readonly #records: NodeRecords;
  /** This node's record, signed once. */
  #record: Promise<string> | undefined;
  readonly #shas = new Map<string, Promise<string>>();
  /** Lease renewals sent (one per key). */
  renewals = 0;

  /**
   * Creates the store.
   *
   * @param redis The connection.
   * @param options Prefix, node id, TTLs, URL and the cluster secret.
   * @throws {TypeError} When the secret is empty.
   */
  constructor(redis: RedisClient, options: LeaseStoreOptions) {
    this.#redis = redis;
    this.#options = options;
    this.#records = new NodeRecords(options.secret);
  }

  /** The Redis key of a group's lease. */
  leaseKey(key: string): string {
    return `${this.#options.prefix}lease:${key}`;
  }

  /** The Redis key of a node's liveness. */
  nodeKey(node: string): string {
    return `${this.#options.prefix}node:${node}`;
  }

  /**
   * Says this node is alive and where it is reached, for the node TTL.
   *
   * @returns Whether its liveness key was there: when it was not although
   * it was announced within the node TTL, Redis lost its state.
   * @throws {TypeError} When this node's URL is no node URL.
   */
  async announce(): Promise<boolean> {
    const { node, url, nodeTtl } = this.#options;
    this.#record ??= this.#records.sign(node, url);
    const before = await this.#redis.command(
      "SET",
      this.nodeKey(node),
      await this.#record,
      "PX",
      nodeTtl,
      "GET",
    );
    return before !== null;
  }

  /**
   * Where a live node is reached.
   *
   * @param node The node's id.
   * @returns Its cluster URL, or `undefined` when it is not alive or its
   * record does not check out.
   */
  async nodeUrl(node: string): Promise<string | undefined> {
    const record = await this.#redis.command("GET", this.nodeKey(node));
    return typeof record === "string"
      ? await this.#records.read(node, record)
      : undefined;
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
    return await this.#checked(
      key,
      await this.#eval(RESOLVE, [this.leaseKey(key)], [
        node,
        leaseTtl,
        `${prefix}node:`,
        `${url}|`,
      ]),
    );
  }

  /**
   * The owner of a group, as {@linkcode LeaseStore.resolve} finds it, but
   * only while this node's liveness key is in Redis, and claiming a free
   * lease only when told to.
   *
   * @param key The group key.
   * @param claim Whether to claim a free lease.
   * @returns The owner; `"lost"` when this node's liveness key is missing
   * (nothing was claimed); `"free"` for a free lease not claimed.
   */
  async resolveGuarded(
    key: string,
    claim: boolean,
  ): Promise<Owner | "lost" | "free"> {
    const { node, leaseTtl, prefix, url } = this.#options;
    const reply = await this.#eval(GUARDED_RESOLVE, [this.leaseKey(key)], [
      node,
      leaseTtl,
      `${prefix}node:`,
      `${url}|`,
      claim ? "1" : "0",
    ]);
    if (Array.isArray(reply) && reply[0] === "" && reply.length === 3) {
      if (reply[2] === "lost" || reply[2] === "free") return reply[2];
    }
    return await this.#checked(key, reply);
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
    return await this.#checked(key, await this.#takeOver(key, from));
  }

  #takeOver(key: string, from: string): Promise<Reply> {
    const { node, leaseTtl, prefix, url } = this.#options;
    return this.#eval(TAKE_OVER, [this.leaseKey(key)], [
      node,
      leaseTtl,
      from,
      `${prefix}node:`,
      `${url}|`,
    ]);
  }

  /**
   * Renews leases in batches (one pipelined round trip), re-asserting the
   * ones that expired, and those held by a node with no valid record.
   *
   * @param keys The group keys this node owns.
   * @returns The keys another node holds now: this node lost them.
   */
  async renew(keys: readonly string[]): Promise<string[]> {
    if (keys.length === 0) return [];
    const { node, leaseTtl, prefix } = this.#options;
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
      `${prefix}node:`,
    ]);
    let replies = await this.#redis.pipeline(commands);
    if (replies.some(_noScript)) {
      replies = await this.#redis.pipeline(
        commands.map((c) => ["EVAL", RENEW, ...c.slice(2)]),
      );
    }
    this.renewals += keys.length;
    const held: { key: string; owner: Reply[] }[] = [];
    replies.forEach((reply, b) => {
      if (reply instanceof RespError) throw new LeaseError(reply.message);
      if (!Array.isArray(reply) || reply.length % 3 !== 0) {
        throw new LeaseError("Cannot renew: the script returned no list");
      }
      for (let j = 0; j < reply.length; j += 3) {
        const key = batches[b][Number(reply[j]) - 1];
        if (key === undefined) {
          throw new LeaseError("Cannot renew: the script returned no key");
        }
        held.push({ key, owner: reply.slice(j + 1, j + 3) });
      }
    });
    // Held by another node: lost, unless that node's record does not check
    // out (then the lease is free, and this node takes it back).
    const owners = await Promise.all(
      held.map(({ key, owner }) => this.#checked(key, owner)),
    );
    return held.filter((_, i) => !owners[i].self).map(({ key }) => key);
  }

  /**
   * Deletes a lease if this node still holds it.
   *
   * @param key The group key.
   */
  async release(key: string): Promise<void> {
    await this.#eval(RELEASE, [this.leaseKey(key)], [this.#options.node]);
  }

  /**
   * The owner a script returned (its id and record), checked: a node whose
   * record does not check out holds no lease, which is taken over from it.
   */
  async #checked(key: string, reply: Reply): Promise<Owner> {
    for (let attempt = 0;; attempt++) {
      if (
        !Array.isArray(reply) || typeof reply[0] !== "string" ||
        typeof reply[1] !== "string"
      ) {
        throw new LeaseError("Cannot resolve: the script returned no owner");
      }
      const [node, record] = reply as [string, string];
      if (node === this.#options.node) return { self: true };
      const url = await this.#records.read(node, record);
      if (url !== undefined) return { self: false, node, url };
      if (attempt === FREE_ATTEMPTS) {
        throw new LeaseError(
          "Cannot resolve: the lease keeps naming nodes with no valid record",
        );
      }
      reply = await this.#takeOver(key, node);
    }
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
