// Unit tests of lib/ws_frame.ts, the WebSocket frames that the cluster's
// pipes speak, and of what dev/bad_frames.ts adds to them for the tests,
// the fuzzer and the load generator (false lengths). No sockets: bytes in,
// bytes out.

import assert from "node:assert/strict";
import {
  applyMask,
  closePayload,
  encodeFrame,
  encodeFrameHead,
  OP_BINARY,
  OP_TEXT,
  parseClose,
} from "../../lib/ws_frame.ts";
import { encodeFrame as encodeDevFrame } from "../../dev/bad_frames.ts";
import { KEY, pattern } from "./_ws.ts";

/** The payload of a masked frame, unmasked with the key it carries. */
function unmask(frame: Uint8Array, head: number): Uint8Array {
  const key = frame.subarray(head, head + 4);
  return frame.subarray(head + 4).map((b, i) => b ^ key[i & 3]);
}

Deno.test("encodeFrame picks the 7, 16 or 64-bit length form at each boundary", async (t) => {
  const cases = [
    { n: 0, head: 2, byte1: 0 },
    { n: 125, head: 2, byte1: 125 },
    { n: 126, head: 4, byte1: 126 },
    { n: 65535, head: 4, byte1: 126 },
    { n: 65536, head: 10, byte1: 127 },
  ];
  for (const { n, head, byte1 } of cases) {
    await t.step(`${n} bytes`, () => {
      const payload = pattern(n);
      const frame = encodeFrame(OP_BINARY, payload, { mask: KEY });
      assert.equal(frame.length, head + 4 + n);
      assert.equal(frame[0], 0x82);
      assert.equal(frame[1], 0x80 | byte1);
      const view = new DataView(frame.buffer, frame.byteOffset);
      if (head === 4) assert.equal(view.getUint16(2), n);
      if (head === 10) assert.equal(view.getBigUint64(2), BigInt(n));
      assert.deepEqual(frame.subarray(head, head + 4), KEY);
      assert.deepEqual(unmask(frame, head), payload);
    });
  }
});

Deno.test("encodeFrame XORs the payload with the masking key", () => {
  const frame = encodeFrame(
    OP_TEXT,
    new Uint8Array([0x48, 0x65, 0x6c, 0x6c, 0x6f]),
    {
      mask: KEY,
    },
  );
  // RFC 6455 section 5.7 style: each byte XOR the key byte at i mod 4.
  assert.deepEqual(
    [...frame],
    [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
  );
});

Deno.test("encodeFrame copies the payload as it is when the key is all zero", () => {
  const payload = pattern(300);
  const frame = encodeFrame(OP_BINARY, payload, { mask: new Uint8Array(4) });
  assert.deepEqual([...frame.subarray(0, 8)], [0x82, 0xfe, 1, 44, 0, 0, 0, 0]);
  assert.deepEqual(frame.subarray(8), payload);
});

Deno.test("encodeFrame masks with a key it carries when none is given", () => {
  const payload = pattern(40);
  const frame = encodeFrame(OP_BINARY, payload);
  assert.equal(frame[1], 0x80 | 40);
  assert.deepEqual(unmask(frame, 2), payload);
});

Deno.test("dev's encodeFrame writes broken frames when asked: no fin, reserved bits, unmasked, false length", () => {
  const payload = new Uint8Array([1, 2, 3]);
  const frame = encodeDevFrame(0xb, payload, {
    fin: false,
    rsv: 5,
    mask: false,
    length: 0x7fffffff,
  });
  assert.deepEqual(
    [...frame],
    [0x5b, 127, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
  );
  const short = encodeDevFrame(OP_BINARY, payload, {
    mask: false,
    length: 300,
  });
  assert.deepEqual([...short], [0x82, 126, 1, 44, 1, 2, 3]);
  const huge = encodeDevFrame(OP_BINARY, payload, {
    mask: false,
    length: 2 ** 40,
  });
  assert.deepEqual([...huge.subarray(0, 10)], [
    0x82,
    127,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
  ]);
  // A false length still masks the payload with the key it carries.
  const masked = encodeDevFrame(OP_BINARY, payload, { mask: KEY, length: 9 });
  assert.deepEqual([...masked.subarray(0, 2)], [0x82, 0x89]);
  assert.deepEqual(unmask(masked, 2), payload);
  // Without a false length it is the lib's frame.
  assert.deepEqual(
    encodeDevFrame(OP_BINARY, payload, { mask: KEY }),
    encodeFrame(OP_BINARY, payload, { mask: KEY }),
  );
});

Deno.test("encodeFrame writes reserved bits and server frames, unmasked", () => {
  const frame = encodeFrame(OP_BINARY, new Uint8Array([1, 2]), {
    fin: false,
    rsv: 4,
    mask: false,
  });
  assert.deepEqual([...frame], [0x42, 2, 1, 2]);
});

Deno.test("encodeFrameHead writes each length form, with or without a key", () => {
  const head = (
    length: number,
    mask: Uint8Array | false = false,
  ) => [
    ...encodeFrameHead({ fin: true, rsv: 0, opcode: OP_BINARY, mask, length }),
  ];
  assert.deepEqual(head(125), [0x82, 125]);
  assert.deepEqual(head(126), [0x82, 126, 0, 126]);
  assert.deepEqual(head(0x10000), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
  assert.deepEqual(head(3, KEY), [0x82, 0x83, ...KEY]);
  assert.throws(() => head(-1), RangeError);
  assert.throws(() => head(1, new Uint8Array(5)), RangeError);
});

Deno.test("encodeFrame masks each frame with a fresh key and aligns its payload", () => {
  const keys = new Set<string>();
  for (const n of [1, 125, 126, 65536]) {
    const payload = pattern(n);
    const frame = encodeFrame(OP_BINARY, payload);
    const head = n < 126 ? 2 : n < 0x10000 ? 4 : 10;
    keys.add(frame.subarray(head, head + 4).join());
    assert.equal((frame.byteOffset + head + 4) % 4, 0, `${n} bytes`);
    assert.deepEqual(unmask(frame, head), payload);
  }
  assert.equal(keys.size, 4);
});

Deno.test("applyMask XORs with the key at i mod 4, aligned or not, and twice is none", async (t) => {
  for (const offset of [0, 1, 2, 3]) {
    await t.step(`offset ${offset}`, () => {
      const buffer = pattern(offset + 103);
      const bytes = buffer.subarray(offset);
      const before = bytes.slice();
      applyMask(bytes, KEY);
      assert.deepEqual(bytes, before.map((b, i) => b ^ KEY[i & 3]));
      applyMask(bytes, KEY);
      assert.deepEqual(bytes, before);
    });
  }
});

Deno.test("encodeFrame throws RangeError on a key that is not 4 bytes or a bad length", () => {
  const payload = new Uint8Array(1);
  assert.throws(
    () => encodeFrame(OP_BINARY, payload, { mask: new Uint8Array(3) }),
    RangeError,
  );
  assert.throws(
    () => encodeDevFrame(OP_BINARY, payload, { length: -1 }),
    RangeError,
  );
  assert.throws(
    () => encodeDevFrame(OP_BINARY, payload, { length: 1.5 }),
    RangeError,
  );
});

Deno.test("parseClose reads the code and reason, and 1005 when there is no code", () => {
  assert.deepEqual(parseClose(new Uint8Array([0x12, 0x85, 0x6f, 0x6b])), {
    code: 4741,
    reason: "ok",
  });
  assert.deepEqual(parseClose(new Uint8Array([0x03, 0xe8])), {
    code: 1000,
    reason: "",
  });
  assert.deepEqual(parseClose(new Uint8Array(0)), { code: 1005, reason: "" });
  assert.deepEqual(parseClose(new Uint8Array([0x03])), {
    code: 1005,
    reason: "",
  });
});

Deno.test("closePayload writes what parseClose reads", () => {
  assert.deepEqual([...closePayload(1000, "ok")], [0x03, 0xe8, 0x6f, 0x6b]);
  assert.deepEqual(parseClose(closePayload(4743, "Cannot decode: ü")), {
    code: 4743,
    reason: "Cannot decode: ü",
  });
});
