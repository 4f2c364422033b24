/**
 * Whether a WebSocket upgrade may join: the facts of the request, the
 * server's limits and its counts go in; a refusal with an HTTP status, a
 * metrics label and a short text comes out, or nothing.
 *
 * @module
 */

/** The server's admission policy. */
export interface AdmissionPolicy {
  /** Origins allowed; empty: every origin. */
  readonly allowOrigins: ReadonlySet<string>;
  /** Refuse requests that carry no `Origin` header. */
  readonly requireOrigin: boolean;
  /** Most peers at once (0: no limit). */
  readonly maxPeers: number;
  /** Most peers from one counted address (0: no limit). */
  readonly maxPeersPerAddress: number;
}

/** What admission needs to know about one request and the server now. */
export interface AdmissionFacts {
  /** Whether the server is draining. */
  draining: boolean;
  /** The `Origin` header, `null` when absent. */
  origin: string | null;
  /** Whether the client's address counts against the per-address limit. */
  counted: boolean;
  /** Sockets the server holds now. */
  peers: number;
  /** Sockets the server holds now from the client's address. */
  fromAddress: number;
}

/** Why an upgrade is refused. */
export interface Refusal {
  /** The HTTP status to answer with. */
  status: number;
  /** A label for metrics and logs (`origin`, `capacity`...). */
  reason: string;
  /** A short text for the client: what happened and why. */
  message: string;
}

/**
 * Decides whether an upgrade may go on. The checks run in this order:
 * draining (503), origin (403), capacity (503), per-address limit (429).
 *
 * @param facts The request and the server's counts.
 * @param policy The limits.
 * @returns The refusal, or `undefined` when the upgrade may go on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { admit } from "./admission.ts";
 * const policy = {
 *   allowOrigins: new Set(["https://app.example"]),
 *   requireOrigin: false,
 *   maxPeers: 100,
 *   maxPeersPerAddress: 4,
 * };
 * const facts = {
 *   draining: false,
 *   origin: "https://evil.example",
 *   counted: true,
 *   peers: 0,
 *   fromAddress: 0,
 * };
 * assert.equal(admit(facts, policy)?.status, 403);
 * assert.equal(admit({ ...facts, origin: null }, policy), undefined);
 * ```
 */
export function admit(
  facts: AdmissionFacts,
  policy: AdmissionPolicy,
): Refusal | undefined {
  if (facts.draining) {
    return {
      status: 503,
      reason: "draining",
      message: "Service Unavailable: the server is shutting down",
    };
  }
  const origin = facts.origin;
  if (
    origin === null
      ? policy.requireOrigin
      : policy.allowOrigins.size > 0 && !policy.allowOrigins.has(origin)
  ) {
    return {
      status: 403,
      reason: "origin",
      message: `Forbidden: origin ${origin ?? "(none)"} is not allowed`,
    };
  }
  if (policy.maxPeers > 0 && facts.peers >= policy.maxPeers) {
    return {
      status: 503,
      reason: "capacity",
      message: "Service Unavailable: the server is full",
    };
  }
  if (
    facts.counted && policy.maxPeersPerAddress > 0 &&
    facts.fromAddress >= policy.maxPeersPerAddress
  ) {
    return {
      status: 429,
      reason: "address",
      message: "Too Many Requests: too many peers from this address",
    };
  }
  return undefined;
}
