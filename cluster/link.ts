/**
 * A peer's link to the node that owns its group: a pipe (`pipe.ts`) opened
 * before the peer's answer, then handed to the peer's connection on this
 * node (the edge). Frames go through verbatim both ways; the owner keeps
 * every protocol rule (its heartbeats pass end to end). Close codes and
 * reasons are mirrored; a pipe that drops closes the peer with 1012, so
 * that it reconnects and its group forms again on a live node.
 *
 * @module
 */

import { CLOSE_SERVICE_RESTART } from "../lib/codes.ts";
import type { Remote, RemoteEvents } from "../deno/placement.ts";
import {
  Pipe,
  type PipeEnd,
  type PipeEvents,
  type PipeOptions,
} from "./pipe.ts";

/** Close codes a server may put on the wire (RFC 6455 7.4). */
function _sendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * Opens a pipe and waits until it is open or has failed.
 *
 * @param url The owner's URL for the peer's path.
 * @param headers The signed pipe headers.
 * @param options Timeout and bounds.
 * @param released Called once when the link is released.
 * @returns The open link, or how the pipe failed.
 */
export function openLink(
  url: string,
  headers: Record<string, string>,
  options: PipeOptions,
  released: () => void,
): Promise<{ link: PipeLink } | { end: PipeEnd }> {
  const link = new PipeLink(released);
  link.pipe = new Pipe(url, headers, link, options);
  return link.settled;
}

/**
 * A pipe as a peer's {@linkcode Remote}. Until the peer's connection takes
 * it, it holds what the owner sends (nothing in practice: the owner speaks
 * only when spoken to) and how it ended, if it ends first.
 */
export class PipeLink implements Remote, PipeEvents {
  /** The pipe. */
  pipe: Pipe | undefined;
  /** Settles once the pipe opened or failed. */
  readonly settled: Promise<{ link: PipeLink } | { end: PipeEnd }>;
  #resolve: (value: { link: PipeLink } | { end: PipeEnd }) => void;
  #target: RemoteEvents | undefined;
  #frames: (Uint8Array | string)[] = [];
  #end: PipeEnd | undefined;
  #released: (() => void) | undefined;

  /**
   * Creates the link of a pipe about to open.
   *
   * @param released Called once when the link is released.
   */
  constructor(released: () => void) {
    const { promise, resolve } = Promise.withResolvers<
      { link: PipeLink } | { end: PipeEnd }
    >();
    this.settled = promise;
    this.#resolve = resolve;
    this.#released = released;
  }

  attach(target: RemoteEvents): void {
    this.#target = target;
    for (const frame of this.#frames) target.onRemoteFrame(frame);
    this.#frames = [];
    if (this.#end !== undefined) _end(target, this.#end);
  }

  send(frame: ArrayBuffer | string): boolean {
    return this.pipe!.send(frame);
  }

  close(code: number, reason: string): void {
    this.pipe?.close(code, reason);
  }

  release(): void {
    const released = this.#released;
    this.#released = undefined;
    released?.();
  }

  onPipeOpen(): void {
    this.#resolve({ link: this });
  }

  onPipeFrame(data: Uint8Array | string): void {
    if (this.#target !== undefined) this.#target.onRemoteFrame(data);
    // Kept for later: a copy of the pipe's view.
    else this.#frames.push(typeof data === "string" ? data : data.slice());
  }

  onPipeEnd(end: PipeEnd): void {
    this.#resolve({ end });
    if (this.#target === undefined) this.#end = end;
    else _end(this.#target, end);
  }
}

/** Tells a peer's connection how its pipe ended. */
function _end(target: RemoteEvents, end: PipeEnd): void {
  if (end.kind === "closed" && _sendable(end.code)) {
    target.onRemoteEnd(end.code, end.reason);
  } else {
    target.onRemoteEnd(
      CLOSE_SERVICE_RESTART,
      "Cannot relay: the server node of this group went away; reconnect",
    );
  }
}
