/**
 * Messages for ids that are not connected yet: the original server queues
 * them without bound and, about 5 s after a queue began, tells each sender
 * once that its messages expired. Here every queue is bounded, and all of
 * them together too.
 *
 * @module
 */

/** One message waiting for its destination. */
export interface QueuedMessage {
  /** The sender's id. */
  readonly src: string;
  /** The frame to deliver, `src` and `dst` already in it. */
  readonly frame: string;
}

/** The messages waiting for one id of one key. */
export interface Queue {
  /** The key namespace. */
  readonly key: string;
  /** The absent id. */
  readonly dst: string;
  /** The tick the queue began on. */
  readonly born: number;
  /** The messages, oldest first. */
  readonly messages: QueuedMessage[];
}

/** Limits of {@linkcode OfflineQueues}. */
export interface OfflineQueuesOptions {
  /**
   * Messages that may wait for one id.
   * @default {64}
   */
  maxPerId?: number;
  /**
   * Bytes (UTF-16 code units of the frames) that may wait in all.
   * @default {8388608}
   */
  maxBytes?: number;
}

/** Why a message could not be queued. */
export type QueueRefusal = "id_full" | "all_full";

/**
 * The queues of absent ids, in the order they began.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OfflineQueues } from "./queue.ts";
 * const queues = new OfflineQueues({ maxPerId: 1 });
 * assert.equal(queues.add("peerjs", "bob", { src: "a", frame: "{}" }, 0), undefined);
 * assert.equal(queues.add("peerjs", "bob", { src: "a", frame: "{}" }, 0), "id_full");
 * assert.equal(queues.take("peerjs", "bob")?.length, 1);
 * assert.equal(queues.size, 0);
 * ```
 */
export class OfflineQueues {
  readonly #maxPerId: number;
  readonly #maxBytes: number;
  /** By `key + "\n" + id`, in the order they began. */
  readonly #queues = new Map<string, Queue>();
  #messages = 0;
  #bytes = 0;

  /**
   * Creates empty queues.
   *
   * @param options The limits.
   */
  constructor(options: OfflineQueuesOptions = {}) {
    this.#maxPerId = options.maxPerId ?? 64;
    this.#maxBytes = options.maxBytes ?? 8 << 20;
  }

  /** Messages waiting, in all. */
  get size(): number {
    return this.#messages;
  }

  /** Bytes waiting, in all. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Ids that have messages waiting. */
  get queues(): number {
    return this.#queues.size;
  }

  /**
   * Queues a message for an absent id.
   *
   * @param key The key namespace.
   * @param dst The absent id.
   * @param message The message.
   * @param tick The current tick.
   * @returns Why it was not queued, or `undefined` when it was.
   */
  add(
    key: string,
    dst: string,
    message: QueuedMessage,
    tick: number,
  ): QueueRefusal | undefined {
    const name = key + "\n" + dst;
    let queue = this.#queues.get(name);
    if (queue !== undefined && queue.messages.length >= this.#maxPerId) {
      return "id_full";
    }
    if (this.#bytes + message.frame.length > this.#maxBytes) return "all_full";
    if (queue === undefined) {
      queue = { key, dst, born: tick, messages: [] };
      this.#queues.set(name, queue);
    }
    queue.messages.push(message);
    this.#messages++;
    this.#bytes += message.frame.length;
    return undefined;
  }

  /**
   * Takes the messages waiting for an id that connected.
   *
   * @param key The key namespace.
   * @param dst The id.
   * @returns The messages, oldest first, or `undefined` when none wait.
   */
  take(key: string, dst: string): QueuedMessage[] | undefined {
    const name = key + "\n" + dst;
    const queue = this.#queues.get(name);
    if (queue === undefined) return undefined;
    this.#drop(name, queue);
    return queue.messages;
  }

  /**
   * Takes the queues that began `age` ticks ago or earlier.
   *
   * @param tick The current tick.
   * @param age Ticks after which a queue expires.
   * @returns The expired queues, oldest first.
   */
  expire(tick: number, age: number): Queue[] {
    const expired: Queue[] = [];
    // Queues begin in tick order (a taken one begins again at the end).
    for (const [name, queue] of this.#queues) {
      if (tick - queue.born < age) break;
      this.#drop(name, queue);
      expired.push(queue);
    }
    return expired;
  }

  /** Drops every queue. */
  clear(): void {
    this.#queues.clear();
    this.#messages = 0;
    this.#bytes = 0;
  }

  #drop(name: string, queue: Queue): void {
    this.#queues.delete(name);
    this.#messages -= queue.messages.length;
    for (const message of queue.messages) this.#bytes -= message.frame.length;
  }
}
