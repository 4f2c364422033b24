/**
 * Authentication of node-to-node pipes in a sigver cluster. When a peer
 * arrives at a node that does not own its group, that node (the edge) opens
 * a WebSocket to the owner on the same path and relays the peer's frames.
 * The pipe's upgrade carries the peer's key and `favored` flag as they
 * arrived (a WebSocket client normalizes the path it sends: `/a/../b`
 * would reach the owner as `/b`), and the client's address and `Origin`
 * (for the owner's limits), and the cluster URL of the node it is meant for,
 * signed with HMAC-SHA256 over the cluster secret and stamped with the time
 * and a random nonce, so that the owner can trust them, nobody else can
 * forge them, and a signed upgrade seen on the network cannot be replayed:
 * not to another node (the owner's URL is signed), not after the signature
 * window, and not to its owner within it (each signature is accepted once).
 *
 * An upgrade that carries {@linkcode PIPE_HEADERS.node} is a pipe: without a
 * valid signature it is refused (403). An upgrade without it is a client's,
 * and any other `x-sigver-*` header it carries is ignored.
 *
 * @module
 */

import { hmacKey } from "./secret.ts";

/** The headers of a pipe's upgrade request. */
export const PIPE_HEADERS = {
  /** The edge node's id: marks the upgrade as a pipe. */
  node: "x-sigver-node",
  /** The peer's group key, base64url of its UTF-8 bytes. */
  key: "x-sigver-key",
  /** `1` when the peer is favored, else `0`. */
  favored: "x-sigver-favored",
  /** When the edge signed, in Unix milliseconds. */
  time: "x-sigver-time",
  /** 16 random bytes, base64url: two pipes signed alike still differ. */
  nonce: "x-sigver-nonce",
  /** The client's address, as the edge saw it. */
  client: "x-sigver-client",
  /** The client's `Origin` header (empty when it sent none). */
  origin: "x-sigver-origin",
  /** The cluster URL of the node the pipe is for (its `--cluster-url`). */
  owner: "x-sigver-owner",
  /** base64url(HMAC-SHA256(secret, the fields above)). */
  signature: "x-sigver-signature",
} as const;

/** How far a pipe's time may be from the owner's clock, in milliseconds. */
export const PIPE_CLOCK_SKEW = 30_000;

/** Options of {@linkcode PipeAuthority}. */
export interface PipeAuthorityOptions {
  /**
   * Most signatures remembered within the signature window (each is
   * accepted once). A pipe that would need more is refused: at the default,
   * more than 3,000 pipes a second for 30 s, past what one node accepts.
   * @default {100000}
   */
  maxSeen?: number;
}

/** What a pipe's upgrade says about the peer and the client behind it. */
export interface PipeClaims {
  /** The edge node's id. */
  node: string;
  /** The peer's group key, as it arrived at the edge. */
  key: string;
  /** Whether the peer is favored. */
  favored: boolean;
  /** The client's address. */
  client: string;
  /** The client's `Origin`, `null` when it sent none. */
  origin: string | null;
  /** The cluster URL of the node the pipe is for. */
  owner: string;
}

/** The outcome of checking a pipe's upgrade. */
export type PipeCheck =
  | { kind: "client" }
  | { kind: "pipe"; claims: PipeClaims }
  | { kind: "refused"; reason: string };

const _encoder = new TextEncoder();

function _message(
  time: string,
  nonce: string,
  claims: PipeClaims,
): Uint8Array<ArrayBuffer> {
  // Every field is base64url or has no line feed (header values cannot).
  return _encoder.encode(
    [
      "sigver-pipe-v4",
      claims.node,
      time,
      nonce,
      _base64url(_encoder.encode(claims.key)),
      claims.favored ? "1" : "0",
      claims.client,
      claims.origin ?? "",
      claims.owner,
    ].join("\n"),
  );
}

function _base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function _unbase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * Signs and checks pipe upgrades with one cluster secret.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PipeAuthority } from "./pipe_auth.ts";
 * const auth = new PipeAuthority("cluster secret");
 * const claims = {
 *   node: "n1",
 *   key: "room/../a",
 *   favored: true,
 *   client: "203.0.113.7",
 *   origin: null,
 *   owner: "ws://10.0.0.2:8000",
 * };
 * const headers = new Headers(await auth.sign(claims, 1000));
 * const check = await auth.check(headers, 1000);
 * assert.deepEqual(check, { kind: "pipe", claims });
 * ```
 */
export class PipeAuthority {
  #key: Promise<CryptoKey>;
  readonly #maxSeen: number;
  /**
   * Signatures accepted, with the time after which they are stale anyway,
   * in the order they were accepted.
   */
  readonly #seen = new Map<string, number>();

  /**
   * Creates the authority.
   *
   * @param secret The cluster secret, the same on every node.
   * @param options The bound of the replay memory.
   * @throws {TypeError} When the secret is empty.
   */
  constructor(secret: string, options: PipeAuthorityOptions = {}) {
    if (secret === "") {
      throw new TypeError("Cannot sign pipes: the cluster secret is empty");
    }
    this.#maxSeen = options.maxSeen ?? 100_000;
    this.#key = hmacKey(secret);
  }

  /**
   * The headers that make an upgrade a signed pipe.
   *
   * @param claims The edge's id, the peer's key and flag, the client's
   * address and Origin, and the cluster URL of the node it is for.
   * @param now The time, in Unix milliseconds.
   * @returns The headers to send with the upgrade.
   */
  async sign(
    claims: PipeClaims,
    now: number,
  ): Promise<Record<string, string>> {
    const time = String(Math.floor(now));
    const nonce = _base64url(crypto.getRandomValues(new Uint8Array(16)));
    const mac = await crypto.subtle.sign(
      "HMAC",
      await this.#key,
      _message(time, nonce, claims),
    );
    return {
      [PIPE_HEADERS.node]: claims.node,
      [PIPE_HEADERS.key]: _base64url(_encoder.encode(claims.key)),
      [PIPE_HEADERS.favored]: claims.favored ? "1" : "0",
      [PIPE_HEADERS.time]: time,
      [PIPE_HEADERS.nonce]: nonce,
      [PIPE_HEADERS.client]: claims.client,
      [PIPE_HEADERS.origin]: claims.origin ?? "",
      [PIPE_HEADERS.owner]: claims.owner,
      [PIPE_HEADERS.signature]: _base64url(new Uint8Array(mac)),
    };
  }

  /**
   * Tells a client's upgrade from a pipe's, and checks a pipe's signature
   * (in constant time), its time, and that it was not accepted before.
   *
   * @param headers The upgrade's headers.
   * @param now The time, in Unix milliseconds.
   * @returns `client` (no pipe header), `pipe` with its claims, or
   * `refused` with why.
   */
  async check(headers: Headers, now: number): Promise<PipeCheck> {
    const node = headers.get(PIPE_HEADERS.node);
    if (node === null) return { kind: "client" };
    const time = headers.get(PIPE_HEADERS.time) ?? "";
    const nonce = headers.get(PIPE_HEADERS.nonce) ?? "";
    const keyBytes = _unbase64url(headers.get(PIPE_HEADERS.key) ?? "!");
    const favored = headers.get(PIPE_HEADERS.favored);
    const client = headers.get(PIPE_HEADERS.client);
    const origin = headers.get(PIPE_HEADERS.origin);
    const owner = headers.get(PIPE_HEADERS.owner);
    const signature = _unbase64url(headers.get(PIPE_HEADERS.signature) ?? "");
    let key: string | undefined;
    try {
      key = keyBytes &&
        new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
          keyBytes,
        );
    } catch {
      key = undefined;
    }
    if (
      node === "" || key === undefined ||
      (favored !== "0" && favored !== "1") || client === null ||
      client === "" || origin === null || !owner || signature === undefined ||
      signature.length !== 32 || !/^\d{1,15}$/.test(time) ||
      !/^[A-Za-z0-9_-]{22}$/.test(nonce)
    ) {
      return { kind: "refused", reason: "the pipe signature is missing" };
    }
    const claims = {
      node,
      key,
      favored: favored === "1",
      client,
      origin: origin === "" ? null : origin,
      owner,
    };
    const ok = await crypto.subtle.verify(
      "HMAC",
      await this.#key,
      signature,
      _message(time, nonce, claims),
    );
    if (!ok) return { kind: "refused", reason: "the pipe signature is wrong" };
    if (Math.abs(now - Number(time)) > PIPE_CLOCK_SKEW) {
      return { kind: "refused", reason: "the pipe signature is stale" };
    }
    // No await from here on: of two copies checked at once, one passes.
    // The signature's bytes, written again: base64url texts that differ in
    // their last character's spare bits are one signature.
    const refused = this.#remember(
      _base64url(signature),
      Number(time) + PIPE_CLOCK_SKEW,
      now,
    );
    return refused === undefined
      ? { kind: "pipe", claims }
      : { kind: "refused", reason: refused };
  }

  /**
   * Remembers a signature until `until`, when it is stale anyway.
   *
   * @returns Why the pipe is refused: the signature was seen already, or
   * the memory is full of signatures that are not stale yet.
   */
  #remember(signature: string, until: number, now: number): string | undefined {
    const seen = this.#seen;
    if (seen.has(signature)) return "the pipe signature was used already";
    // Accepted in about the order they were signed: the stale ones are in
    // front, and any left behind a fresher one are gone within a window.
    for (const [old, stale] of seen) {
      if (stale >= now) break;
      seen.delete(old);
    }
    if (seen.size >= this.#maxSeen) {
      for (const [old, stale] of seen) if (stale < now) seen.delete(old);
    }
    if (seen.size >= this.#maxSeen) {
      return "too many pipes in the signature window";
    }
    seen.set(signature, until);
    return undefined;
  }
}
