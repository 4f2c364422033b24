/**
 * Netflux's protocol, as the server drives it (see `lib/protocol.ts`): a
 * peer joins the group its URL path names, and the {@linkcode Hub} relays
 * between the group's members and joining peers. Frames are binary.
 *
 * @module
 */

import { ERR_KEY, ERR_URL } from "../codes.ts";
import type { PeerRequest, PeerTransport, Protocol } from "../protocol.ts";
import { checkKey } from "../url.ts";
import type { Hub, Peer } from "./hub.ts";

/**
 * The Netflux protocol over one {@linkcode Hub}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub } from "./hub.ts";
 * import { NetfluxProtocol } from "./protocol.ts";
 * const netflux = new NetfluxProtocol(new Hub());
 * const closed: number[] = [];
 * const transport = { send() {}, close: (code: number) => closed.push(code) };
 * assert.equal(netflux.open(transport, { key: "", favored: false }), undefined);
 * assert.deepEqual(closed, [4741]);
 * assert.equal(netflux.open(transport, { key: "room", favored: false })?.key, "room");
 * ```
 */
export class NetfluxProtocol implements Protocol<Peer> {
  /** The protocol's label. */
  readonly name = "netflux";
  /** Netflux frames are binary. */
  readonly text = false;
  /** The group state. */
  readonly hub: Hub;

  /**
   * Serves Netflux peers on `hub`.
   *
   * @param hub The group state.
   */
  constructor(hub: Hub) {
    this.hub = hub;
  }

  /** Live peers. */
  get size(): number {
    return this.hub.size;
  }

  /**
   * Joins the peer to the group its path names, or closes it: 4745 for a
   * URL that could not be parsed, 4741 for a key out of bounds.
   *
   * @param transport How to reach the peer.
   * @param request The key and the favored flag.
   * @returns The peer, or `undefined` when it was closed.
   */
  open(transport: PeerTransport, request: PeerRequest): Peer | undefined {
    const key = request.key;
    if (key === undefined) {
      transport.close(ERR_URL, "Cannot join: the request URL cannot be parsed");
      return undefined;
    }
    const problem = checkKey(key);
    if (problem !== undefined) {
      transport.close(ERR_KEY, problem);
      return undefined;
    }
    return this.hub.open(transport, key, request.favored);
  }

  /**
   * Hands a binary frame to the hub.
   *
   * @param peer The sender.
   * @param frame The frame's bytes.
   */
  receive(peer: Peer, frame: Uint8Array | string): void {
    this.hub.receive(peer, frame as Uint8Array);
  }

  /**
   * Closes a peer: its bound peers get "gone" notices.
   *
   * @param peer The peer.
   * @param code The close code.
   * @param reason The close reason.
   */
  close(peer: Peer, code: number, reason: string): void {
    this.hub.close(peer, code, reason);
  }

  /**
   * Forgets a peer whose transport closed.
   *
   * @param peer The peer.
   */
  forget(peer: Peer): void {
    this.hub.forget(peer);
  }

  /** Advances the heartbeat wheel. */
  tick(): void {
    this.hub.tick();
  }
}
