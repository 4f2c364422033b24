/**
 * The groups a node owns, and the clock that fences them: each owned key
 * counts the connections using its lease and holds a deadline, the time of
 * the last lease assertion Redis answered (taken when it was sent) plus the
 * lease TTL less a margin. Past its deadline the lease may have expired in
 * Redis and another node may hold it: the node must stop serving the group
 * (close its peers with 1012) before it relays for it again.
 *
 * The margin covers the fence tick (a group is fenced at the first tick
 * past its deadline, or at once by a lookup that finds it past) and a
 * difference in clock rate between the node and Redis (2% of the TTL): so
 * a group is fenced before its lease can expire in Redis, and two groups of
 * one key do not overlap while the node's process runs. A process that was
 * frozen (SIGSTOP) fences on its first tick or lookup after it wakes.
 *
 * Keys fenced while Redis is unreachable are remembered until it answers
 * again: their newcomers are refused (503) instead of starting a group no
 * lease covers, while the group may live on another node.
 *
 * @module
 */

/** One owned group. */
interface _Group {
  /** Connections using the lease: open peers and upgrades on their way. */
  count: number;
  /** When to fence it (clock milliseconds). */
  until: number;
}

/**
 * The fence tick for a lease TTL: a twentieth of it, 50 to 250 ms.
 *
 * @param leaseTtl Milliseconds a lease lives without renewal.
 * @returns Milliseconds between fence checks.
 */
export function fenceTick(leaseTtl: number): number {
  return Math.max(50, Math.min(250, leaseTtl / 20));
}

/**
 * How long before its lease's expiry a group is fenced: one fence tick and
 * 2% of the TTL for clock rates.
 *
 * @param leaseTtl Milliseconds a lease lives without renewal.
 * @returns Milliseconds.
 */
export function fenceMargin(leaseTtl: number): number {
  return fenceTick(leaseTtl) + Math.ceil(leaseTtl / 50);
}

/**
 * The owned groups of a node and their fence deadlines.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OwnedGroups } from "./owned.ts";
 * const owned = new OwnedGroups(10_000);
 * owned.take("room", 0);
 * assert.equal(owned.holds("room", 9_000), true);
 * assert.deepEqual([...owned.due(9_999)], ["room"]);
 * ```
 */
export class OwnedGroups {
  readonly #groups = new Map<string, _Group>();
  /** Keys fenced while Redis was unreachable. */
  readonly #fenced = new Set<string>();
  /** Milliseconds from an assertion to the fence. */
  readonly #validity: number;

  /**
   * Creates the set.
   *
   * @param leaseTtl Milliseconds a lease lives without renewal.
   */
  constructor(leaseTtl: number) {
    this.#validity = leaseTtl - fenceMargin(leaseTtl);
  }

  /** Groups owned. */
  get size(): number {
    return this.#groups.size;
  }

  /** The owned keys. */
  keys(): string[] {
    return [...this.#groups.keys()];
  }

  /**
   * Whether `key` is owned and not past its deadline at `now`.
   *
   * @param key The group key.
   * @param now The clock's time.
   * @returns Whether the node may serve it.
   */
  holds(key: string, now: number): boolean {
    const group = this.#groups.get(key);
    return group !== undefined && now < group.until;
  }

  /**
   * Counts one more connection on a lease asserted at `asserted` (when the
   * claim was sent); owns the key if it was not.
   *
   * @param key The group key.
   * @param asserted When the claim went to Redis.
   */
  take(key: string, asserted: number): void {
    this.#fenced.delete(key);
    const group = this.#groups.get(key);
    const until = asserted + this.#validity;
    if (group === undefined) this.#groups.set(key, { count: 1, until });
    else {
      group.count++;
      group.until = Math.max(group.until, until);
    }
  }

  /**
   * Counts one more connection on a group that is held.
   *
   * @param key The group key.
   */
  add(key: string): void {
    const group = this.#groups.get(key);
    if (group !== undefined) group.count++;
  }

  /**
   * Counts a connection out.
   *
   * @param key The group key.
   * @returns Whether it was the last (the key is no longer owned).
   */
  drop(key: string): boolean {
    const group = this.#groups.get(key);
    if (group === undefined) return false;
    if (--group.count > 0) return false;
    this.#groups.delete(key);
    return true;
  }

  /**
   * Moves deadlines on: Redis extended (or re-asserted) these leases with a
   * renewal sent at `asserted`.
   *
   * @param keys The renewed keys.
   * @param asserted When the renewal went.
   */
  renewed(keys: Iterable<string>, asserted: number): void {
    const until = asserted + this.#validity;
    for (const key of keys) {
      const group = this.#groups.get(key);
      if (group !== undefined) group.until = Math.max(group.until, until);
    }
  }

  /**
   * Forgets keys another node holds now.
   *
   * @param keys The keys.
   * @returns Those that were owned.
   */
  lose(keys: Iterable<string>): Set<string> {
    const gone = new Set<string>();
    for (const key of keys) if (this.#groups.delete(key)) gone.add(key);
    return gone;
  }

  /**
   * Keys past their deadline at `now`.
   *
   * @param now The clock's time.
   * @returns The keys to fence.
   */
  due(now: number): Set<string> {
    const due = new Set<string>();
    for (const [key, group] of this.#groups) {
      if (now >= group.until) due.add(key);
    }
    return due;
  }

  /**
   * Stops owning keys past their deadline.
   *
   * @param keys The keys, from {@linkcode OwnedGroups.due}.
   * @param remember Whether to refuse their newcomers until
   * {@linkcode OwnedGroups.forgetFenced} (Redis cannot say where they are).
   */
  fence(keys: Iterable<string>, remember: boolean): void {
    for (const key of keys) {
      this.#groups.delete(key);
      if (remember) this.#fenced.add(key);
    }
  }

  /**
   * Whether `key` was fenced while Redis was unreachable.
   *
   * @param key The group key.
   * @returns Whether its newcomers are refused.
   */
  isFenced(key: string): boolean {
    return this.#fenced.has(key);
  }

  /** Redis answers again: it says where fenced groups are. */
  forgetFenced(): void {
    this.#fenced.clear();
  }
}
