/**
 * What the Redis buses of a cluster (`topic_bus.ts`, `peerjs_bus.ts`) do
 * alike with the messages they read off Redis, which are not trusted:
 *
 * - {@linkcode MessageSigner} signs a channel and a payload with the
 *   cluster secret and checks such a signature. A message on the wire is
 *   `<base64url HMAC-SHA256(secret, domain "\n" channel "\n" rest)>.<rest>`;
 *   the domain (`sigver-yw-v1`, `sigver-pj-v1`) keeps one bus's messages
 *   from passing as another's.
 * - {@linkcode ReplayGuard} remembers the last sequence number of each
 *   node, so that a message recorded off Redis and pushed again is dropped.
 * - {@linkcode RejectCounter} counts dropped messages by why, and logs at
 *   most one warning every ten seconds about them.
 * - {@linkcode busMetrics} puts around a bus's own metric families the two
 *   every bus has: its subscription up or not, and its dropped messages.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MessageSigner, ReplayGuard } from "./signed_messages.ts";
 * const signer = new MessageSigner("a cluster secret of 32 bytes....", "demo");
 * const payload = await signer.sign("channel", "rest");
 * const [signature, rest] = [payload.slice(0, 43), payload.slice(44)];
 * assert.equal(await signer.verify("channel", signature, rest), true);
 * assert.equal(await signer.verify("other", signature, rest), false);
 * const guard = new ReplayGuard();
 * assert.equal(guard.admit("node", 1), true);
 * assert.equal(guard.admit("node", 1), false);
 * ```
 *
 * @module
 */

import type { Logger } from "../lib/log.ts";
import type { Labels, MetricFamily, Sample } from "../lib/metrics.ts";
import { hmacKey } from "../lib/secret.ts";

const _ENCODER = new TextEncoder();

/**
 * Bytes as base64url, without padding.
 *
 * @param bytes The bytes.
 * @returns Their base64url text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { base64url } from "./signed_messages.ts";
 * assert.equal(base64url(new Uint8Array([251, 255]).buffer), "-_8");
 * ```
 */
export function base64url(bytes: ArrayBuffer): string {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function _unbase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  try {
    const s = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * Signs and checks the messages of one bus with the cluster secret
 * (HMAC-SHA256 over the domain, the channel and the rest of the message).
 */
export class MessageSigner {
  readonly #domain: string;
  readonly #key: Promise<CryptoKey>;

  /**
   * Makes a signer; the key is imported in the background.
   *
   * @param secret The cluster secret.
   * @param domain What the signatures are for, e.g. `sigver-yw-v1`.
   * @throws {TypeError} When the secret is empty.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MessageSigner } from "./signed_messages.ts";
   * assert.throws(() => new MessageSigner("", "demo"), TypeError);
   * ```
   */
  constructor(secret: string, domain: string) {
    if (typeof secret !== "string" || secret === "") {
      throw new TypeError("Cannot sign bus messages: the secret is empty");
    }
    this.#domain = domain;
    this.#key = hmacKey(secret);
  }

  /**
   * The HMAC of a text with the cluster secret, with no domain added: for
   * names the bus derives (keys, token hashes) rather than messages.
   *
   * @param text The text, as UTF-8.
   * @returns The 32 bytes of the HMAC.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MessageSigner } from "./signed_messages.ts";
   * const signer = new MessageSigner("a cluster secret of 32 bytes....", "demo");
   * assert.equal((await signer.mac("name")).byteLength, 32);
   * ```
   */
  async mac(text: string): Promise<ArrayBuffer> {
    return await crypto.subtle.sign(
      "HMAC",
      await this.#key,
      _ENCODER.encode(text),
    );
  }

  /**
   * Signs a message for a channel.
   *
   * @param channel The Redis channel it is published on.
   * @param rest The message after its signature.
   * @returns The message as published: `<signature>.<rest>`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MessageSigner } from "./signed_messages.ts";
   * const signer = new MessageSigner("a cluster secret of 32 bytes....", "demo");
   * assert.match(await signer.sign("channel", "rest"), /^[\w-]{43}\.rest$/);
   * ```
   */
  async sign(channel: string, rest: string): Promise<string> {
    const signature = await crypto.subtle.sign(
      "HMAC",
      await this.#key,
      this.#signed(channel, rest),
    );
    return `${base64url(signature)}.${rest}`;
  }

  /**
   * Checks the signature of a message read off a channel.
   *
   * @param channel The Redis channel it came on.
   * @param signature Its signature, as base64url.
   * @param rest The message after its signature.
   * @returns Whether the signature is this secret's, for this channel.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MessageSigner } from "./signed_messages.ts";
   * const signer = new MessageSigner("a cluster secret of 32 bytes....", "demo");
   * const signature = (await signer.sign("channel", "rest")).slice(0, 43);
   * assert.equal(await signer.verify("channel", signature, "rest"), true);
   * assert.equal(await signer.verify("channel", signature, "rest!"), false);
   * ```
   */
  async verify(
    channel: string,
    signature: string,
    rest: string,
  ): Promise<boolean> {
    const bytes = _unbase64url(signature);
    if (bytes === undefined) return false;
    return await crypto.subtle.verify(
      "HMAC",
      await this.#key,
      bytes,
      this.#signed(channel, rest),
    );
  }

  #signed(channel: string, rest: string): Uint8Array<ArrayBuffer> {
    return _ENCODER.encode(`${this.#domain}\n${channel}\n${rest}`);
  }
}

/**
 * The last sequence number of each node heard from, for the most recently
 * heard nodes: a message whose number is not above its node's last is a
 * replay.
 */
export class ReplayGuard {
  readonly #maxNodes: number;
  /** Oldest heard first. */
  readonly #last = new Map<string, number>();

  /**
   * Makes an empty guard.
   *
   * @param maxNodes Nodes remembered at most; the one heard from longest
   * ago is forgotten first.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ReplayGuard } from "./signed_messages.ts";
   * const guard = new ReplayGuard(1);
   * guard.admit("a", 5);
   * guard.admit("b", 1);
   * assert.equal(guard.admit("a", 1), true);
   * ```
   */
  constructor(maxNodes = 1024) {
    this.#maxNodes = maxNodes;
  }

  /**
   * Records a node's sequence number, unless it is a replay.
   *
   * @param node The node that signed the message.
   * @param seq The message's sequence number.
   * @returns Whether it is above the node's last (and now its last).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ReplayGuard } from "./signed_messages.ts";
   * const guard = new ReplayGuard();
   * assert.equal(guard.admit("a", 2), true);
   * assert.equal(guard.admit("a", 2), false);
   * assert.equal(guard.admit("a", 3), true);
   * ```
   */
  admit(node: string, seq: number): boolean {
    if (seq <= (this.#last.get(node) ?? 0)) return false;
    this.#last.delete(node);
    this.#last.set(node, seq);
    if (this.#last.size > this.#maxNodes) {
      this.#last.delete(this.#last.keys().next().value!);
    }
    return true;
  }
}

/** Options of a {@linkcode RejectCounter}. */
export interface RejectCounterOptions {
  /** The event of the warning, e.g. `ywebrtc_bus_rejected`. */
  event: string;
  /** Where the warning goes; none: only counted. */
  log?: Logger;
  /**
   * Fewest milliseconds between two warnings.
   * @default {10000}
   */
  interval?: number;
  /**
   * The clock, in milliseconds.
   * @default {performance.now}
   */
  now?: () => number;
}

/** Messages dropped by a bus, counted by why, with a throttled warning. */
export class RejectCounter<R extends string> {
  readonly #counts: Record<R, number>;
  readonly #event: string;
  readonly #log: Logger | undefined;
  readonly #interval: number;
  readonly #now: () => number;
  #loggedAt = -Infinity;

  /**
   * Makes a counter at zero for every reason.
   *
   * @param reasons The reasons, in the order of the counts.
   * @param options The warning's event, the logger, the interval, the clock.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RejectCounter } from "./signed_messages.ts";
   * const rejects = new RejectCounter(["forged"], { event: "demo" });
   * assert.deepEqual(rejects.counts(), { forged: 0 });
   * ```
   */
  constructor(reasons: readonly R[], options: RejectCounterOptions) {
    this.#counts = Object.fromEntries(reasons.map((r) => [r, 0])) as Record<
      R,
      number
    >;
    this.#event = options.event;
    this.#log = options.log;
    this.#interval = options.interval ?? 10_000;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Counts a dropped message, and warns with the reason and its total
   * unless a warning went out less than the interval ago.
   *
   * @param reason Why it was dropped.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RejectCounter } from "./signed_messages.ts";
   * const rejects = new RejectCounter(["forged"], { event: "demo" });
   * rejects.record("forged");
   * assert.deepEqual(rejects.counts(), { forged: 1 });
   * ```
   */
  record(reason: R): void {
    const total = ++this.#counts[reason];
    const now = this.#now();
    if (now - this.#loggedAt < this.#interval) return;
    this.#loggedAt = now;
    this.#log?.write("warn", this.#event, { reason, total });
  }

  /**
   * The counts, a snapshot.
   *
   * @returns A copy of the count of each reason.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RejectCounter } from "./signed_messages.ts";
   * const rejects = new RejectCounter(["a", "b"], { event: "demo" });
   * assert.deepEqual(rejects.counts(), { a: 0, b: 0 });
   * ```
   */
  counts(): Record<R, number> {
    return { ...this.#counts };
  }

  /**
   * The counts as metric samples, one a reason.
   *
   * @param labels The labels of every sample; `reason` is added.
   * @returns The samples.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RejectCounter } from "./signed_messages.ts";
   * const rejects = new RejectCounter(["forged"], { event: "demo" });
   * assert.deepEqual(rejects.samples({ protocol: "x" }), [
   *   [{ protocol: "x", reason: "forged" }, 0],
   * ]);
   * ```
   */
  samples(labels: Labels): Sample[] {
    return Object.entries<number>(this.#counts).map((
      [reason, n],
    ) => [{ ...labels, reason }, n] as const);
  }
}

/** Options of {@linkcode busMetrics}. */
export interface BusMetricsOptions {
  /** The bus in metric names: `sigver_<metric>_bus_up`, `sigver_<metric>_bus_rejected_total`. */
  metric: string;
  /** The bus in help texts, e.g. `PeerJS`. */
  title: string;
  /** The labels of every sample, e.g. `{ protocol: "peerjs" }`. */
  labels: Labels;
  /** Whether the bus's Redis subscription is up. */
  up: boolean;
  /** The bus's dropped messages. */
  rejects: RejectCounter<string>;
}

/**
 * A bus's metric families: `sigver_<metric>_bus_up` (a gauge), the bus's
 * own, then `sigver_<metric>_bus_rejected_total` by reason.
 *
 * @param own The families of the bus alone.
 * @param options The bus's names, labels, state and counter.
 * @returns The families.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { busMetrics, RejectCounter } from "./signed_messages.ts";
 * const rejects = new RejectCounter(["forged"], { event: "demo" });
 * const families = busMetrics([], {
 *   metric: "demo",
 *   title: "demo",
 *   labels: {},
 *   up: true,
 *   rejects,
 * });
 * assert.deepEqual(families.map((f) => f.name), [
 *   "sigver_demo_bus_up",
 *   "sigver_demo_bus_rejected_total",
 * ]);
 * ```
 */
export function busMetrics(
  own: readonly MetricFamily[],
  options: BusMetricsOptions,
): MetricFamily[] {
  const { metric, title, labels } = options;
  return [
    {
      name: `sigver_${metric}_bus_up`,
      help: `Whether the ${title} bus's Redis subscription is up (1) or not.`,
      type: "gauge",
      samples: [[labels, options.up ? 1 : 0]],
    },
    ...own,
    {
      name: `sigver_${metric}_bus_rejected_total`,
      help: `Messages from Redis dropped by the ${title} bus, by why.`,
      type: "counter",
      samples: options.rejects.samples(labels),
    },
  ];
}
