// Unit tests of lib/ws_frame.ts, the WebSocket codec that the cluster's
// pipes speak, and of what dev/ws_frame.ts adds to it for the tests, the
// fuzzer and the load generator (false lengths, raw header lines). No
// sockets: bytes in, bytes out.

import assert from "node:assert/strict";
import {
  applyMask,
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
import {
  handshakeRequest,
  headEnd,
  parseResponseHead,
  randomKey,
  upgradeError,
  websocketAccept,
} from "../../lib/ws_handshake.ts";
import { FrameParser, MAX_FRAME } from "../../lib/ws_parser.ts";
import {
  encodeFrame as encodeDevFrame,
  handshakeRequest as devHandshakeRequest,
} from "../../dev/bad_frames.ts";

const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

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

/** `n` bytes that differ from their neighbours, so that a shift shows. */
function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + 3) & 0xff;
  return out;
}

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

Deno.test("handshakeRequest writes the target as it is, the headers and the key", () => {
  const request = handshakeRequest("/a%20b?favored", {
    host: "127.0.0.1:8000",
    headers: { "X-Sigver-Node": "n1", origin: "https://a.example" },
    key: "dGhlIHNhbXBsZSBub25jZQ==",
  });
  assert.deepEqual(request.split("\r\n"), [
    "GET /a%20b?favored HTTP/1.1",
    "Host: 127.0.0.1:8000",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "origin: https://a.example",
    "x-sigver-node: n1",
    "",
    "",
  ]);
});

Deno.test("handshakeRequest throws TypeError on a header that would break the request", () => {
  assert.throws(
    () =>
      handshakeRequest("/", {
        host: "h",
        headers: { "x-a": "b\r\nX-Injected: 1" },
      }),
    TypeError,
  );
  assert.throws(
    () => handshakeRequest("/", { host: "h", headers: { "x a": "b" } }),
    TypeError,
  );
});

Deno.test("dev's handshakeRequest writes header lines as they are", () => {
  const request = devHandshakeRequest("http://h?favored", {
    host: "127.0.0.1:8000",
    headers: ["Origin: https://a.example", "X-Odd:no space", "X-Odd:again"],
    key: "dGhlIHNhbXBsZSBub25jZQ==",
  });
  assert.deepEqual(request.split("\r\n"), [
    "GET http://h?favored HTTP/1.1",
    "Host: 127.0.0.1:8000",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "Origin: https://a.example",
    "X-Odd:no space",
    "X-Odd:again",
    "",
    "",
  ]);
});

Deno.test("handshakeRequest sends a fresh random key when none is given", () => {
  const keyOf = (request: string) =>
    /^Sec-WebSocket-Key: (.*)$/m.exec(request)![1].trimEnd();
  const a = keyOf(handshakeRequest("/", { host: "h" }));
  const b = keyOf(handshakeRequest("/", { host: "h" }));
  assert.equal(atob(a).length, 16);
  assert.notEqual(a, b);
  assert.equal(atob(randomKey()).length, 16);
});

Deno.test("headEnd finds the end of the head however much has arrived", () => {
  const text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
  const bytes = new Uint8Array([...new TextEncoder().encode(text), 0x82, 0x00]);
  assert.equal(headEnd(bytes), text.length);
  for (let n = 0; n < text.length; n++) {
    assert.equal(headEnd(bytes.subarray(0, n)), -1, `${n} bytes`);
  }
});

Deno.test("parseResponseHead reads the status line and the headers", () => {
  const head = parseResponseHead(
    "HTTP/1.1 101 Switching Protocols\r\n" +
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
  );
  assert.equal(head.status, 101);
  assert.equal(head.statusText, "Switching Protocols");
  assert.equal(head.headers.get("upgrade"), "websocket");
  assert.equal(
    head.headers.get("sec-websocket-accept"),
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
});

Deno.test("parseResponseHead gives status 0 for a malformed status line and skips bad header lines", () => {
  assert.equal(parseResponseHead("garbage").status, 0);
  assert.equal(parseResponseHead("HTTP/1.1 1010 Nope").status, 0);
  assert.equal(parseResponseHead("HTTP/2 200 OK").status, 0);
  const head = parseResponseHead(
    "HTTP/1.0 503\r\nno colon here\r\nBad Name: x\r\nRetry-After: 1\r\n",
  );
  assert.equal(head.status, 503);
  assert.equal(head.statusText, "");
  assert.deepEqual([...head.headers], [["retry-after", "1"]]);
});

Deno.test("websocketAccept gives RFC 6455's own example", async () => {
  assert.equal(
    await websocketAccept("dGhlIHNhbXBsZSBub25jZQ=="),
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
});

Deno.test("upgradeError accepts a valid 101 and says what is wrong with any other", async (t) => {
  const accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
  const valid = "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept}\r\n`;
  const error = (status: string, headers: string) =>
    upgradeError(parseResponseHead(`HTTP/1.1 ${status}\r\n${headers}`), accept);
  assert.equal(error("101 Switching Protocols", valid), undefined);
  const cases = [
    ["another status", "200 OK", valid, "status 200, not 101"],
    [
      "no Upgrade",
      "101 Switching Protocols",
      `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n`,
      "no Upgrade: websocket",
    ],
    [
      "no Connection: Upgrade",
      "101 Switching Protocols",
      `Upgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Accept: ${accept}\r\n`,
      "no Connection: Upgrade",
    ],
    [
      "a wrong accept",
      "101 Switching Protocols",
      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n",
      "wrong Sec-WebSocket-Accept",
    ],
    [
      "an extension",
      "101 Switching Protocols",
      valid + "Sec-WebSocket-Extensions: permessage-deflate\r\n",
      "an extension that was not asked for",
    ],
    [
      "a subprotocol",
      "101 Switching Protocols",
      valid + "Sec-WebSocket-Protocol: chat\r\n",
      "a subprotocol that was not asked for",
    ],
  ];
  for (const [name, status, headers, message] of cases) {
    await t.step(name, () => assert.equal(error(status, headers), message));
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
