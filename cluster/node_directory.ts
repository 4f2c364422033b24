/**
 * Where other nodes are reached, by id, for fallback requests that name a
 * session's node: found in Redis (signed records only), kept for a node TTL,
 * and ids Redis does not know are not asked about again for a second, since
 * a request's session id may name any node and each would cost a round trip.
 *
 * @module
 */

/**
 * Milliseconds a node id that Redis did not know (or whose record did not
 * check out) is not asked about again.
 */
const NODE_MISS_TTL = 1000;
/** Node ids remembered as unknown, at most. */
const NODE_MISS_MAX = 1024;
/** Node URLs remembered, at most. */
const NODE_URL_MAX = 1024;

/** Options of {@linkcode NodeDirectory}. */
export interface NodeDirectoryOptions {
  /** Milliseconds a found URL is kept. */
  keep: number;
  /** The clock's time. */
  now: () => number;
  /**
   * Asks Redis.
   *
   * @returns The URL (`undefined`: no such node), or nothing when Redis
   * cannot say.
   */
  lookUp: (node: string) => Promise<{ url: string | undefined } | undefined>;
}

/**
 * Node URLs by id, cached.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NodeDirectory } from "./node_directory.ts";
 * let asked = 0;
 * const nodes = new NodeDirectory({
 *   keep: 5000,
 *   now: () => 0,
 *   lookUp: () => Promise.resolve({ url: (asked++, "ws://10.0.0.2:8000") }),
 * });
 * assert.equal(await nodes.url("n2"), "ws://10.0.0.2:8000");
 * await nodes.url("n2");
 * assert.equal(asked, 1);
 * ```
 */
export class NodeDirectory {
  readonly #options: NodeDirectoryOptions;
  readonly #urls = new Map<string, { url: string; until: number }>();
  /** Node ids Redis did not know, until when, oldest first. */
  readonly #unknown = new Map<string, number>();
  /** Lookups under way, by id: requests that arrive together share one. */
  readonly #lookups = new Map<string, Promise<string | undefined>>();

  /**
   * Creates the directory.
   *
   * @param options How long to keep URLs, the clock, and the lookup.
   */
  constructor(options: NodeDirectoryOptions) {
    this.#options = options;
  }

  /**
   * Where a live node is reached.
   *
   * @param node The node's id.
   * @returns Its URL, or `undefined` when it is gone or Redis cannot say.
   */
  url(node: string): Promise<string | undefined> {
    const now = this.#options.now();
    const known = this.#urls.get(node);
    if (known !== undefined && known.until > now) {
      return Promise.resolve(known.url);
    }
    const unknown = this.#unknown.get(node);
    if (unknown !== undefined && unknown > now) {
      return Promise.resolve(undefined);
    }
    let lookup = this.#lookups.get(node);
    if (lookup === undefined) {
      lookup = this.#lookUp(node, now).finally(() =>
        this.#lookups.delete(node)
      );
      this.#lookups.set(node, lookup);
    }
    return lookup;
  }

  async #lookUp(node: string, now: number): Promise<string | undefined> {
    const found = await this.#options.lookUp(node);
    // Redis could not say: nothing is learned.
    if (found === undefined) return undefined;
    const url = found.url;
    this.#unknown.delete(node);
    if (url === undefined) {
      this.#urls.delete(node);
      if (this.#unknown.size >= NODE_MISS_MAX) {
        const oldest = this.#unknown.keys().next().value!;
        this.#unknown.delete(oldest);
      }
      this.#unknown.set(node, now + NODE_MISS_TTL);
    } else {
      // A node's URL does not change while it lives: ask again only now and
      // then, to notice that it died.
      this.#urls.set(node, { url, until: now + this.#options.keep });
      if (this.#urls.size > NODE_URL_MAX) this.#urls.clear();
    }
    return url;
  }
}
