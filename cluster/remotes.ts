/**
 * The pipes of a node, counted: peers piped in from edges, peers piped out
 * to owners, and the owner each piped key was sent to. A remembered owner
 * is where a key's newcomers go only while Redis cannot say (a node cut
 * off from Redis still reaches a group's owner); while Redis answers, its
 * answer decides, so a group that moved or an owner that fenced itself is
 * never fed newcomers from memory.
 *
 * @module
 */

/** A remote owner this node pipes some peers of a key to. */
export interface RemoteOwner {
  /** Its node id. */
  readonly node: string;
  /** Its cluster URL. */
  readonly url: string;
  /** Open pipes of this key to that owner. */
  pipes: number;
}

/**
 * Pipes in and out, and the owners of piped keys.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Pipes } from "./remotes.ts";
 * const pipes = new Pipes();
 * pipes.opened("room", "n2", "ws://10.0.0.2:8000");
 * assert.equal(pipes.owner("room")?.node, "n2");
 * pipes.closed("room", "n2", true);
 * assert.equal(pipes.owner("room"), undefined);
 * ```
 */
export class Pipes {
  readonly #owners = new Map<string, RemoteOwner>();
  /** Peers piped from other nodes to this one. */
  in = 0;
  /** Peers piped from this node to their owners. */
  out = 0;

  /**
   * The owner a key's peers are piped to, if any.
   *
   * @param key The group key.
   * @returns The owner.
   */
  owner(key: string): RemoteOwner | undefined {
    return this.#owners.get(key);
  }

  /**
   * Counts a pipe opened to `node` for `key`.
   *
   * @param key The group key.
   * @param node The owner's id.
   * @param url The owner's URL.
   */
  opened(key: string, node: string, url: string): void {
    this.out++;
    const owner = this.#owners.get(key);
    if (owner !== undefined && owner.node === node) owner.pipes++;
    else this.#owners.set(key, { node, url, pipes: 1 });
  }

  /**
   * Counts a pipe to `node` that ended.
   *
   * @param key The group key.
   * @param node The owner it went to.
   * @param forget Whether to forget the owner once no pipe is left (Redis
   * answers); without Redis it is the only way to the group.
   */
  closed(key: string, node: string, forget: boolean): void {
    this.out--;
    const owner = this.#owners.get(key);
    if (owner === undefined || owner.node !== node) return;
    if (--owner.pipes <= 0 && forget) this.#owners.delete(key);
  }

  /**
   * Forgets what this node believed of a key's owner.
   *
   * @param key The group key.
   * @param node The owner that failed or refused.
   */
  forget(key: string, node: string): void {
    if (this.#owners.get(key)?.node === node) this.#owners.delete(key);
  }

  /** Forgets owners with no open pipe (kept while Redis was down). */
  prune(): void {
    for (const [key, owner] of this.#owners) {
      if (owner.pipes <= 0) this.#owners.delete(key);
    }
  }

  /**
   * Open pipes by owner.
   *
   * @returns Node id: peers piped there.
   */
  byOwner(): Record<string, number> {
    const remotes: Record<string, number> = {};
    for (const r of this.#owners.values()) {
      remotes[r.node] = (remotes[r.node] ?? 0) + r.pipes;
    }
    return remotes;
  }
}
