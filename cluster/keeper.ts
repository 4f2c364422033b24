/**
 * The leases of one node's groups, kept: announced liveness, renewals every
 * third of the lease TTL, fences for groups not renewed in time
 * (`owned.ts`), and the recovery from a Redis that lost its state. Which
 * node a peer goes to is `node.ts`'s; this keeps what it decided valid.
 *
 * @module
 */

import type { Clock } from "../lib/clock.ts";
import type { Logger } from "../lib/log.ts";
import type { LeaseStore, Owner } from "./leases.ts";
import { fenceTick, OwnedGroups } from "./owned.ts";

/** What a lookup found, and when it was sent (a lease's start). */
export interface Found {
  /** The owner; `undefined` when Redis could not say. */
  owner: Owner | undefined;
  /** When the lookup went to Redis. */
  asserted: number;
}

/** What a {@linkcode LeaseKeeper} works with. */
export interface LeaseKeeperOptions {
  /** The node's leases in Redis. */
  store: LeaseStore;
  /** The clock of the loops. */
  clock: Clock;
  /** Milliseconds a lease lives without renewal. */
  leaseTtl: number;
  /** Milliseconds a liveness key lives without refresh. */
  nodeTtl: number;
  /** Milliseconds a Redis command may take. */
  redisTimeout: number;
  /**
   * Runs a Redis operation.
   *
   * @param operation The operation.
   * @returns Its result, or `undefined` when Redis cannot answer.
   */
  ask<T>(operation: () => Promise<T>): Promise<T | undefined>;
  /** Whether Redis answers. */
  redisUp(): boolean;
  /** The node's log. */
  log(): Logger | undefined;
  /**
   * Groups that must close here (1012).
   *
   * @param keys Their keys.
   */
  lost(keys: ReadonlySet<string>): void;
}

/** Lookups of one key, retried after Redis lost its state or a grace. */
const LOOKUP_ATTEMPTS = 3;

/**
 * Keeps a node's leases.
 *
 * @example
 * ```ts ignore
 * const keeper = new LeaseKeeper({ store, clock, leaseTtl, nodeTtl, ... });
 * const loops = keeper.start();
 * const found = await keeper.lookUp("room");
 * ```
 */
export class LeaseKeeper {
  /** The groups owned, and their fence deadlines. */
  readonly owned: OwnedGroups;
  /** Releases in flight: a key is not claimed again until they end. */
  readonly releasing = new Map<string, Promise<void>>();
  /** Leases found held by another node. */
  lost = 0;
  /** Groups fenced. */
  fenced = 0;
  /** Times Redis had lost this node's keys. */
  reasserted = 0;
  readonly #o: LeaseKeeperOptions;
  /** Whether an announcement got through (a missing key then means loss). */
  #announced = false;
  /** Free leases are not claimed before this time (after a state loss). */
  #claimAfter = -Infinity;
  /** A re-assertion after a state loss, under way. */
  #recovering: Promise<void> | undefined;
  #closed = false;

  /**
   * Creates the keeper.
   *
   * @param options The store, clock, TTLs and the node's callbacks.
   */
  constructor(options: LeaseKeeperOptions) {
    this.#o = options;
    this.owned = new OwnedGroups(options.leaseTtl);
  }

  /**
   * Starts the announcement, renewal and fence loops.
   *
   * @returns The loops: dispose of them to stop.
   */
  start(): Disposable {
    const { clock, leaseTtl } = this.#o;
    const loops = [
      clock.every(this.#announceEvery, () => void this.announce()),
      clock.every(Math.max(100, leaseTtl / 3), () => void this.renew()),
      clock.every(fenceTick(leaseTtl), () => this.fenceDue(clock.now())),
    ];
    return {
      [Symbol.dispose]: () => {
        this.#closed = true;
        for (const loop of loops) loop[Symbol.dispose]();
      },
    };
  }

  /** Milliseconds between announcements. */
  get #announceEvery(): number {
    return Math.max(100, this.#o.nodeTtl / 3);
  }

  /**
   * How long free leases go unclaimed once Redis lost its state: every
   * live node announces within an announcement period, finds its key gone
   * and re-asserts its leases within a Redis timeout.
   */
  get grace(): number {
    return this.#announceEvery + this.#o.redisTimeout + 100;
  }

  /**
   * Asks Redis who owns `key`, claiming it when it is free, unless Redis
   * lost its state lately: then established groups get their leases back
   * first, and the lookup waits out the grace.
   *
   * @param key The group key.
   * @returns What Redis said, and when it was asked.
   */
  async lookUp(key: string): Promise<Found> {
    const { clock, store } = this.#o;
    for (let attempt = 1;; attempt++) {
      const asserted = clock.now();
      const claim = asserted >= this.#claimAfter;
      const found = await this.#o.ask(() =>
        attempt === LOOKUP_ATTEMPTS
          ? store.resolve(key)
          : store.resolveGuarded(key, claim)
      );
      if (found === "lost") await this.stateLost();
      else if (found === "free") await this.#until(this.#claimAfter);
      else return { owner: found, asserted };
    }
  }

  /** Says this node is alive; notices a Redis that lost its keys. */
  async announce(): Promise<void> {
    if (this.#closed) return;
    const existed = await this.#o.ask(() => this.#o.store.announce());
    if (existed === undefined) return;
    const first = !this.#announced;
    this.#announced = true;
    if (!existed && !first) await this.stateLost();
  }

  /**
   * Redis lost this node's keys (FLUSHALL, a restart): announce again,
   * re-assert every lease at once, and claim no free lease for a grace.
   *
   * @returns Resolves once the leases were re-asserted (or could not be).
   */
  stateLost(): Promise<void> {
    this.#claimAfter = Math.max(
      this.#claimAfter,
      this.#o.clock.now() + this.grace,
    );
    return this.#recovering ??= (async () => {
      this.reasserted++;
      this.#o.log()?.write("warn", "cluster", {
        what: "redis lost state",
        effect: "leases re-asserted; free keys claimed after a grace",
        graceMs: this.grace,
      });
      await this.#o.ask(() => this.#o.store.announce());
      await this.renew();
    })().finally(() => this.#recovering = undefined);
  }

  /**
   * Renews every owned lease (re-asserting missing ones) in one round trip,
   * and closes the groups whose leases other nodes hold now.
   */
  async renew(): Promise<void> {
    if (this.#closed || this.owned.size === 0) return;
    const keys = this.owned.keys();
    const asserted = this.#o.clock.now();
    const lost = await this.#o.ask(() => this.#o.store.renew(keys));
    if (lost === undefined) return;
    const held = new Set(lost);
    this.owned.renewed(keys.filter((key) => !held.has(key)), asserted);
    const gone = this.owned.lose(lost);
    if (gone.size === 0) return;
    // One pass over the peers and one line, however many groups moved.
    this.lost += gone.size;
    this.#o.log()?.write("warn", "cluster", {
      what: "lost",
      groups: gone.size,
    });
    this.#o.lost(gone);
  }

  /**
   * Fences the groups whose leases were not renewed in time.
   *
   * @param now The clock's time.
   */
  fenceDue(now: number): void {
    const due = this.owned.due(now);
    if (due.size === 0) return;
    const redisUp = this.#o.redisUp();
    this.owned.fence(due, !redisUp);
    this.fenced += due.size;
    this.#o.log()?.write("warn", "cluster", {
      what: "fenced",
      groups: due.size,
      effect: "leases not renewed in time: their peers are closed (1012)",
    });
    // Perhaps still ours in Redis: free it for the node the peers go to.
    if (redisUp) { for (const key of due) this.release(key); }
    this.#o.lost(due);
  }

  /**
   * Deletes a lease in Redis if this node holds it; the key is not claimed
   * again until that is done.
   *
   * @param key The group key.
   */
  release(key: string): void {
    const done = this.#o.store.release(key).catch(() => {
      // Redis went away: the lease expires by itself.
    }).finally(() => {
      if (this.releasing.get(key) === done) this.releasing.delete(key);
    });
    this.releasing.set(key, done);
  }

  /** Resolves once the clock reached `time`, or the keeper stopped. */
  #until(time: number): Promise<void> {
    const clock = this.#o.clock;
    if (clock.now() >= time || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const tick = clock.every(50, () => {
        if (clock.now() < time && !this.#closed) return;
        tick[Symbol.dispose]();
        resolve();
      });
    });
  }
}
