/**
 * Authentication of node-to-node pipes in a sigver cluster. When a peer
 * arrives at a node that does not own its group, that node (the edge) opens
 * a WebSocket to the owner on the same path and relays the peer's frames.
 * The pipe's upgrade carries the client's address and `Origin` (for the
 * owner's limits), signed with HMAC-SHA256 over the cluster secret and
 * stamped with the time, so that the owner can trust them, and nobody else
 * can forge them.
 *
 * An upgrade that carries {@linkcode PIPE_HEADERS.node} is a pipe: without a
 * valid signature it is refused (403). An upgrade without it is a client's,
 * and any other `x-sigver-*` header it carries is ignored.
 *
 * @module
 */

/** The headers of a pipe's upgrade request. */
export const PIPE_HEADERS = {
  /** The edge node's id: marks the upgrade as a pipe. */
  node: "x-sigver-node",
  /** When the edge signed, in Unix milliseconds. */
  time: "x-sigver-time",
  /** The client's address, as the edge saw it. */
  client: "x-sigver-client",
  /** The client's `Origin` header (empty when it sent none). */
  origin: "x-sigver-origin",
  /** base64url(HMAC-SHA256(secret, the fields above and the path)). */
  signature: "x-sigver-signature",
} as const;

/** How far a pipe's time may be from the owner's clock, in milliseconds. */
export const PIPE_CLOCK_SKEW = 30_000;

/** What a pipe's upgrade says about the client behind it. */
export interface PipeClaims {
  /** The edge node's id. */
  node: string;
  /** The client's address. */
  client: string;
  /** The client's `Origin`, `null` when it sent none. */
  origin: string | null;
}

/** The outcome of checking a pipe's upgrade. */
export type PipeCheck =
  | { kind: "client" }
  | { kind: "pipe"; claims: PipeClaims }
  | { kind: "refused"; reason: string };

const _encoder = new TextEncoder();

function _message(
  path: string,
  time: string,
  claims: PipeClaims,
): Uint8Array<ArrayBuffer> {
  return _encoder.encode(
    [
      "sigver-pipe-v1",
      claims.node,
      time,
      path,
      claims.client,
      claims.origin ?? "",
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
 * const claims = { node: "n1", client: "203.0.113.7", origin: null };
 * const headers = new Headers(await auth.sign("/room?favored", claims, 1000));
 * const check = await auth.check("/room?favored", headers, 1000);
 * assert.deepEqual(check, { kind: "pipe", claims });
 * ```
 */
export class PipeAuthority {
  #key: Promise<CryptoKey>;

  /**
   * Creates the authority.
   *
   * @param secret The cluster secret, the same on every node.
   * @throws {TypeError} When the secret is empty.
   */
  constructor(secret: string) {
    if (secret === "") {
      throw new TypeError("Cannot sign pipes: the cluster secret is empty");
    }
    this.#key = crypto.subtle.importKey(
      "raw",
      _encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
  }

  /**
   * The headers that make an upgrade to `path` a signed pipe.
   *
   * @param path The request target: the peer's path and query.
   * @param claims The edge's id and the client's address and Origin.
   * @param now The time, in Unix milliseconds.
   * @returns The headers to send with the upgrade.
   */
  async sign(
    path: string,
    claims: PipeClaims,
    now: number,
  ): Promise<Record<string, string>> {
    const time = String(Math.floor(now));
    const mac = await crypto.subtle.sign(
      "HMAC",
      await this.#key,
      _message(path, time, claims),
    );
    return {
      [PIPE_HEADERS.node]: claims.node,
      [PIPE_HEADERS.time]: time,
      [PIPE_HEADERS.client]: claims.client,
      [PIPE_HEADERS.origin]: claims.origin ?? "",
      [PIPE_HEADERS.signature]: _base64url(new Uint8Array(mac)),
    };
  }

  /**
   * Tells a client's upgrade from a pipe's, and checks a pipe's signature
   * (in constant time) and time.
   *
   * @param path The request target: the path and query as they arrived.
   * @param headers The upgrade's headers.
   * @param now The time, in Unix milliseconds.
   * @returns `client` (no pipe header), `pipe` with its claims, or
   * `refused` with why.
   */
  async check(path: string, headers: Headers, now: number): Promise<PipeCheck> {
    const node = headers.get(PIPE_HEADERS.node);
    if (node === null) return { kind: "client" };
    const time = headers.get(PIPE_HEADERS.time) ?? "";
    const client = headers.get(PIPE_HEADERS.client);
    const origin = headers.get(PIPE_HEADERS.origin);
    const signature = _unbase64url(headers.get(PIPE_HEADERS.signature) ?? "");
    if (
      node === "" || client === null || client === "" || origin === null ||
      signature === undefined || signature.length !== 32 ||
      !/^\d{1,15}$/.test(time)
    ) {
      return { kind: "refused", reason: "the pipe signature is missing" };
    }
    const claims = { node, client, origin: origin === "" ? null : origin };
    const ok = await crypto.subtle.verify(
      "HMAC",
      await this.#key,
      signature,
      _message(path, time, claims),
    );
    if (!ok) return { kind: "refused", reason: "the pipe signature is wrong" };
    if (Math.abs(now - Number(time)) > PIPE_CLOCK_SKEW) {
      return { kind: "refused", reason: "the pipe signature is stale" };
    }
    return { kind: "pipe", claims };
  }
}
