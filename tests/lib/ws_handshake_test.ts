// Unit tests of lib/ws_handshake.ts, the opening handshake that the
// cluster's pipes make, and of what dev/bad_frames.ts adds to it for the
// tests (raw header lines). No sockets: text in, text out.

import assert from "node:assert/strict";
import {
  handshakeRequest,
  headEnd,
  parseResponseHead,
  randomKey,
  upgradeError,
  websocketAccept,
} from "../../lib/ws_handshake.ts";
import { handshakeRequest as devHandshakeRequest } from "../../dev/bad_frames.ts";

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
