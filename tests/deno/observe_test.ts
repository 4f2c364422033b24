import assert from "node:assert/strict";
import {
  CLOSE_GOING_AWAY,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_POLICY_VIOLATION,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
} from "../../lib/codes.ts";
import { keyHash, Logger, type LogLevel } from "../../lib/log.ts";
import { closeLevel, Observer } from "../../deno/observe.ts";

function observed(level: LogLevel = "debug") {
  const lines: Record<string, unknown>[] = [];
  const observer = new Observer(
    new Logger((line) => lines.push(JSON.parse(line)), level, "json"),
  );
  return { observer, lines };
}

Deno.test("closeLevel: comings and goings are debug, limits and bad input info", () => {
  for (const code of [1000, 1006, CLOSE_POLICY_VIOLATION]) {
    assert.equal(closeLevel(code, "client"), "debug", `${code} by the client`);
  }
  for (const code of [CLOSE_GOING_AWAY, ERR_HEARTBEAT, ERR_BLOCKING_MEMBER]) {
    assert.equal(closeLevel(code, "server"), "debug", `${code} by the server`);
  }
  for (const code of [CLOSE_POLICY_VIOLATION, CLOSE_MESSAGE_TOO_BIG, 4743]) {
    assert.equal(closeLevel(code, "server"), "info", `${code} by the server`);
  }
});

Deno.test("Observer.refuse answers with the status and text, counts the reason, logs the key's hash only", async () => {
  const { observer, lines } = observed();
  const response = observer.refuse(
    { status: 403, reason: "origin", message: "Forbidden: origin" },
    "127.0.0.9",
    "secret-room",
  );
  assert.equal(response.status, 403);
  assert.equal(await response.text(), "Forbidden: origin\n");
  assert.deepEqual(observer.rejections.samples(), [[{ reason: "origin" }, 1]]);
  assert.equal(lines.length, 1);
  assert.equal(lines[0].event, "reject");
  assert.equal(lines[0].reason, "origin");
  assert.equal(lines[0].status, 403);
  assert.equal(lines[0].addr, "127.0.0.9");
  assert.equal(lines[0].key, keyHash("secret-room"));
  assert.ok(!JSON.stringify(lines).includes("secret-room"));
});

Deno.test("Observer.closed counts by code and side, and logs at the close's level", () => {
  const { observer, lines } = observed("info");
  observer.closed(7, "room", 1000, "", "client");
  observer.closed(8, "room", CLOSE_POLICY_VIOLATION, "rate", "server");
  assert.deepEqual(observer.closes.samples(), [
    [{ code: "1000", by: "client" }, 1],
    [{ code: String(CLOSE_POLICY_VIOLATION), by: "server" }, 1],
  ]);
  // The client's close is debug: under "info" only the limit close shows.
  assert.equal(lines.length, 1);
  assert.equal(lines[0].event, "close");
  assert.equal(lines[0].peer, 8);
  assert.equal(lines[0].code, CLOSE_POLICY_VIOLATION);
  assert.equal(lines[0].reason, "rate");
  assert.equal(lines[0].key, keyHash("room"));
});

Deno.test("Observer.closed counts client codes the server does not know under one label", () => {
  const { observer } = observed("info");
  // A client may send any code from 3000 to 4999: 200 of them must not
  // make 200 series.
  for (let code = 4000; code < 4200; code++) {
    observer.closed(1, "room", code, "", "client");
  }
  observer.closed(1, "room", 4741, "", "client");
  observer.closed(1, "room", 1001, "", "client");
  observer.closed(1, "room", 4999, "", "server");
  assert.deepEqual(observer.closes.samples(), [
    [{ code: "other", by: "client" }, 200],
    [{ code: "4741", by: "client" }, 1],
    [{ code: "1001", by: "client" }, 1],
    [{ code: "4999", by: "server" }, 1],
  ]);
});

Deno.test("Observer.opened logs at debug with the peer's id and key hash, and nothing under info", () => {
  const quiet = observed("info");
  quiet.observer.opened(1, "room", false, "127.0.0.1");
  assert.equal(quiet.lines.length, 0);
  const { observer, lines } = observed("debug");
  observer.opened(1, "room", true, "127.0.0.1", "sse");
  assert.equal(lines.length, 1);
  assert.equal(lines[0].event, "open");
  assert.equal(lines[0].peer, 1);
  assert.equal(lines[0].key, keyHash("room"));
  assert.equal(lines[0].addr, "127.0.0.1");
  assert.equal(lines[0].favored, true);
  assert.equal(lines[0].transport, "sse");
});
