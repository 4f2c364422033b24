/**
 * Who subscribes to what: topics by name, each with its subscribers. A
 * topic exists while it has a subscriber; the last one to leave frees it.
 *
 * @module
 */

/**
 * Topics and their subscribers.
 *
 * @typeParam S A subscriber.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Topics } from "./topics.ts";
 * const topics = new Topics<string>();
 * assert.equal(topics.add("room", "alice"), true);
 * assert.equal(topics.add("room", "alice"), false);
 * assert.deepEqual([...topics.subscribers("room") ?? []], ["alice"]);
 * topics.remove("room", "alice");
 * assert.equal(topics.size, 0);
 * ```
 */
export class Topics<S> {
  readonly #topics = new Map<string, Set<S>>();
  #subscriptions = 0;

  /** Topics with at least one subscriber. */
  get size(): number {
    return this.#topics.size;
  }

  /** Subscriptions, over every topic. */
  get subscriptions(): number {
    return this.#subscriptions;
  }

  /**
   * A topic's subscribers.
   *
   * @param topic The topic.
   * @returns Its subscribers, or `undefined` when it has none.
   */
  subscribers(topic: string): ReadonlySet<S> | undefined {
    return this.#topics.get(topic);
  }

  /**
   * How many subscribe to a topic.
   *
   * @param topic The topic.
   * @returns The count (0 for a topic that does not exist).
   */
  count(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  /**
   * Subscribes to a topic, which exists from then on.
   *
   * @param topic The topic.
   * @param subscriber Who subscribes.
   * @returns Whether it is new to the topic.
   */
  add(topic: string, subscriber: S): boolean {
    let subscribers = this.#topics.get(topic);
    if (subscribers === undefined) {
      this.#topics.set(topic, subscribers = new Set());
    } else if (subscribers.has(subscriber)) return false;
    subscribers.add(subscriber);
    this.#subscriptions++;
    return true;
  }

  /**
   * Unsubscribes from a topic; a topic left without subscribers is freed.
   *
   * @param topic The topic.
   * @param subscriber Who leaves.
   * @returns Whether it was subscribed.
   */
  remove(topic: string, subscriber: S): boolean {
    const subscribers = this.#topics.get(topic);
    if (subscribers === undefined || !subscribers.delete(subscriber)) {
      return false;
    }
    this.#subscriptions--;
    if (subscribers.size === 0) this.#topics.delete(topic);
    return true;
  }
}
