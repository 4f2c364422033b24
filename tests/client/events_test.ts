// Unit tests of client/events.ts: the events a SigverClient dispatches
// carry what the wire said (ContentEvent), who is gone (GoneEvent) and how
// the socket closed (SigverCloseEvent).

import assert from "node:assert/strict";
import { closeInfo, SigverCloseError } from "../../client/close.ts";
import {
  ContentEvent,
  GoneEvent,
  SigverCloseEvent,
} from "../../client/events.ts";
import { CLOSE_CODES, ERR_HEARTBEAT } from "../../lib/codes.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("ContentEvent is a 'content' event with the message's ids, data and lastData", () => {
  const data = new Uint8Array([1, 2, 3]);
  const event = new ContentEvent(0, 42, data, true);
  assert.ok(event instanceof Event);
  assert.equal(event.type, "content");
  assert.equal(event.senderId, 0);
  assert.equal(event.recipientId, 42);
  assert.equal(event.data, data);
  assert.equal(event.lastData, true);
});

Deno.test("ContentEvent's lastData is false unless given", () => {
  assert.equal(new ContentEvent(7, 0, new Uint8Array()).lastData, false);
});

Deno.test("ContentEvent.text decodes the payload as UTF-8", () => {
  const text = '{"sdp":"v=0","who":"zoë 🎉"}';
  const event = new ContentEvent(7, 0, new TextEncoder().encode(text));
  assert.equal(event.text(), text);
  assert.equal(new ContentEvent(7, 0, new Uint8Array()).text(), "");
});

Deno.test("GoneEvent with senderId 0 says this peer's member is gone, under this peer's id", () => {
  const event = new GoneEvent(0, 42);
  assert.ok(event instanceof Event);
  assert.equal(event.type, "gone");
  assert.equal(event.peer, "member");
  assert.equal(event.signalingId, 42);
  assert.equal(event.senderId, 0);
  assert.equal(event.recipientId, 42);
});

Deno.test("GoneEvent with a senderId says a joining peer is gone, under its id", () => {
  const event = new GoneEvent(17, 0);
  assert.equal(event.peer, "joiner");
  assert.equal(event.signalingId, 17);
  assert.equal(event.senderId, 17);
  assert.equal(event.recipientId, 0);
});

Deno.test("SigverCloseEvent is a 'close' event with the close's fields", () => {
  const info = closeInfo(ERR_HEARTBEAT, "Too many missed heartbeats", true);
  const event = new SigverCloseEvent(info);
  assert.ok(event instanceof Event);
  assert.equal(event.type, "close");
  assert.equal(event.code, 4742);
  assert.equal(event.reason, "Too many missed heartbeats");
  assert.equal(event.codeName, "ERR_HEARTBEAT");
  assert.equal(event.meaning, CLOSE_CODES[ERR_HEARTBEAT].meaning);
  assert.equal(event.wasClean, true);
});

Deno.test("SigverCloseEvent.toError gives a new SigverCloseError of the same close each time", () => {
  const event = new SigverCloseEvent(closeInfo(4000, "bye", false));
  const error = event.toError();
  assert.ok(error instanceof SigverCloseError);
  assert.deepEqual(
    {
      code: error.code,
      reason: error.reason,
      codeName: error.codeName,
      meaning: error.meaning,
      wasClean: error.wasClean,
    },
    {
      code: 4000,
      reason: "bye",
      codeName: "UNKNOWN",
      meaning: "close code 4000 is not one sigver uses",
      wasClean: false,
    },
  );
  assert.equal(
    error.message,
    "Cannot signal: the socket closed with 4000 UNKNOWN (bye)",
  );
  assert.notEqual(event.toError(), error);
});

Deno.test("the client's events reach listeners of their type through an EventTarget", () => {
  const target = new EventTarget();
  const seen: string[] = [];
  for (const type of ["content", "gone", "close"]) {
    target.addEventListener(type, (event) => seen.push(event.type));
  }
  target.dispatchEvent(new ContentEvent(1, 0, new Uint8Array([1])));
  target.dispatchEvent(new GoneEvent(0, 5));
  target.dispatchEvent(new SigverCloseEvent(closeInfo(1000, "", true)));
  assert.deepEqual(seen, ["content", "gone", "close"]);
});
