/**
 * What a {@linkcode SigverClient} drives, a `WebSocket` or the fallback's
 * `SseSocket`, and how one is opened: within a timeout, and abortable.
 *
 * @module
 */

import { closeInfo, SigverCloseError } from "./close.ts";

/** What the client drives: a `WebSocket`, or the fallback's `SseSocket`. */
export interface Channel {
  readonly url: string;
  readonly readyState: number;
  binaryType: BinaryType;
  onopen: ((event: Event) => unknown) | null;
  onmessage: ((event: MessageEvent) => unknown) | null;
  onclose: ((event: CloseEvent) => unknown) | null;
  onerror: ((event: Event) => unknown) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Options of {@linkcode openChannel}. */
export interface OpenChannelOptions<T> {
  /** Aborting it before the channel opens closes it and rejects. */
  signal: AbortSignal | undefined;
  /**
   * Milliseconds to wait for the channel to open; `Infinity` waits for
   * its own open or close.
   */
  timeout: number;
  /**
   * Takes the open channel, in its `open` event: whatever must listen to
   * it does so before any message can arrive.
   */
  onOpen: (channel: Channel) => T;
}

/**
 * Creates a channel and waits for it to open.
 *
 * @param create Makes the channel (a `WebSocket` or an `SseSocket`).
 * @param options The signal, the timeout, and what takes the open channel.
 * @returns What `onOpen` returned.
 * @throws {SigverCloseError} When the channel closes before it opens, or
 * is not open within the timeout (code 1006).
 */
export function openChannel<T>(
  create: () => Channel,
  options: OpenChannelOptions<T>,
): Promise<T> {
  const { signal, timeout, onOpen } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  let socket: Channel;
  try {
    socket = create();
  } catch (error) {
    return Promise.reject(error);
  }
  socket.binaryType = "arraybuffer";
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const giveUp = (error: unknown) => {
      done();
      socket.onopen = socket.onclose = null;
      socket.close(1000, "Aborted");
      reject(error);
    };
    const onAbort = () => giveUp(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeout !== Infinity) {
      timer = setTimeout(() =>
        giveUp(
          new SigverCloseError(
            closeInfo(1006, `Not open after ${timeout} ms`, false),
            "open",
          ),
        ), timeout);
    }
    socket.onerror = () => {};
    socket.onclose = (event) => {
      done();
      reject(
        new SigverCloseError(
          closeInfo(event.code, event.reason, event.wasClean),
          "open",
        ),
      );
    };
    socket.onopen = () => {
      done();
      socket.onopen = null;
      resolve(onOpen(socket));
    };
  });
}
