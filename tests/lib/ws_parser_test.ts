// Unit tests of lib/ws_parser.ts, the parser of a WebSocket server's byte
// stream that the cluster's pipes read with. No sockets: bytes in, frames
// out.

import assert from "node:assert/strict";
import {
  closePayload,
  encodeFrame,
  encodeFrameHead,
  OP_BINARY,
  OP_CLOSE,
  OP_CONT,
  OP_PING,
  OP_TEXT,
  parseClose,
} from "../../lib/ws_frame.ts";
import { FrameParser, MAX_FRAME } from "../../lib/ws_parser.ts";
import { encodeFrame as encodeDevFrame } from "../../dev/bad_frames.ts";
import { KEY, pattern } from "./_ws.ts";

/** A parser that records frames (copied) and errors. */
function collect(maxFrame?: number) {
  const frames: { opcode: number; payload: Uint8Array }[] = [];
  const errors: string[] = [];
  const parser = new FrameParser({
    frame: (opcode, payload) =>
      frames.push({ opcode, payload: payload.slice() }),
    error: (message) => errors.push(message),
  }, maxFrame);
  return { frames, errors, parser };
}

Deno.test("an unmasked frame parses back to its opcode and payload at each length boundary", async (t) => {
  for (const n of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
    await t.step(`${n} bytes`, () => {
      const payload = pattern(n);
      const { frames, errors, parser } = collect();
      parser.feed(encodeFrame(OP_BINARY, payload, { mask: false }));
      assert.deepEqual(errors, []);
      assert.equal(frames.length, 1);
      assert.equal(frames[0].opcode, OP_BINARY);
      assert.deepEqual(frames[0].payload, payload);
    });
  }
});

Deno.test("FrameParser finds every frame when the stream comes one byte at a time", () => {
  const big = pattern(65536);
  const mid = pattern(300);
  const stream = new Uint8Array([
    ...encodeFrame(OP_BINARY, new Uint8Array([8, 1]), { mask: false }),
    ...encodeFrame(OP_PING, new Uint8Array(0), { mask: false }),
    ...encodeFrame(OP_BINARY, mid, { mask: false }),
    ...encodeFrame(OP_BINARY, big, { mask: false }),
    ...encodeFrame(OP_CLOSE, closePayload(1000, "bye"), { mask: false }),
  ]);
  const { frames, errors, parser } = collect();
  // The caller reuses its read buffer: the parser must copy what it keeps.
  const buf = new Uint8Array(1);
  for (const byte of stream) {
    buf[0] = byte;
    parser.feed(buf);
    buf[0] = 0xee;
  }
  assert.deepEqual(errors, []);
  assert.deepEqual(frames.map((f) => f.opcode), [
    OP_BINARY,
    OP_PING,
    OP_BINARY,
    OP_BINARY,
    OP_CLOSE,
  ]);
  assert.deepEqual(frames[0].payload, new Uint8Array([8, 1]));
  assert.deepEqual(frames[2].payload, mid);
  assert.deepEqual(frames[3].payload, big);
  assert.deepEqual(parseClose(frames[4].payload), {
    code: 1000,
    reason: "bye",
  });
});

Deno.test("FrameParser finds every frame when several come in one chunk", () => {
  const stream = new Uint8Array([
    ...encodeFrame(OP_BINARY, new Uint8Array([1]), { mask: false }),
    ...encodeFrame(OP_TEXT, new Uint8Array([0x78]), { mask: false }),
    ...encodeFrame(OP_BINARY, pattern(200), { mask: false }),
  ]);
  const { frames, errors, parser } = collect();
  parser.feed(stream.subarray(0, 5));
  parser.feed(stream.subarray(5));
  assert.deepEqual(errors, []);
  assert.deepEqual(frames.map((f) => [f.opcode, f.payload.length]), [
    [OP_BINARY, 1],
    [OP_TEXT, 1],
    [OP_BINARY, 200],
  ]);
});

Deno.test("FrameParser joins a fragmented message around a control frame", () => {
  const { frames, errors, parser } = collect();
  parser.feed(
    encodeFrame(OP_BINARY, new Uint8Array([1, 2]), { mask: false, fin: false }),
  );
  parser.feed(encodeFrame(OP_PING, new Uint8Array([9]), { mask: false }));
  parser.feed(
    encodeFrame(OP_CONT, new Uint8Array([3]), { mask: false, fin: false }),
  );
  parser.feed(encodeFrame(OP_CONT, new Uint8Array([4]), { mask: false }));
  assert.deepEqual(errors, []);
  assert.deepEqual(frames, [
    { opcode: OP_PING, payload: new Uint8Array([9]) },
    { opcode: OP_BINARY, payload: new Uint8Array([1, 2, 3, 4]) },
  ]);
});

Deno.test("FrameParser reports a frame a client must refuse, once, then stops", async (t) => {
  const cases: [string, Uint8Array, string][] = [
    [
      "masked",
      encodeFrame(OP_BINARY, new Uint8Array([1]), { mask: KEY }),
      "server frame is masked",
    ],
    [
      "reserved bits",
      encodeFrame(OP_BINARY, new Uint8Array([1]), { mask: false, rsv: 4 }),
      "reserved bits set",
    ],
    [
      "control frame over 125 bytes",
      encodeFrame(OP_PING, pattern(126), { mask: false }),
      "bad control frame",
    ],
    [
      "fragmented control frame",
      encodeFrame(OP_CLOSE, new Uint8Array(0), { mask: false, fin: false }),
      "bad control frame",
    ],
    [
      "stray continuation",
      encodeFrame(OP_CONT, new Uint8Array([1]), { mask: false }),
      "continuation without a start",
    ],
    [
      "new message inside a fragmented one",
      new Uint8Array([
        ...encodeFrame(OP_BINARY, new Uint8Array([1]), {
          mask: false,
          fin: false,
        }),
        ...encodeFrame(OP_BINARY, new Uint8Array([2]), { mask: false }),
      ]),
      "new message inside a fragmented one",
    ],
    [
      "over 4 GiB",
      encodeDevFrame(OP_BINARY, new Uint8Array(0), {
        mask: false,
        length: 2 ** 32,
      }),
      "frame over 4 GiB",
    ],
    [
      "over maxFrame",
      encodeFrame(OP_BINARY, pattern(1025), { mask: false }),
      "frame of 1025 bytes",
    ],
  ];
  for (const [name, bytes, message] of cases) {
    await t.step(name, () => {
      const { frames, errors, parser } = collect(1024);
      parser.feed(bytes);
      parser.feed(encodeFrame(OP_BINARY, new Uint8Array([7]), { mask: false }));
      assert.deepEqual(errors, [message]);
      assert.deepEqual(frames, []);
      assert.equal(parser.failed, true);
    });
  }
});

Deno.test("FrameParser refuses a fragmented message over maxFrame, even of small frames", () => {
  const { frames, errors, parser } = collect(1024);
  for (let i = 0; i < 4; i++) {
    parser.feed(
      encodeFrame(i === 0 ? OP_BINARY : OP_CONT, pattern(300), {
        mask: false,
        fin: false,
      }),
    );
  }
  assert.deepEqual(errors, ["message of over 1024 bytes"]);
  assert.deepEqual(frames, []);
});

Deno.test("FrameParser takes a frame of MAX_FRAME bytes by default and refuses one more", () => {
  const ok = collect();
  const head = (n: number) =>
    encodeFrameHead({
      fin: true,
      rsv: 0,
      opcode: OP_BINARY,
      mask: false,
      length: n,
    });
  ok.parser.feed(head(MAX_FRAME));
  ok.parser.feed(new Uint8Array(MAX_FRAME));
  assert.deepEqual(ok.errors, []);
  assert.equal(ok.frames[0].payload.length, MAX_FRAME);
  const over = collect();
  over.parser.feed(head(MAX_FRAME + 1));
  assert.deepEqual(over.errors, [`frame of ${MAX_FRAME + 1} bytes`]);
});
