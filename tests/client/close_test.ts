// Unit tests of client/close.ts: closeInfo names and explains a close code
// as lib/codes.ts does, and SigverCloseError carries a close's fields and
// says what it interrupted.

import assert from "node:assert/strict";
import {
  type CloseInfo,
  closeInfo,
  SigverCloseError,
} from "../../client/close.ts";
import {
  CLOSE_ABNORMAL,
  CLOSE_CODES,
  CLOSE_GOING_AWAY,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
} from "../../lib/codes.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

Deno.test("closeInfo names and explains every code sigver uses, as lib/codes.ts does", async (t) => {
  const codes = Object.keys(CLOSE_CODES).map(Number);
  assert.ok(codes.length >= 11, `${codes}`);
  for (const code of codes) {
    await t.step(`${code} ${CLOSE_CODES[code].name}`, () => {
      assert.deepEqual(closeInfo(code, "why", true), {
        code,
        reason: "why",
        codeName: CLOSE_CODES[code].name,
        meaning: CLOSE_CODES[code].meaning,
        wasClean: true,
      });
    });
  }
});

Deno.test("closeInfo gives the names peers read in their close handlers", () => {
  assert.equal(closeInfo(ERR_KEY, "", true).codeName, "ERR_KEY");
  assert.equal(closeInfo(ERR_HEARTBEAT, "", true).codeName, "ERR_HEARTBEAT");
  assert.equal(
    closeInfo(ERR_BLOCKING_MEMBER, "", true).codeName,
    "ERR_BLOCKING_MEMBER",
  );
  assert.equal(closeInfo(CLOSE_GOING_AWAY, "", true).codeName, "GOING_AWAY");
  assert.equal(
    closeInfo(ERR_KEY, "", true).meaning,
    "the key (room name) is empty or longer than 512 characters",
  );
});

Deno.test("closeInfo reads Deno's code 0 of a failed handshake as 1006", () => {
  assert.deepEqual(closeInfo(0, "", false), {
    code: CLOSE_ABNORMAL,
    reason: "",
    codeName: "ABNORMAL",
    meaning: CLOSE_CODES[CLOSE_ABNORMAL].meaning,
    wasClean: false,
  });
});

Deno.test("closeInfo names a code sigver does not use UNKNOWN, and keeps it", () => {
  assert.deepEqual(closeInfo(4000, "app says bye", true), {
    code: 4000,
    reason: "app says bye",
    codeName: "UNKNOWN",
    meaning: "close code 4000 is not one sigver uses",
    wasClean: true,
  });
});

Deno.test("closeInfo keeps the reason and wasClean as given", () => {
  const info = closeInfo(ERR_HEARTBEAT, "Too many missed heartbeats", false);
  assert.equal(info.reason, "Too many missed heartbeats");
  assert.equal(info.wasClean, false);
});

Deno.test("SigverCloseError carries the close's fields", () => {
  const info: CloseInfo = closeInfo(
    ERR_KEY,
    "Cannot join: the key is empty",
    true,
  );
  const error = new SigverCloseError(info);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "SigverCloseError");
  assert.equal(error.code, 4741);
  assert.equal(error.reason, "Cannot join: the key is empty");
  assert.equal(error.codeName, "ERR_KEY");
  assert.equal(error.meaning, CLOSE_CODES[ERR_KEY].meaning);
  assert.equal(error.wasClean, true);
});

Deno.test("SigverCloseError says what could not be done, the code, its name and the reason", () => {
  const info = closeInfo(ERR_KEY, "Cannot join: the key is empty", true);
  assert.equal(
    new SigverCloseError(info).message,
    "Cannot signal: the socket closed with 4741 ERR_KEY (Cannot join: the key is empty)",
  );
  assert.equal(
    new SigverCloseError(info, "connect").message,
    "Cannot connect: the socket closed with 4741 ERR_KEY (Cannot join: the key is empty)",
  );
});

Deno.test("SigverCloseError leaves out an empty reason", () => {
  const error = new SigverCloseError(closeInfo(0, "", false), "open");
  assert.equal(
    error.message,
    "Cannot open: the socket closed with 1006 ABNORMAL",
  );
  assert.equal(error.code, 1006);
  assert.equal(error.wasClean, false);
});
