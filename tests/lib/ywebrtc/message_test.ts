import assert from "node:assert/strict";
import {
  parseMessage,
  PONG,
  withClients,
} from "../../../lib/ywebrtc/message.ts";

Deno.test("parseMessage reads the four messages y-webrtc 10.3 sends", () => {
  assert.deepEqual(parseMessage('{"type":"subscribe","topics":["a","b"]}'), {
    type: "subscribe",
    topics: ["a", "b"],
  });
  assert.deepEqual(parseMessage('{"type":"unsubscribe","topics":[]}'), {
    type: "unsubscribe",
    topics: [],
  });
  assert.deepEqual(
    parseMessage('{"type":"publish","topic":"a","data":{"type":"announce"}}'),
    { type: "publish", topic: "a" },
  );
  assert.deepEqual(parseMessage('{"type":"ping"}'), { type: "ping" });
  assert.deepEqual(JSON.parse(PONG), { type: "pong" });
});

Deno.test("parseMessage answers a malformed frame with 4743 and a reason", async (t) => {
  const cases: [string, string][] = [
    ["not json", "Cannot handle message: not JSON"],
    ["", "Cannot handle message: not JSON"],
    ["[1]", "Cannot handle message: not a JSON object"],
    ["null", "Cannot handle message: not a JSON object"],
    ['"ping"', "Cannot handle message: not a JSON object"],
    ["{}", "Cannot handle message: no type (a string)"],
    ['{"type":7}', "Cannot handle message: no type (a string)"],
    ['{"type":"hello"}', "Cannot handle message: unknown type"],
    [
      '{"type":"publish","data":1}',
      "Cannot handle message: a publish needs a string topic",
    ],
    [
      '{"type":"publish","topic":["a"]}',
      "Cannot handle message: a publish needs a string topic",
    ],
    [
      '{"type":"subscribe"}',
      "Cannot handle message: a subscribe needs topics, an array of strings",
    ],
    [
      '{"type":"subscribe","topics":"a"}',
      "Cannot handle message: a subscribe needs topics, an array of strings",
    ],
    [
      '{"type":"unsubscribe","topics":[1]}',
      "Cannot handle message: an unsubscribe needs topics, an array of strings",
    ],
  ];
  for (const [frame, reason] of cases) {
    await t.step(JSON.stringify(frame), () => {
      assert.deepEqual(parseMessage(frame), { code: 4743, reason });
    });
  }
});

Deno.test("withClients keeps the publish as sent and adds clients last", () => {
  const frame =
    '{ "type": "publish", "topic": "r", "data": {"s": "}"}, "clients": 9 }\n';
  const out = withClients(frame, 3);
  assert.ok(out.startsWith(frame.slice(0, frame.lastIndexOf("}"))));
  assert.deepEqual(JSON.parse(out), {
    type: "publish",
    topic: "r",
    data: { s: "}" },
    clients: 3,
  });
});
