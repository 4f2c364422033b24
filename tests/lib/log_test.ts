// Unit tests of lib/log.ts: levels, the text and JSON line formats, which
// text values are quoted, and keyHash (32-bit FNV-1a), whose expected values
// are the published FNV-1a test vectors and values computed outside this
// code, so that key tags stay the same from one release to the next.

import assert from "node:assert/strict";
import {
  enabled,
  formatLine,
  keyHash,
  LOG_LEVELS,
  type LogFields,
  Logger,
  type LogLevel,
} from "../../lib/log.ts";

const TIME = "2026-01-01T00:00:00.000Z";
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** A logger writing into an array. */
function capture(level?: LogLevel, format?: "text" | "json") {
  const lines: string[] = [];
  const log = new Logger((line) => lines.push(line), level, format);
  return { log, lines };
}

Deno.test("LOG_LEVELS lists every level, most severe first", () => {
  assert.deepEqual(LOG_LEVELS, ["error", "warn", "info", "debug"]);
});

Deno.test("enabled passes a record at or above the threshold's severity", async (t) => {
  const expected: Record<LogLevel, LogLevel[]> = {
    error: ["error"],
    warn: ["error", "warn"],
    info: ["error", "warn", "info"],
    debug: ["error", "warn", "info", "debug"],
  };
  for (const threshold of LOG_LEVELS) {
    await t.step(`threshold ${threshold}`, () => {
      assert.deepEqual(
        LOG_LEVELS.filter((level) => enabled(threshold, level)),
        expected[threshold],
      );
    });
  }
});

Deno.test("Logger writes records at or above its level, and nothing below", async (t) => {
  for (const threshold of LOG_LEVELS) {
    await t.step(`Logger at ${threshold}`, () => {
      const { log, lines } = capture(threshold, "json");
      for (const level of LOG_LEVELS) {
        assert.equal(log.enabled(level), enabled(threshold, level), level);
        log.write(level, `e-${level}`);
      }
      assert.deepEqual(
        lines.map((line) => JSON.parse(line).event),
        LOG_LEVELS.filter((level) => enabled(threshold, level)).map((l) =>
          `e-${l}`
        ),
      );
    });
  }
});

Deno.test("Logger defaults to the info level and text lines", () => {
  const { log, lines } = capture();
  assert.equal(log.enabled("info"), true);
  assert.equal(log.enabled("debug"), false);
  log.write("debug", "open", { peer: 1 });
  log.write("info", "listen", { port: 8000 });
  assert.equal(lines.length, 1);
  const [time, rest] = [lines[0].slice(0, 24), lines[0].slice(24)];
  assert.match(time, ISO);
  assert.equal(rest, " INFO listen port=8000");
});

Deno.test("Logger without a sink writes nothing and says no level is enabled", () => {
  const log = new Logger(undefined, "debug", "json");
  for (const level of LOG_LEVELS) assert.equal(log.enabled(level), false);
  log.write("error", "boom", { code: 1 }); // must not throw
});

Deno.test("Logger stamps each line with the current time in ISO 8601", () => {
  const { log, lines } = capture("info", "json");
  const before = new Date().toISOString();
  log.write("info", "tick");
  const after = new Date().toISOString();
  const { time } = JSON.parse(lines[0]);
  assert.match(time, ISO);
  assert.ok(
    before <= time && time <= after,
    `${before} <= ${time} <= ${after}`,
  );
});

Deno.test("Logger json lines hold time, level, event and the fields, in that order", () => {
  const { log, lines } = capture("debug", "json");
  log.write("warn", "close", { peer: 7, code: 4742, by: "server", ok: false });
  const record = JSON.parse(lines[0]);
  assert.deepEqual(Object.keys(record), [
    "time",
    "level",
    "event",
    "peer",
    "code",
    "by",
    "ok",
  ]);
  assert.deepEqual({ ...record, time: "" }, {
    time: "",
    level: "warn",
    event: "close",
    peer: 7,
    code: 4742,
    by: "server",
    ok: false,
  });
});

Deno.test("formatLine text: time, upper-case level, event, then name=value in order", () => {
  assert.equal(
    formatLine("text", TIME, "info", "listen"),
    `${TIME} INFO listen`,
  );
  assert.equal(
    formatLine("text", TIME, "error", "accept", {}),
    `${TIME} ERROR accept`,
  );
  assert.equal(
    formatLine("text", TIME, "warn", "close", {
      peer: 152321774,
      key: "37fd327a",
      code: 4743,
      reason: "Cannot handle a text frame: frames must be binary",
      by: "server",
    }),
    `${TIME} WARN close peer=152321774 key=37fd327a code=4743 ` +
      `reason="Cannot handle a text frame: frames must be binary" by=server`,
  );
  assert.equal(
    formatLine("text", TIME, "debug", "open", { z: 1, a: 2 }),
    `${TIME} DEBUG open z=1 a=2`,
  );
});

Deno.test("formatLine json: the same record as one JSON object", () => {
  assert.equal(
    formatLine("json", TIME, "info", "close", { code: 1000, by: "client" }),
    `{"time":"${TIME}","level":"info","event":"close","code":1000,"by":"client"}`,
  );
  assert.equal(
    formatLine("json", TIME, "error", "accept"),
    `{"time":"${TIME}","level":"error","event":"accept"}`,
  );
});

Deno.test("formatLine leaves out undefined fields in both formats, and keeps empty and false ones", () => {
  const fields: LogFields = {
    a: undefined,
    b: 1,
    c: undefined,
    d: "",
    e: false,
    f: 0,
    g: undefined,
  };
  assert.equal(
    formatLine("text", TIME, "info", "x", fields),
    `${TIME} INFO x b=1 d="" e=false f=0`,
  );
  assert.equal(
    formatLine("json", TIME, "info", "x", fields),
    `{"time":"${TIME}","level":"info","event":"x","b":1,"d":"","e":false,"f":0}`,
  );
  assert.equal(
    formatLine("text", TIME, "info", "x", { only: undefined }),
    `${TIME} INFO x`,
  );
});

Deno.test("formatLine text quotes a value unless it is only word characters and . : / @ + -", async (t) => {
  const cases: [string | number | boolean, string][] = [
    ["server", "server"],
    ["snake_case_9", "snake_case_9"],
    ["127.0.0.1", "127.0.0.1"],
    ["::1", "::1"],
    ["2001:db8::1", "2001:db8::1"],
    ["http://host:8000/a", "http://host:8000/a"],
    ["user@host", "user@host"],
    ["a+b-c", "a+b-c"],
    [1000, "1000"],
    [-1, "-1"],
    [0.5, "0.5"],
    [1e21, "1e+21"],
    [NaN, "NaN"],
    [true, "true"],
    [false, "false"],
    ["", '""'],
    ["a b", '"a b"'],
    ["a=b", '"a=b"'],
    ["a,b", '"a,b"'],
    ['say "hi"', '"say \\"hi\\""'],
    ["back\\slash", '"back\\\\slash"'],
    ["one\ntwo", '"one\\ntwo"'],
    ["tab\there", '"tab\\there"'],
    ["[::1]", '"[::1]"'],
    ["café", '"café"'],
    ["%20", '"%20"'],
  ];
  for (const [value, written] of cases) {
    await t.step(JSON.stringify(value), () => {
      assert.equal(
        formatLine("text", TIME, "info", "e", { v: value }),
        `${TIME} INFO e v=${written}`,
      );
    });
  }
});

Deno.test("formatLine text keeps every record on one line", () => {
  const line = formatLine("text", TIME, "warn", "e", {
    a: "x\ny",
    b: "x\r\ny",
    c: "\u2028",
  });
  assert.ok(!/[\n\r]/.test(line), line);
  assert.equal(line, `${TIME} WARN e a="x\\ny" b="x\\r\\ny" c="\u2028"`);
  const json = formatLine("json", TIME, "warn", "e", { a: "x\ny" });
  assert.ok(!json.includes("\n"), json);
  assert.equal(JSON.parse(json).a, "x\ny");
});

Deno.test("formatLine text writes a field named like a record part after it, as any other", () => {
  // cluster/node.ts writes `cluster` records with an `event` field.
  assert.equal(
    formatLine("text", TIME, "warn", "cluster", { event: "lost", groups: 3 }),
    `${TIME} WARN cluster event=lost groups=3`,
  );
});

// cluster/node.ts once wrote `cluster` records with an `event` field: the
// JSON line lost the record's event to it.
Deno.test({
  name:
    "formatLine json keeps the record's time, level and event when a field has the same name",
  fn: () => {
    const record = JSON.parse(
      formatLine("json", TIME, "warn", "cluster", {
        event: "lost",
        level: "debug",
        time: "then",
        groups: 3,
      }),
    );
    assert.equal(record.event, "cluster");
    assert.equal(record.level, "warn");
    assert.equal(record.time, TIME);
    assert.equal(record.groups, 3);
  },
});

Deno.test("keyHash is 32-bit FNV-1a as eight lowercase hex digits", async (t) => {
  const cases: [string, string][] = [
    // Published FNV-1a 32-bit test vectors.
    ["", "811c9dc5"],
    ["a", "e40c292c"],
    ["foobar", "bf9cf968"],
    // Computed with an independent FNV-1a over the key's bytes.
    ["room", "37fd327a"],
    ["secret-room", "0dccbbef"],
    ["my%20room/a", "0635c73f"],
    // Hashes below 0x10000000 keep their leading zeros.
    ["cfx", "0076912c"],
    ["cvx", "004f81bc"],
  ];
  for (const [key, hash] of cases) {
    await t.step(JSON.stringify(key), () => {
      assert.equal(keyHash(key), hash);
    });
  }
});

Deno.test("keyHash tells apart keys that differ by little", () => {
  const keys = [
    "room",
    "room2",
    "Room",
    "room/",
    "a/b",
    "a%2Fb",
    "a b",
    "a%20b",
    "ab",
    "ba",
    "café",
    "cafe",
    "🔑",
    "🔒",
  ];
  const hashes = keys.map(keyHash);
  for (const hash of hashes) assert.match(hash, /^[0-9a-f]{8}$/);
  assert.equal(new Set(hashes).size, keys.length);
  // Stable: the same key gives the same tag every time.
  assert.deepEqual(keys.map(keyHash), hashes);
});

Deno.test("a record tagged with keyHash carries the key in neither format", () => {
  const key = "team-42/secret room";
  for (const format of ["text", "json"] as const) {
    const { log, lines } = capture("debug", format);
    log.write("info", "reject", { key: keyHash(key), reason: "origin" });
    assert.equal(lines.length, 1);
    assert.ok(!lines[0].includes(key), lines[0]);
    assert.ok(!lines[0].includes("team-42"), lines[0]);
    assert.ok(lines[0].includes(keyHash(key)), lines[0]);
  }
  assert.notEqual(keyHash(key), key);
  assert.equal(keyHash(key).length, 8);
});
