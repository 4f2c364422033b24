// Unit tests of lib/resp.ts: exact command bytes, every reply type parsed
// whole, byte by byte and at every split point, many replies per chunk, and
// the garbage and the oversized claims a hostile server could send.

import assert from "node:assert/strict";
import {
  encodeCommand,
  encodeCommands,
  type Reply,
  RespError,
  RespParser,
} from "../../lib/resp.ts";

const te = new TextEncoder();
const td = new TextDecoder();

function bytes(text: string): Uint8Array {
  return te.encode(text);
}

/** Pushes `chunks` in order and reads every reply they complete. */
function parseChunks(
  chunks: Uint8Array[],
  parser: RespParser = new RespParser(),
): Reply[] {
  const replies: Reply[] = [];
  for (const chunk of chunks) {
    parser.push(chunk);
    for (let r; (r = parser.read()) !== undefined;) replies.push(r);
  }
  return replies;
}

function byteByByte(data: Uint8Array): Uint8Array[] {
  return Array.from(data, (_, i) => data.subarray(i, i + 1));
}

/** Every reply type, as wire text and as the value it parses to. */
const REPLIES: { name: string; wire: string; value: Reply }[] = [
  { name: "simple string", wire: "+OK\r\n", value: "OK" },
  { name: "empty simple string", wire: "+\r\n", value: "" },
  { name: "UTF-8 simple string", wire: "+héllo\r\n", value: "héllo" },
  {
    name: "error",
    wire: "-WRONGTYPE Operation against a key\r\n",
    value: new RespError("WRONGTYPE Operation against a key"),
  },
  {
    name: "one-word error",
    wire: "-NOAUTH\r\n",
    value: new RespError("NOAUTH"),
  },
  { name: "zero", wire: ":0\r\n", value: 0 },
  { name: "integer", wire: ":1000\r\n", value: 1000 },
  { name: "negative integer", wire: ":-2\r\n", value: -2 },
  {
    name: "largest safe integer",
    wire: ":9007199254740991\r\n",
    value: Number.MAX_SAFE_INTEGER,
  },
  {
    name: "smallest safe integer",
    wire: ":-9007199254740991\r\n",
    value: Number.MIN_SAFE_INTEGER,
  },
  {
    name: "integer beyond safe",
    wire: ":9007199254740993\r\n",
    value: 9007199254740993n,
  },
  {
    name: "int64 max",
    wire: ":9223372036854775807\r\n",
    value: 9223372036854775807n,
  },
  {
    name: "int64 min",
    wire: ":-9223372036854775808\r\n",
    value: -9223372036854775808n,
  },
  { name: "bulk string", wire: "$5\r\nhello\r\n", value: "hello" },
  { name: "empty bulk string", wire: "$0\r\n\r\n", value: "" },
  { name: "bulk string with CRLF", wire: "$4\r\na\r\nb\r\n", value: "a\r\nb" },
  { name: "UTF-8 bulk string", wire: "$4\r\n€!\r\n", value: "€!" },
  { name: "bulk string with BOM", wire: "$3\r\n\ufeff\r\n", value: "\ufeff" },
  { name: "null bulk string", wire: "$-1\r\n", value: null },
  { name: "empty array", wire: "*0\r\n", value: [] },
  { name: "null array", wire: "*-1\r\n", value: null },
  {
    name: "array of every type",
    wire: "*6\r\n+a\r\n-ERR b\r\n:3\r\n$1\r\nc\r\n$-1\r\n*-1\r\n",
    value: ["a", new RespError("ERR b"), 3, "c", null, null],
  },
  {
    name: "nested arrays",
    wire: "*3\r\n*2\r\n:1\r\n*1\r\n*0\r\n*0\r\n:2\r\n",
    value: [[1, [[]]], [], 2],
  },
];

Deno.test("encodeCommand writes an array of bulk strings", async (t) => {
  const cases: { args: (string | number | Uint8Array)[]; wire: string }[] = [
    { args: ["PING"], wire: "*1\r\n$4\r\nPING\r\n" },
    {
      args: ["SET", "k", "v", "NX", "PX", 30000],
      wire: "*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n" +
        "$2\r\nPX\r\n$5\r\n30000\r\n",
    },
    { args: ["ECHO", ""], wire: "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n" },
    { args: ["ECHO", "é€"], wire: "*2\r\n$4\r\nECHO\r\n$5\r\né€\r\n" },
    { args: ["ECHO", "a\r\nb"], wire: "*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n" },
    {
      args: ["INCRBYFLOAT", "k", -1.5],
      wire: "*3\r\n$11\r\nINCRBYFLOAT\r\n$1\r\nk\r\n$4\r\n-1.5\r\n",
    },
    { args: ["X", -0], wire: "*2\r\n$1\r\nX\r\n$1\r\n0\r\n" },
    {
      args: ["X", "0123456789"],
      wire: "*2\r\n$1\r\nX\r\n$10\r\n0123456789\r\n",
    },
  ];
  for (const { args, wire } of cases) {
    await t.step(JSON.stringify(args), () => {
      assert.equal(td.decode(encodeCommand(args)), wire);
    });
  }
  await t.step("ten arguments", () => {
    const args = Array.from({ length: 10 }, () => "a");
    assert.equal(
      td.decode(encodeCommand(args)),
      "*10\r\n" + "$1\r\na\r\n".repeat(10),
    );
  });
  await t.step("binary argument, copied as is", () => {
    const value = new Uint8Array([0, 0xff, 0x0d, 0x0a]);
    assert.deepEqual(
      encodeCommand(["SET", value]),
      new Uint8Array([
        ...bytes("*2\r\n$3\r\nSET\r\n$4\r\n"),
        ...value,
        ...bytes("\r\n"),
      ]),
    );
  });
});

Deno.test("encodeCommands concatenates commands for one write", () => {
  const commands = [["MULTI"], ["INCR", "n"], ["PEXPIRE", "n", 100], ["EXEC"]];
  const expected = commands.map((c) => td.decode(encodeCommand(c))).join("");
  assert.equal(td.decode(encodeCommands(commands)), expected);
  assert.deepEqual(encodeCommands([]), new Uint8Array(0));
});

Deno.test("encodeCommand rejects what it cannot encode", async (t) => {
  await t.step("no arguments", () => {
    assert.throws(() => encodeCommand([]), {
      name: "RangeError",
      message: "Cannot encode command: it has no name",
    });
    assert.throws(() => encodeCommands([["PING"], []]), RangeError);
  });
  for (const n of [NaN, Infinity, -Infinity]) {
    await t.step(`${n}`, () => {
      assert.throws(() => encodeCommand(["SET", "k", n]), {
        name: "RangeError",
        message:
          `Cannot encode command: argument 2 is ${n}, not a finite number`,
      });
    });
  }
  for (const value of [null, undefined, true, {}, 1n]) {
    await t.step(`${typeof value} ${value}`, () => {
      assert.throws(
        () => encodeCommand(["SET", value as unknown as string]),
        TypeError,
      );
    });
  }
});

Deno.test("RespParser parses every reply type", async (t) => {
  for (const { name, wire, value } of REPLIES) {
    await t.step(name, () => {
      const parser = new RespParser();
      assert.deepEqual(parseChunks([bytes(wire)], parser), [value]);
      assert.equal(parser.read(), undefined);
      assert.equal(parser.partial, false);
    });
  }
  await t.step("an error reply is a value with a code", () => {
    const [error] = parseChunks([bytes("-NOSCRIPT No matching script\r\n")]);
    assert.ok(error instanceof RespError);
    assert.equal(error.code, "NOSCRIPT");
    assert.equal(error.message, "NOSCRIPT No matching script");
    assert.equal(`${error}`, "NOSCRIPT No matching script");
  });
});

Deno.test("RespParser parses a reply split at every byte", async (t) => {
  for (const { name, wire, value } of REPLIES) {
    await t.step(name, () => {
      const data = bytes(wire);
      const parser = new RespParser();
      for (let i = 0; i < data.length - 1; i++) {
        parser.push(data.subarray(i, i + 1));
        assert.equal(parser.read(), undefined, `complete after byte ${i}`);
        assert.equal(parser.partial, true);
      }
      parser.push(data.subarray(data.length - 1));
      assert.deepEqual(parser.read(), value);
      assert.equal(parser.partial, false);
    });
  }
});

Deno.test("RespParser parses a reply split in two at any point", () => {
  for (const { name, wire, value } of REPLIES) {
    const data = bytes(wire);
    for (let i = 0; i <= data.length; i++) {
      const replies = parseChunks([data.subarray(0, i), data.subarray(i)]);
      assert.deepEqual(replies, [value], `${name} split at ${i}`);
    }
  }
});

Deno.test("RespParser parses many replies from one chunk", () => {
  const all = bytes(REPLIES.map((r) => r.wire).join(""));
  const values = REPLIES.map((r) => r.value);
  assert.deepEqual(parseChunks([all]), values);
  assert.deepEqual(parseChunks(byteByByte(all)), values);
  // Chunks that end in the middle of one reply and start in another.
  const chunks = [];
  for (let i = 0; i < all.length; i += 7) chunks.push(all.subarray(i, i + 7));
  assert.deepEqual(parseChunks(chunks), values);
  // A thousand pipelined replies.
  const many = bytes(":1\r\n$1\r\nx\r\n".repeat(1000));
  const replies = parseChunks([many]);
  assert.equal(replies.length, 2000);
  assert.deepEqual(replies.slice(0, 4), [1, "x", 1, "x"]);
});

Deno.test("RespParser copies what it keeps of a chunk", () => {
  // The client reads into one reused buffer: a partial line or bulk string
  // must survive the buffer being overwritten.
  const buf = new Uint8Array(64);
  const parser = new RespParser();
  for (const part of ["$5\r", "\nhel", "lo\r\n+O", "K\r\n"]) {
    buf.set(bytes(part));
    parser.push(buf.subarray(0, part.length));
    buf.fill(0x21);
  }
  assert.equal(parser.read(), "hello");
  assert.equal(parser.read(), "OK");
  assert.equal(parser.read(), undefined);
});

Deno.test("RespParser throws a SyntaxError on garbage", async (t) => {
  const cases: { name: string; wire: string; message: string }[] = [
    {
      name: "unknown type",
      wire: "?x\r\n",
      message: "unexpected type byte 0x3f",
    },
    {
      name: "HTTP",
      wire: "HTTP/1.1 400 Bad Request\r\n",
      message: "unexpected type byte 0x48",
    },
    { name: "RESP3 null", wire: "_\r\n", message: "unexpected type byte 0x5f" },
    {
      name: "RESP3 boolean",
      wire: "#t\r\n",
      message: "unexpected type byte 0x23",
    },
    { name: "RESP3 map", wire: "%1\r\n", message: "unexpected type byte 0x25" },
    { name: "LF without CR", wire: "+OK\n", message: "LF without CR" },
    { name: "bare LF", wire: "\n", message: "LF without CR" },
    { name: "empty line", wire: "\r\n", message: "empty line" },
    {
      name: "CR inside a line",
      wire: "+O\rK\r\n",
      message: "CR inside a line",
    },
    { name: "empty integer", wire: ":\r\n", message: "invalid integer" },
    { name: "lone minus", wire: ":-\r\n", message: "invalid integer" },
    { name: "letter in integer", wire: ":12a\r\n", message: "invalid integer" },
    { name: "plus sign", wire: ":+1\r\n", message: "invalid integer" },
    { name: "float", wire: ":1.5\r\n", message: "invalid integer" },
    {
      name: "20 digits",
      wire: ":12345678901234567890\r\n",
      message: "invalid integer",
    },
    {
      name: "int64 overflow",
      wire: ":9223372036854775808\r\n",
      message: "integer overflows int64",
    },
    {
      name: "empty bulk length",
      wire: "$\r\n",
      message: "invalid bulk string length",
    },
    {
      name: "letters as bulk length",
      wire: "$abc\r\n",
      message: "invalid bulk string length",
    },
    {
      name: "bulk length -2",
      wire: "$-2\r\n",
      message: "invalid bulk string length",
    },
    {
      name: "bulk length -0",
      wire: "$-0\r\n",
      message: "invalid bulk string length",
    },
    {
      name: "bulk string longer than its length",
      wire: "$3\r\nabcd\r\n",
      message: "bulk string longer than its length",
    },
    {
      name: "bulk string without CRLF",
      wire: "$3\r\nabc\n\n",
      message: "bulk string longer than its length",
    },
    { name: "array length x", wire: "*x\r\n", message: "invalid array length" },
    {
      name: "array length -2",
      wire: "*-2\r\n",
      message: "invalid array length",
    },
    {
      name: "garbage inside an array",
      wire: "*2\r\n:1\r\n!\r\n",
      message: "unexpected type byte 0x21",
    },
  ];
  for (const { name, wire, message } of cases) {
    await t.step(name, () => {
      const expected = {
        name: "SyntaxError",
        message: `Cannot parse reply: ${message}`,
      };
      assert.throws(() => parseChunks([bytes(wire)]), expected);
      assert.throws(() => parseChunks(byteByByte(bytes(wire))), expected);
    });
  }
});

Deno.test("RespParser keeps failing after a SyntaxError", () => {
  const parser = new RespParser();
  assert.throws(() => parser.push(bytes("+OK\r\n:1\r\n?\r\n+late\r\n")), {
    name: "SyntaxError",
  });
  // The replies before the bad byte are still there, nothing after it.
  assert.equal(parser.read(), "OK");
  assert.equal(parser.read(), 1);
  assert.equal(parser.read(), undefined);
  assert.throws(() => parser.push(bytes("+OK\r\n")), SyntaxError);
  assert.equal(parser.read(), undefined);
});

Deno.test("RespParser bounds bulk strings without allocating their claim", () => {
  const max = 512 * 1024 * 1024;
  assert.throws(() => parseChunks([bytes(`$${max + 1}\r\n`)]), {
    name: "SyntaxError",
    message: `Cannot parse reply: bulk string length exceeds ${max}`,
  });
  assert.throws(
    () => parseChunks([bytes("$99999999999999999999999999\r\n")]),
    SyntaxError,
  );
  // The largest legal claim costs only the bytes that arrive.
  const before = Deno.memoryUsage().external;
  const parser = new RespParser();
  parser.push(bytes(`$${max}\r\nabc`));
  assert.equal(parser.read(), undefined);
  assert.equal(parser.partial, true);
  assert.ok(Deno.memoryUsage().external - before < 64 * 1024 * 1024);

  const small = { maxBulkLength: 4 };
  assert.deepEqual(
    parseChunks([bytes("$4\r\nabcd\r\n")], new RespParser(small)),
    [
      "abcd",
    ],
  );
  assert.throws(() => parseChunks([bytes("$5\r\n")], new RespParser(small)), {
    message: "Cannot parse reply: bulk string length exceeds 4",
  });
});

Deno.test("RespParser bounds array lengths", () => {
  assert.equal(parseChunks([bytes("*1048576\r\n")]).length, 0);
  assert.throws(() => parseChunks([bytes("*1048577\r\n")]), {
    name: "SyntaxError",
    message: "Cannot parse reply: array length exceeds 1048576",
  });
  const parser = () => new RespParser({ maxArrayLength: 2 });
  assert.deepEqual(parseChunks([bytes("*2\r\n:1\r\n:2\r\n")], parser()), [
    [1, 2],
  ]);
  assert.throws(() => parseChunks([bytes("*3\r\n")], parser()), SyntaxError);
});

Deno.test("RespParser bounds the nesting of arrays", async (t) => {
  const nested = (depth: number) => bytes("*1\r\n".repeat(depth) + ":7\r\n");
  await t.step("16 levels by default", () => {
    let value: Reply = 7;
    for (let i = 0; i < 16; i++) value = [value];
    assert.deepEqual(parseChunks([nested(16)]), [value]);
    assert.throws(() => parseChunks([nested(17)]), {
      name: "SyntaxError",
      message: "Cannot parse reply: arrays nested deeper than 16",
    });
  });
  await t.step("an empty array counts as a level", () => {
    const wire = bytes("*1\r\n".repeat(16) + "*0\r\n");
    assert.throws(() => parseChunks([wire]), SyntaxError);
  });
  await t.step("a hostile depth fails early", () => {
    assert.throws(() => parseChunks([nested(1_000_000)]), SyntaxError);
  });
  await t.step("option", () => {
    const parser = () => new RespParser({ maxDepth: 2 });
    assert.deepEqual(parseChunks([nested(2)], parser()), [[[7]]]);
    assert.throws(() => parseChunks([nested(3)], parser()), SyntaxError);
  });
});

Deno.test("RespParser bounds lines without CRLF", async (t) => {
  const max = 64 * 1024;
  await t.step("a line of the limit passes", () => {
    const wire = bytes("+" + "a".repeat(max - 1) + "\r\n");
    assert.deepEqual(parseChunks([wire]), ["a".repeat(max - 1)]);
    assert.deepEqual(parseChunks(byteByByte(wire)), ["a".repeat(max - 1)]);
  });
  await t.step("a longer line fails, whole or split", () => {
    const wire = bytes("+" + "a".repeat(max) + "\r\n");
    const expected = {
      name: "SyntaxError",
      message: `Cannot parse reply: line longer than ${max} bytes`,
    };
    assert.throws(() => parseChunks([wire]), expected);
    assert.throws(() => parseChunks(byteByByte(wire)), expected);
  });
  await t.step("an endless line fails before its end", () => {
    const parser = new RespParser();
    const chunk = bytes("+" + "a".repeat(1023));
    let pushed = 0;
    assert.throws(() => {
      for (; pushed < 1000; pushed++) parser.push(chunk);
    }, SyntaxError);
    assert.equal(pushed, max / 1024);
    assert.throws(() => new RespParser().push(new Uint8Array(max + 2)), {
      message: `Cannot parse reply: line longer than ${max} bytes`,
    });
  });
  await t.step("option", () => {
    const parser = () => new RespParser({ maxLineLength: 3 });
    assert.deepEqual(parseChunks([bytes("+ab\r\n")], parser()), ["ab"]);
    assert.throws(
      () => parseChunks([bytes("+abc\r\n")], parser()),
      SyntaxError,
    );
    assert.throws(() => parseChunks([bytes("+abcd")], parser()), SyntaxError);
  });
});

Deno.test("RespParser rejects bounds that are not positive integers", () => {
  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => new RespParser({ maxDepth: bad }), {
      name: "RangeError",
      message:
        `Cannot create parser: depth bound ${bad} is not a positive integer`,
    });
  }
});
