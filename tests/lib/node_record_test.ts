import assert from "node:assert/strict";
import { NodeRecords } from "../../lib/node_record.ts";

const SECRET = "a cluster secret of 32 bytes....";
const URL_A = "ws://10.0.0.1:8000";

Deno.test("NodeRecords: a signed record reads back as its URL, for its node id", async () => {
  const records = new NodeRecords(SECRET);
  const record = await records.sign("a", URL_A);
  assert.match(record, /^ws:\/\/10\.0\.0\.1:8000\|[A-Za-z0-9_-]{43}$/);
  assert.equal(await records.read("a", record), URL_A);
  // Another process with the secret reads it too (a cached read is alike).
  assert.equal(await new NodeRecords(SECRET).read("a", record), URL_A);
  assert.equal(await records.read("a", record), URL_A);
});

Deno.test("NodeRecords: a record that was not signed for that node with the secret is not read", async (t) => {
  const records = new NodeRecords(SECRET);
  const record = await records.sign("a", URL_A);
  const mac = record.slice(record.indexOf("|") + 1);
  const other = await new NodeRecords("another secret of 32 bytes......")
    .sign("a", URL_A);
  const cases: [string, string, string][] = [
    ["a bare URL (what Redis held before records were signed)", "a", URL_A],
    ["the record under another id", "b", record],
    ["another URL with the MAC", "a", `ws://127.0.0.1:9|${mac}`],
    ["signed with another secret", "a", other],
    ["no MAC", "a", `${URL_A}|`],
    ["a MAC that is not base64url", "a", `${URL_A}|${"!".repeat(43)}`],
    ["a short MAC", "a", `${URL_A}|${mac.slice(1)}`],
    ["an http URL", "a", `http://127.0.0.1:9/latest/meta-data?|${mac}`],
    ["empty", "a", ""],
  ];
  for (const [name, node, text] of cases) {
    await t.step(name, async () => {
      assert.equal(await records.read(node, text), undefined);
    });
  }
});

Deno.test("NodeRecords refuses to sign a URL that is no node URL, and an empty secret", async () => {
  const records = new NodeRecords(SECRET);
  for (
    const url of ["ws://10.0.0.1:8000/x", "http://10.0.0.1:8000", "ws://A:1"]
  ) {
    await assert.rejects(records.sign("a", url), TypeError);
  }
  assert.throws(() => new NodeRecords(""), TypeError);
});
