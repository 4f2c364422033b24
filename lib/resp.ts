/**
 * RESP2, the protocol Redis speaks by default: {@linkcode encodeCommand} and
 * {@linkcode encodeCommands} write commands as arrays of bulk strings, and
 * {@linkcode RespParser} reads replies out of a byte stream, chunk by chunk.
 *
 * The parser never trusts the server: a reply may be split at any byte and
 * many replies may share a chunk, but anything that is not RESP2 throws a
 * `SyntaxError`, and every claimed size is checked against a bound before a
 * byte of it is read. Nothing is allocated from a claimed length: bulk
 * strings and arrays grow with the bytes that actually arrive, so memory is
 * bounded by the input. RESP3 types are rejected; a client that never sends
 * `HELLO 3` never receives them.
 *
 * @example Encode a command and parse its reply
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeCommand, RespParser } from "./resp.ts";
 * const bytes = encodeCommand(["SET", "lease", "node-1", "NX", "PX", 5000]);
 * assert.equal(
 *   new TextDecoder().decode(bytes),
 *   "*6\r\n$3\r\nSET\r\n$5\r\nlease\r\n$6\r\nnode-1\r\n" +
 *     "$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n5000\r\n",
 * );
 * const parser = new RespParser();
 * parser.push(new TextEncoder().encode("+OK\r\n$-1\r\n"));
 * assert.equal(parser.read(), "OK");
 * assert.equal(parser.read(), null);
 * ```
 *
 * @module
 */

/** One argument of a command: strings are sent as UTF-8, numbers as text. */
export type CommandArg = string | number | Uint8Array;

/**
 * A parsed reply. Simple and bulk strings are strings (bulk strings decoded
 * as UTF-8), integers are numbers (bigints beyond `Number.MAX_SAFE_INTEGER`),
 * null bulk strings and null arrays are `null`, and error replies are
 * {@linkcode RespError} values.
 */
export type Reply = string | number | bigint | null | RespError | Reply[];

/**
 * An error reply (`-ERR ...`): a value the parser returns, never throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RespError } from "./resp.ts";
 * const error = new RespError("WRONGTYPE Operation against a key holding the wrong kind of value");
 * assert.equal(error.code, "WRONGTYPE");
 * ```
 */
export class RespError {
  /** The whole error line, without the leading `-`. */
  readonly message: string;
  /** The first word of the message (`ERR`, `WRONGTYPE`, `NOSCRIPT`...). */
  readonly code: string;

  /**
   * Creates the value.
   *
   * @param message The error line, without the leading `-`.
   */
  constructor(message: string) {
    this.message = message;
    const space = message.indexOf(" ");
    this.code = space < 0 ? message : message.slice(0, space);
  }

  /**
   * The message, for string contexts.
   *
   * @returns The message.
   */
  toString(): string {
    return this.message;
  }
}

/** Bounds on what a {@linkcode RespParser} accepts. */
export interface RespParserOptions {
  /**
   * The longest bulk string, in bytes (Redis's `proto-max-bulk-len`).
   *
   * @default {536870912}
   */
  maxBulkLength?: number;
  /**
   * The most elements of one array.
   *
   * @default {1048576}
   */
  maxArrayLength?: number;
  /**
   * The most arrays nested in one another.
   *
   * @default {16}
   */
  maxDepth?: number;
  /**
   * The longest line (a simple string, an error, an integer or a length),
   * in bytes without its CRLF.
   *
   * @default {65536}
   */
  maxLineLength?: number;
}

/** 512 MiB, Redis's own limit on a bulk string. */
const MAX_BULK_LENGTH = 512 * 1024 * 1024;
const MAX_ARRAY_LENGTH = 1024 * 1024;
const MAX_DEPTH = 16;
const MAX_LINE_LENGTH = 64 * 1024;

const CR = 0x0d;
const LF = 0x0a;
const MINUS = 0x2d;
const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;

const encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF in the value instead of eating it.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

function _fail(what: string): never {
  throw new SyntaxError(`Cannot parse reply: ${what}`);
}

function _concat(parts: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let pos = 0;
  for (const part of parts) {
    out.set(part, pos);
    pos += part.length;
  }
  return out;
}

function _decode(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    // V8 strings stop short of 2^29 characters: a legal bulk string can be
    // longer than any string.
    return _fail(
      `a bulk string of ${bytes.length} bytes does not fit a string`,
    );
  }
}

/** Parses `:<int64>`; a number when it is safe, a bigint beyond. */
function _integer(body: Uint8Array): number | bigint {
  const start = body[0] === MINUS ? 1 : 0;
  const digits = body.length - start;
  if (digits < 1 || digits > 19) _fail("invalid integer");
  let n = 0;
  for (let i = start; i < body.length; i++) {
    const d = body[i] - 0x30;
    if (d < 0 || d > 9) _fail("invalid integer");
    n = n * 10 + d;
  }
  // Up to 15 digits the sum above is exact.
  if (digits <= 15) return start === 1 ? 0 - n : n;
  const big = BigInt(decoder.decode(body));
  if (big < MIN_INT64 || big > MAX_INT64) _fail("integer overflows int64");
  return big >= -BigInt(Number.MAX_SAFE_INTEGER) &&
      big <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(big)
    : big;
}

/** Parses the length of a bulk string or an array: -1 (null) or 0..max. */
function _length(body: Uint8Array, max: number, what: string): number {
  if (body.length === 2 && body[0] === MINUS && body[1] === 0x31) return -1;
  if (body.length === 0) _fail(`invalid ${what} length`);
  let n = 0;
  for (const byte of body) {
    const d = byte - 0x30;
    if (d < 0 || d > 9) _fail(`invalid ${what} length`);
    n = n * 10 + d;
    if (n > max) _fail(`${what} length exceeds ${max}`);
  }
  return n;
}

interface _Frame {
  /** The elements the array announced. */
  length: number;
  items: Reply[];
}

/**
 * An incremental RESP2 reply parser: {@linkcode RespParser.push} the bytes
 * of a stream as they arrive, in chunks of any size, and
 * {@linkcode RespParser.read} the replies they complete, in order.
 *
 * A `SyntaxError` from `push` is final: the stream cannot be resynchronized,
 * so every later `push` throws too. The replies completed before the bad
 * byte stay readable.
 *
 * @example Replies split across chunks
 * ```ts
 * import assert from "node:assert/strict";
 * import { RespParser } from "./resp.ts";
 * const bytes = new TextEncoder().encode("*2\r\n$5\r\nhello\r\n:42\r\n$-1\r\n");
 * const parser = new RespParser();
 * parser.push(bytes.subarray(0, 10));
 * assert.equal(parser.read(), undefined);
 * parser.push(bytes.subarray(10));
 * assert.deepEqual(parser.read(), ["hello", 42]);
 * assert.equal(parser.read(), null);
 * assert.equal(parser.read(), undefined);
 * ```
 */
export class RespParser {
  readonly #maxBulk: number;
  readonly #maxArray: number;
  readonly #maxDepth: number;
  readonly #maxLine: number;
  /** The start of a line that has no LF yet (copies). */
  #line: Uint8Array[] = [];
  #lineSize = 0;
  /** The length of the bulk string being read, -1 when none. */
  #bulkLength = -1;
  /** What arrived of it, its CRLF included (copies). */
  #bulk: Uint8Array[] = [];
  #bulkSize = 0;
  /** The arrays still open, innermost last. */
  #stack: _Frame[] = [];
  #replies: Reply[] = [];
  #head = 0;
  #error: SyntaxError | undefined;

  /**
   * Creates a parser.
   *
   * @param options Bounds on what the parser accepts.
   * @throws {RangeError} When a bound is not a positive integer.
   */
  constructor(options: RespParserOptions = {}) {
    this.#maxBulk = _bound(options.maxBulkLength, MAX_BULK_LENGTH, "bulk");
    this.#maxArray = _bound(options.maxArrayLength, MAX_ARRAY_LENGTH, "array");
    this.#maxDepth = _bound(options.maxDepth, MAX_DEPTH, "depth");
    this.#maxLine = _bound(options.maxLineLength, MAX_LINE_LENGTH, "line");
  }

  /**
   * Parses the next chunk of the stream. The parser copies what it keeps,
   * so the caller may reuse `bytes` as soon as this returns.
   *
   * @param bytes The next bytes of the stream, any number of them.
   * @throws {SyntaxError} When the stream is not RESP2 or passes a bound,
   * now or in an earlier chunk.
   */
  push(bytes: Uint8Array): void {
    if (this.#error !== undefined) throw this.#error;
    try {
      this.#push(bytes);
    } catch (error) {
      if (error instanceof SyntaxError) this.#error = error;
      throw error;
    }
  }

  /**
   * Takes the next complete reply.
   *
   * @returns The reply, or `undefined` when none is complete yet (a `null`
   * reply is `null`).
   */
  read(): Reply | undefined {
    if (this.#head === this.#replies.length) return undefined;
    const reply = this.#replies[this.#head];
    this.#replies[this.#head++] = null;
    if (this.#head === this.#replies.length) {
      this.#replies.length = 0;
      this.#head = 0;
    }
    return reply;
  }

  /** Whether a reply has begun and not ended: a stream cut here is cut short. */
  get partial(): boolean {
    return this.#lineSize > 0 || this.#bulkLength >= 0 ||
      this.#stack.length > 0;
  }

  #push(bytes: Uint8Array): void {
    const end = bytes.length;
    let pos = 0;
    while (pos < end) {
      if (this.#bulkLength >= 0) {
        pos = this.#readBulk(bytes, pos);
        continue;
      }
      const lf = bytes.indexOf(LF, pos);
      if (lf < 0) {
        const size = this.#lineSize + end - pos;
        // The last byte may be the CR of the CRLF.
        if (size > this.#maxLine + 1) {
          _fail(`line longer than ${this.#maxLine} bytes`);
        }
        this.#line.push(bytes.slice(pos));
        this.#lineSize = size;
        return;
      }
      let line = bytes.subarray(pos, lf);
      if (this.#lineSize > 0) {
        this.#line.push(line);
        line = _concat(this.#line, this.#lineSize + line.length);
        this.#line = [];
        this.#lineSize = 0;
      }
      pos = lf + 1;
      this.#readLine(line);
    }
  }

  /** Handles one line, its LF cut off. */
  #readLine(line: Uint8Array): void {
    const n = line.length;
    if (n - 1 > this.#maxLine) _fail(`line longer than ${this.#maxLine} bytes`);
    if (n === 0 || line[n - 1] !== CR) _fail("LF without CR");
    if (n === 1) _fail("empty line");
    const body = line.subarray(1, n - 1);
    if (body.includes(CR)) _fail("CR inside a line");
    switch (line[0]) {
      case 0x2b: // +
        return this.#emit(decoder.decode(body));
      case 0x2d: // -
        return this.#emit(new RespError(decoder.decode(body)));
      case 0x3a: // :
        return this.#emit(_integer(body));
      case 0x24: { // $
        const length = _length(body, this.#maxBulk, "bulk string");
        if (length < 0) return this.#emit(null);
        this.#bulkLength = length;
        return;
      }
      case 0x2a: { // *
        const length = _length(body, this.#maxArray, "array");
        if (length < 0) return this.#emit(null);
        if (this.#stack.length >= this.#maxDepth) {
          _fail(`arrays nested deeper than ${this.#maxDepth}`);
        }
        if (length === 0) return this.#emit([]);
        this.#stack.push({ length, items: [] });
        return;
      }
      default:
        _fail(`unexpected type byte 0x${line[0].toString(16)}`);
    }
  }

  /** Reads what `bytes` holds of the current bulk string and its CRLF. */
  #readBulk(bytes: Uint8Array, pos: number): number {
    const length = this.#bulkLength;
    const need = length + 2 - this.#bulkSize;
    const take = Math.min(need, bytes.length - pos);
    let body: Uint8Array;
    if (this.#bulkSize === 0 && take === need) {
      body = bytes.subarray(pos, pos + take);
    } else {
      this.#bulk.push(bytes.slice(pos, pos + take));
      this.#bulkSize += take;
      if (take < need) return pos + take;
      body = _concat(this.#bulk, this.#bulkSize);
      this.#bulk = [];
      this.#bulkSize = 0;
    }
    if (body[length] !== CR || body[length + 1] !== LF) {
      _fail("bulk string longer than its length");
    }
    this.#bulkLength = -1;
    this.#emit(_decode(body.subarray(0, length)));
    return pos + take;
  }

  /** Adds a value to the innermost open array, closing every array it fills. */
  #emit(value: Reply): void {
    const stack = this.#stack;
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      top.items.push(value);
      if (top.items.length < top.length) return;
      stack.pop();
      value = top.items;
    }
    this.#replies.push(value);
  }
}

function _bound(
  value: number | undefined,
  fallback: number,
  name: string,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create parser: ${name} bound ${value} is not a positive integer`,
    );
  }
  return value;
}

function _digits(n: number): number {
  let digits = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    digits++;
  }
  return digits;
}

/** Writes `<type><n>\r\n` at `pos` and returns where it ends. */
function _writeHeader(
  out: Uint8Array,
  pos: number,
  type: number,
  n: number,
): number {
  out[pos] = type;
  const end = pos + 1 + _digits(n);
  for (let i = end - 1; i > pos; i--) {
    out[i] = 0x30 + n % 10;
    n = Math.floor(n / 10);
  }
  out[end] = CR;
  out[end + 1] = LF;
  return end + 2;
}

function _argBytes(arg: CommandArg, index: number): Uint8Array {
  if (typeof arg === "string") return encoder.encode(arg);
  if (typeof arg === "number") {
    if (!Number.isFinite(arg)) {
      throw new RangeError(
        `Cannot encode command: argument ${index} is ${arg}, not a finite number`,
      );
    }
    return encoder.encode(String(arg));
  }
  if (arg instanceof Uint8Array) return arg;
  throw new TypeError(
    `Cannot encode command: argument ${index} is ${
      arg === null ? "null" : typeof arg
    }, not a string, number or Uint8Array`,
  );
}

/**
 * Encodes several commands into one buffer, to send them in one write
 * (pipelining): Redis answers them in order.
 *
 * @param commands The commands, each a name and its arguments.
 * @returns The bytes of every command, one after the other.
 * @throws {RangeError} When a command is empty or a number is not finite.
 * @throws {TypeError} When an argument is not a string, number or
 * `Uint8Array`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeCommands } from "./resp.ts";
 * const bytes = encodeCommands([["PING"], ["GET", "k"]]);
 * assert.equal(
 *   new TextDecoder().decode(bytes),
 *   "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
 * );
 * ```
 */
export function encodeCommands(
  commands: readonly (readonly CommandArg[])[],
): Uint8Array {
  const encoded: Uint8Array[][] = [];
  let size = 0;
  for (const args of commands) {
    if (args.length === 0) {
      throw new RangeError("Cannot encode command: it has no name");
    }
    const parts = args.map(_argBytes);
    size += 3 + _digits(parts.length);
    for (const part of parts) size += 5 + _digits(part.length) + part.length;
    encoded.push(parts);
  }
  const out = new Uint8Array(size);
  let pos = 0;
  for (const parts of encoded) {
    pos = _writeHeader(out, pos, 0x2a, parts.length);
    for (const part of parts) {
      pos = _writeHeader(out, pos, 0x24, part.length);
      out.set(part, pos);
      pos += part.length;
      out[pos++] = CR;
      out[pos++] = LF;
    }
  }
  return out;
}

/**
 * Encodes one command as a RESP2 array of bulk strings, the form Redis
 * accepts for any command and any bytes.
 *
 * @param args The command name, then its arguments.
 * @returns The bytes to send.
 * @throws {RangeError} When `args` is empty or a number is not finite.
 * @throws {TypeError} When an argument is not a string, number or
 * `Uint8Array`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeCommand } from "./resp.ts";
 * const bytes = encodeCommand(["PEXPIRE", "lease", 500]);
 * assert.equal(
 *   new TextDecoder().decode(bytes),
 *   "*3\r\n$7\r\nPEXPIRE\r\n$5\r\nlease\r\n$3\r\n500\r\n",
 * );
 * ```
 */
export function encodeCommand(args: readonly CommandArg[]): Uint8Array {
  return encodeCommands([args]);
}
