/**
 * The protocols served beside Netflux, each under its own path: a protocol
 * is added here, as one line, with its files beside its siblings
 * (`lib/<protocol>/` for its pure state). Netflux takes every path no
 * mount claims.
 *
 * @module
 */

import type { ProtocolMount } from "../lib/protocol.ts";
import { yWebrtcMount } from "../lib/ywebrtc/mount.ts";
import { peerjsMount, PeerjsProtocol } from "../lib/peerjs/protocol.ts";
import type { HandlerConfig, HandlerOptions } from "./options.ts";

/**
 * The protocols mounted beside Netflux, as the options say.
 *
 * @param _options The handler's options.
 * @param _config The resolved configuration.
 * @returns The mounts, in the order their paths are matched.
 */
export function protocolMounts(
  options: HandlerOptions,
  config: HandlerConfig,
): ProtocolMount[] {
  const mounts: ProtocolMount[] = [];
  // y-webrtc mount
  if (options.yWebrtcPath !== false) {
    mounts.push(yWebrtcMount(options, config.tickMs));
  }
  // PeerJS mount
  if (options.peerjsPath !== false) {
    mounts.push(peerjsMount(
      options.peerjsPath ?? "/peerjs",
      new PeerjsProtocol({
        keys: [options.peerjsKey ?? "peerjs"].flat(),
        discovery: options.peerjsDiscovery,
        allowOrigins: config.admission.allowOrigins,
        tickMs: config.tickMs,
        aliveTimeout: options.peerjsAliveTimeout,
        expireTimeout: options.peerjsExpireTimeout,
        maxIds: options.peerjsMaxIds,
        maxQueuedPerId: options.peerjsMaxQueued,
        maxQueuedBytes: options.peerjsMaxQueuedBytes,
        bus: options.peerjsBus,
      }),
    ));
  }
  void options, config;
  return mounts;
}
