import assert from "node:assert/strict";
import { Topics } from "../../../lib/ywebrtc/topics.ts";

Deno.test("Topics frees a topic when its last subscriber leaves", () => {
  const topics = new Topics<string>();
  assert.equal(topics.add("t", "a"), true);
  assert.equal(topics.add("t", "b"), true);
  assert.equal(topics.add("t", "a"), false);
  assert.equal(topics.count("t"), 2);
  assert.equal(topics.subscriptions, 2);
  assert.equal(topics.remove("t", "a"), true);
  assert.equal(topics.remove("t", "a"), false);
  assert.equal(topics.remove("u", "a"), false);
  assert.equal(topics.size, 1);
  assert.equal(topics.remove("t", "b"), true);
  assert.equal(topics.size, 0);
  assert.equal(topics.subscriptions, 0);
  assert.equal(topics.subscribers("t"), undefined);
  assert.equal(topics.count("t"), 0);
});
