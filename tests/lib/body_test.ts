// Unit tests of lib/body.ts: readFrame reads one POSTed frame and never
// more than its bound. Bodies are streams the tests make, so that each test
// can tell what was read of a body and whether it was cancelled.

import assert from "node:assert/strict";
import { readFrame } from "../../lib/body.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

/** A body made of `chunks`, recording how far it was read and its cancel. */
function trackedBody(chunks: number[][]) {
  const state = { pulls: 0, cancelled: false };
  let next = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      state.pulls++;
      if (next < chunks.length) {
        controller.enqueue(new Uint8Array(chunks[next++]));
      } else controller.close();
    },
    cancel() {
      state.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { body, state };
}

function post(
  body: BodyInit | null,
  headers: Record<string, string> = {},
): Request {
  return new Request("http://127.0.0.1/room", {
    method: "POST",
    body,
    headers,
  });
}

/** The frame read, as plain numbers; fails when it was refused. */
async function accepted(request: Request, max: number): Promise<number[]> {
  const read = await readFrame(request, max);
  assert.equal(read.ok, true, "the frame was refused");
  return read.ok ? [...new Uint8Array(read.frame)] : [];
}

Deno.test("readFrame refuses a declared Content-Length over max without reading the body, and cancels it", async () => {
  const { body, state } = trackedBody([[1, 2, 3, 4]]);
  const read = await readFrame(post(body, { "content-length": "4" }), 3);
  assert.deepEqual(read, { ok: false, tooBig: true });
  assert.equal(state.pulls, 0, "the body was read");
  assert.equal(state.cancelled, true, "the body was left open");
});

Deno.test("readFrame accepts a declared Content-Length of exactly max", async () => {
  const { body } = trackedBody([[1, 2], [3]]);
  assert.deepEqual(
    await accepted(post(body, { "content-length": "3" }), 3),
    [1, 2, 3],
  );
});

Deno.test("readFrame refuses a body without Content-Length once its chunks pass max, and stops reading", async () => {
  const { body, state } = trackedBody([[1, 2], [3, 4], [5, 6], [7, 8]]);
  const read = await readFrame(post(body), 3);
  assert.deepEqual(read, { ok: false, tooBig: true });
  // The second chunk passed the bound: nothing after it was asked for.
  assert.equal(state.pulls, 2);
  assert.equal(state.cancelled, true, "the body was left open");
});

Deno.test("readFrame joins the chunks of a body without Content-Length of exactly max", async () => {
  const { body, state } = trackedBody([[1], [2, 3], [], [4, 5]]);
  assert.deepEqual(await accepted(post(body), 5), [1, 2, 3, 4, 5]);
  assert.equal(state.cancelled, false);
});

Deno.test("readFrame reads a request with no body as an empty frame", async () => {
  assert.deepEqual(await accepted(post(null), 3), []);
  assert.deepEqual(await accepted(post(null), 0), []);
});

Deno.test("readFrame reads an empty body as an empty frame, with or without Content-Length", async () => {
  assert.deepEqual(await accepted(post(""), 0), []);
  assert.deepEqual(await accepted(post("", { "content-length": "0" }), 0), []);
  const { body } = trackedBody([]);
  assert.deepEqual(await accepted(post(body), 0), []);
});

Deno.test("readFrame bounds a body whose Content-Length is no integer as one without it", async (t) => {
  for (const declared of ["abc", "1.5", "4x"]) {
    await t.step(`Content-Length ${JSON.stringify(declared)}`, async () => {
      const over = trackedBody([[1, 2], [3, 4]]);
      assert.deepEqual(
        await readFrame(post(over.body, { "content-length": declared }), 3),
        { ok: false, tooBig: true },
      );
      const within = trackedBody([[1, 2], [3]]);
      assert.deepEqual(
        await accepted(post(within.body, { "content-length": declared }), 3),
        [1, 2, 3],
      );
    });
  }
});

// A Content-Length that is not a decimal length ("-1", "", "+1", "0x1")
// is no length: the body is read in chunks, bounded. Deno.serve refuses such
// a header, but a Request made in-process (an embedder's) reaches here.
Deno.test({
  name:
    "readFrame does not read past max when Content-Length is not a decimal length",
  fn: async (t) => {
    for (const declared of ["-1", "", "+1", "0x1"]) {
      await t.step(`Content-Length ${JSON.stringify(declared)}`, async () => {
        const { body } = trackedBody([[1, 2], [3, 4], [5, 6]]);
        assert.deepEqual(
          await readFrame(post(body, { "content-length": declared }), 3),
          { ok: false, tooBig: true },
        );
      });
    }
  },
});
