/**
 * y-webrtc served under its own path (`/y-webrtc` by default): every
 * WebSocket upgrade there is a y-webrtc client, never a Netflux group; a
 * plain GET of the path answers `okay`, as y-webrtc's own server does.
 *
 * @module
 */

import type { ProtocolMount } from "../protocol.ts";
import type { TopicBusFactory } from "./bus.ts";
import { YWebrtcProtocol } from "./protocol.ts";

/**
 * Options of {@linkcode yWebrtcMount}: the handler's y-webrtc options, as
 * `createHandler` takes them.
 */
export interface YWebrtcMountOptions {
  /**
   * The path clients connect to, below the server's base path.
   * @default {"/y-webrtc"}
   */
  yWebrtcPath?: string | false;
  /** Most topics per connection (0: no limit). @default {64} */
  yWebrtcMaxTopics?: number;
  /** Most subscribers per topic (0: no limit). @default {256} */
  yWebrtcMaxSubscribers?: number;
  /** Longest topic, in UTF-16 code units. @default {512} */
  yWebrtcMaxTopicLength?: number;
  /**
   * Milliseconds a client may stay silent (0: forever).
   * @default {60000}
   */
  yWebrtcIdleTimeout?: number;
  /** The cluster's topic bus. */
  yWebrtcBus?: TopicBusFactory;
}

/** The default path of y-webrtc clients. */
export const YWEBRTC_PATH = "/y-webrtc";

/**
 * Mounts y-webrtc.
 *
 * @param options The path and the limits.
 * @param tickMs Milliseconds between two ticks of the server's scheduler.
 * @returns The mount.
 * @throws {TypeError} When the path is not like `/y-webrtc`.
 * @throws {RangeError} When a limit is not a non-negative integer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { yWebrtcMount } from "./mount.ts";
 * const mount = yWebrtcMount({ yWebrtcPath: "/signal/yjs" });
 * assert.equal(mount.path, "signal/yjs");
 * const answer = await mount.http!(new Request("http://localhost/signal/yjs"), "", undefined);
 * assert.equal(await answer!.text(), "okay");
 * ```
 */
export function yWebrtcMount(
  options: YWebrtcMountOptions = {},
  tickMs = 100,
): ProtocolMount {
  const path = options.yWebrtcPath || YWEBRTC_PATH;
  if (typeof path !== "string" || !/^(\/[^/?#\s]+)+$/.test(path)) {
    throw new TypeError(
      `Cannot use yWebrtcPath: ${
        JSON.stringify(path)
      } is not a path like "/y-webrtc" (a leading /, no trailing /, no ? or #)`,
    );
  }
  const idle = options.yWebrtcIdleTimeout ?? 60_000;
  if (typeof idle !== "number" || !(idle >= 0) || !Number.isFinite(idle)) {
    throw new RangeError(
      `Cannot use yWebrtcIdleTimeout: ${idle} is not a non-negative number`,
    );
  }
  const protocol = new YWebrtcProtocol({
    maxTopicsPerPeer: options.yWebrtcMaxTopics,
    maxSubscribersPerTopic: options.yWebrtcMaxSubscribers,
    maxTopicLength: options.yWebrtcMaxTopicLength,
    idleTicks: idle === 0 ? 0 : Math.max(1, Math.ceil(idle / tickMs)),
    bus: options.yWebrtcBus,
  });
  return {
    protocol,
    path: path.slice(1),
    prefix: false,
    http: (request) =>
      request.method === "GET" || request.method === "HEAD"
        ? new Response(request.method === "GET" ? "okay" : null, {
          headers: { "content-type": "text/plain" },
        })
        : undefined,
  };
}
