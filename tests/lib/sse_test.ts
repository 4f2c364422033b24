/**
 * The fallback transport's text (`lib/sse.ts`): events written as the issue
 * specifies them, read back by a parser that follows the HTML standard's
 * event-stream rules whatever the chunking, and session ids of 128 bits.
 */

import assert from "node:assert/strict";
import {
  base64,
  closeEvent,
  frameEvent,
  isSessionId,
  KEEP_ALIVE,
  newSessionId,
  portableBase64,
  sessionEvent,
  sessionHome,
  type SseEvent,
  SseParser,
  unbase64,
} from "../../lib/sse.ts";
import { Rng } from "../../dev/rng.ts";

Deno.test("session ids are 128 random bits in base64url, never repeated", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = newSessionId();
    assert.match(id, /^[A-Za-z0-9_-]{22}$/);
    assert.ok(isSessionId(id));
    seen.add(id);
  }
  assert.equal(seen.size, 1000);
  for (
    const bad of [
      "",
      "short",
      "a".repeat(21),
      "a".repeat(65),
      "a+b/c=".repeat(5),
    ]
  ) {
    assert.equal(isSessionId(bad), false, bad);
  }
});

Deno.test("frame events carry the frame's bytes in standard base64", () => {
  const frame = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 255);
  const text = frameEvent(frame);
  assert.match(text, /^data: [A-Za-z0-9+/]+=*\n\n$/);
  assert.deepEqual(unbase64(text.slice(6, -2)), frame);
  assert.equal(base64(new Uint8Array()), "");
  assert.throws(() => unbase64("not base64!"), SyntaxError);
});

Deno.test("close events carry the code and reason as one line of JSON", () => {
  const text = closeEvent(1008, 'Cannot relay: "quoted"\nand a line break');
  const [first, second, ...rest] = text.split("\n");
  assert.equal(first, "event: close");
  assert.deepEqual(JSON.parse(second.slice("data: ".length)), {
    code: 1008,
    reason: 'Cannot relay: "quoted"\nand a line break',
  });
  assert.deepEqual(rest, ["", ""]);
});

Deno.test("the parser reads a whole stream the same way whatever the chunking", async (t) => {
  const frame = new Uint8Array([0x12, 0x03, 0x10, 0x2a, 0x22]);
  const stream = sessionEvent("S3ss10nS3ss10nS3ss10nA") + KEEP_ALIVE +
    frameEvent(frame) + ":\n\n" +
    closeEvent(4742, "Too many missed heartbeats");
  const expected: SseEvent[] = [
    {
      event: "session",
      data: "S3ss10nS3ss10nS3ss10nA",
      id: "S3ss10nS3ss10nS3ss10nA",
    },
    {
      event: "message",
      data: base64(frame),
      id: "S3ss10nS3ss10nS3ss10nA",
    },
    {
      event: "close",
      data: '{"code":4742,"reason":"Too many missed heartbeats"}',
      id: "S3ss10nS3ss10nS3ss10nA",
    },
  ];
  await t.step("in one chunk", () => {
    assert.deepEqual(new SseParser().push(stream), expected);
  });
  await t.step("one character at a time", () => {
    const parser = new SseParser();
    const events = [...stream].flatMap((c) => parser.push(c));
    assert.deepEqual(events, expected);
  });
  await t.step("in random chunks", () => {
    const rng = new Rng(9);
    for (let run = 0; run < 200; run++) {
      const parser = new SseParser();
      const events: SseEvent[] = [];
      for (let i = 0; i < stream.length;) {
        const n = 1 + rng.int(12);
        events.push(...parser.push(stream.slice(i, i + n)));
        i += n;
      }
      assert.deepEqual(events, expected);
    }
  });
  await t.step("with CRLF and CR line ends", () => {
    for (const end of ["\r\n", "\r"]) {
      const parser = new SseParser();
      const text = stream.replaceAll("\n", end);
      const events = [...text].flatMap((c) => parser.push(c));
      assert.deepEqual(events, expected, JSON.stringify(end));
    }
  });
});

Deno.test("the parser joins data lines, drops empty events and keeps no half line", () => {
  const parser = new SseParser();
  assert.deepEqual(parser.push("data: a\ndata:b\ndata\n\n"), [
    { event: "message", data: "a\nb\n", id: undefined },
  ]);
  assert.deepEqual(parser.push("event: x\n\n"), []);
  assert.deepEqual(parser.push("data: half"), []);
  assert.deepEqual(parser.push("\n\n"), [
    { event: "message", data: "half", id: undefined },
  ]);
});

Deno.test("a cluster node's session ids name it, with 128 random bits more", () => {
  const home = "0123456789abcdef";
  const ids = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const id = newSessionId(home);
    assert.match(id, /^[A-Za-z0-9_-]{32}$/);
    assert.ok(isSessionId(id));
    assert.equal(sessionHome(id), home);
    ids.add(id.slice(11));
  }
  assert.equal(ids.size, 100);
  assert.equal(sessionHome(newSessionId()), undefined);
  assert.equal(sessionHome("not an id"), undefined);
  assert.throws(() => newSessionId("not hex"), RangeError);
});

Deno.test("the portable base64 writes what the native one writes, at every length", () => {
  const rng = new Rng(21);
  for (let n = 0; n < 300; n++) {
    const bytes = rng.bytes(n);
    assert.equal(portableBase64(bytes), base64(bytes), `length ${n}`);
    assert.equal(portableBase64(bytes), btoa(String.fromCharCode(...bytes)));
    assert.deepEqual(unbase64(base64(bytes)), bytes);
  }
});
