/**
 * Reads one frame from a request's body without ever holding more than a
 * bound: the fallback transport's POSTs, on the node that holds the session
 * or on the node that passes the request on to it.
 *
 * @module
 */

/** The outcome of reading a POSTed frame. */
export type PostedFrame =
  | { ok: true; frame: ArrayBuffer }
  | { ok: false; tooBig: true };

/**
 * Reads a POST's body, one frame, never more than `max` bytes of it: a
 * longer body (or a `Content-Length` over `max`) is refused unread.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readFrame } from "./body.ts";
 * const post = (body: string) =>
 *   new Request("http://localhost/room", { method: "POST", body });
 * assert.deepEqual(await readFrame(post("abcd"), 3), { ok: false, tooBig: true });
 * const read = await readFrame(post("abc"), 3);
 * assert.equal(read.ok && read.frame.byteLength, 3);
 * ```
 *
 * @param request The POST.
 * @param max Most bytes a frame may have.
 * @returns The frame, or that it is too big.
 */
export async function readFrame(
  request: Request,
  max: number,
): Promise<PostedFrame> {
  const declared = request.headers.get("content-length");
  // Only a decimal length is one (`-1`, `+1`, `0x1` and `""` are not).
  const decimal = declared !== null && /^[0-9]{1,15}$/.test(declared);
  if (decimal && Number(declared) > max) {
    await request.body?.cancel();
    return { ok: false, tooBig: true };
  }
  // A length the server checked against the body: one read, no chunks.
  if (decimal) return { ok: true, frame: await request.arrayBuffer() };
  const body = request.body;
  if (body === null) return { ok: true, frame: new ArrayBuffer(0) };
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    // Leaving the loop cancels the body.
    if (size > max) return { ok: false, tooBig: true };
    chunks.push(chunk);
  }
  const frame = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    frame.set(chunk, at);
    at += chunk.length;
  }
  return { ok: true, frame: frame.buffer };
}
