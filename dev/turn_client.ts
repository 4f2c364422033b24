/**
 * A small TURN client over UDP, for tests against a real coturn: it makes one
 * allocation (RFC 8656 Allocate) with long-term credentials, as a browser
 * would, and says what coturn answered. Each {@linkcode allocate} uses a
 * socket of its own (a 5-tuple of its own), so each success is one allocation
 * coturn counts against the username's `user-quota`.
 *
 * `node:dgram` carries the datagrams (`Deno.listenDatagram` is unstable) and
 * `node:crypto` the MD5 of the long-term key (Web Crypto has no MD5).
 *
 * @module
 */

import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { createHash, createHmac } from "node:crypto";

const _MAGIC = 0x2112a442;
const _ALLOCATE = 0x0003;
const _SUCCESS = 0x0103;
const _ERROR = 0x0113;
const _USERNAME = 0x0006;
const _MESSAGE_INTEGRITY = 0x0008;
const _ERROR_CODE = 0x0009;
const _REALM = 0x0014;
const _NONCE = 0x0015;
const _REQUESTED_TRANSPORT = 0x0019;
/** Sends of one request before giving up (UDP may drop one). */
const _TRIES = 3;

/** What coturn answered an Allocate with credentials. */
export interface AllocateResult {
  /** `true` for a success response. */
  ok: boolean;
  /** The error code (`486` Allocation Quota Reached...), 0 on success. */
  code: number;
  /** The error's reason phrase, `""` on success. */
  reason: string;
}

/** Options of {@linkcode allocate}. */
export interface AllocateOptions {
  /** The TURN server's address. @default {"127.0.0.1"} */
  host?: string;
  /** Its UDP port. */
  port: number;
  /** The TURN username (`<expiry>:<id>` from `/ice-servers`). */
  username: string;
  /** The TURN password (the `credential`). */
  credential: string;
  /** Milliseconds to wait for each answer. @default {2000} */
  timeout?: number;
}

/** An allocation kept open until disposed of (its socket closed). */
export interface Allocation extends AllocateResult, AsyncDisposable {}

function _attribute(type: number, value: Uint8Array): Buffer {
  const padded = Buffer.alloc(4 + Math.ceil(value.length / 4) * 4);
  padded.writeUInt16BE(type, 0);
  padded.writeUInt16BE(value.length, 2);
  padded.set(value, 4);
  return padded;
}

function _message(
  transaction: Uint8Array,
  attributes: Buffer[],
  key?: Buffer,
): Buffer {
  const body = Buffer.concat(attributes);
  const header = Buffer.alloc(20);
  header.writeUInt16BE(_ALLOCATE, 0);
  header.writeUInt32BE(_MAGIC, 4);
  header.set(transaction, 8);
  if (key === undefined) {
    header.writeUInt16BE(body.length, 2);
    return Buffer.concat([header, body]);
  }
  // The HMAC covers the message with its length already counting the
  // MESSAGE-INTEGRITY attribute (4 + 20 bytes) that follows.
  header.writeUInt16BE(body.length + 24, 2);
  const mac = createHmac("sha1", key).update(Buffer.concat([header, body]))
    .digest();
  return Buffer.concat([header, body, _attribute(_MESSAGE_INTEGRITY, mac)]);
}

function _parse(
  bytes: Buffer,
  transaction: Uint8Array,
): { type: number; attributes: Map<number, Buffer> } | undefined {
  if (bytes.length < 20 || bytes.readUInt32BE(4) !== _MAGIC) return undefined;
  if (!bytes.subarray(8, 20).equals(Buffer.from(transaction))) return undefined;
  const attributes = new Map<number, Buffer>();
  const end = Math.min(bytes.length, 20 + bytes.readUInt16BE(2));
  for (let at = 20; at + 4 <= end;) {
    const type = bytes.readUInt16BE(at);
    const length = bytes.readUInt16BE(at + 2);
    attributes.set(type, bytes.subarray(at + 4, at + 4 + length));
    at += 4 + Math.ceil(length / 4) * 4;
  }
  return { type: bytes.readUInt16BE(0), attributes };
}

/**
 * Makes one allocation: an Allocate without credentials (answered 401 with
 * the realm and a nonce), then one signed with the long-term key
 * `MD5(username:realm:credential)`. The allocation lives until the result
 * is disposed of (its socket closes; coturn lets it expire).
 *
 * @param options The server, the credentials and the timeout.
 * @returns What coturn answered, to dispose of.
 * @throws {Error} When coturn does not answer within the timeout, after
 * {@linkcode _TRIES} sends.
 *
 * @example
 * ```ts ignore
 * import { allocate } from "./turn_client.ts";
 * await using relay = await allocate({ port: 3478, username, credential });
 * console.log(relay.ok ? "allocated" : `${relay.code} ${relay.reason}`);
 * ```
 */
export async function allocate(options: AllocateOptions): Promise<Allocation> {
  const { host = "127.0.0.1", port, username, credential } = options;
  const timeout = options.timeout ?? 2000;
  const socket = dgram.createSocket("udp4");
  const close = () =>
    new Promise<void>((resolve) => {
      try {
        socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, "127.0.0.1", () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const transport = _attribute(
      _REQUESTED_TRANSPORT,
      Uint8Array.of(17, 0, 0, 0),
    );
    const ask = async (attributes: Buffer[], key?: Buffer) => {
      const transaction = crypto.getRandomValues(new Uint8Array(12));
      const request = _message(transaction, attributes, key);
      for (let attempt = 0; attempt < _TRIES; attempt++) {
        const answer = await new Promise<
          ReturnType<typeof _parse> | undefined
        >((resolve) => {
          const timer = setTimeout(() => done(undefined), timeout);
          const onMessage = (bytes: Buffer) => {
            const parsed = _parse(bytes, transaction);
            if (parsed !== undefined) done(parsed);
          };
          const done = (value: ReturnType<typeof _parse> | undefined) => {
            clearTimeout(timer);
            socket.off("message", onMessage);
            resolve(value);
          };
          socket.on("message", onMessage);
          socket.send(request, port, host);
        });
        if (answer !== undefined) return answer;
      }
      throw new Error(
        `Cannot allocate: no answer from ${host}:${port} after ${_TRIES} tries`,
      );
    };
    const first = await ask([transport]);
    let answer = first;
    const realm = first.attributes.get(_REALM);
    const nonce = first.attributes.get(_NONCE);
    if (first.type === _ERROR && realm !== undefined && nonce !== undefined) {
      const key = createHash("md5")
        .update(`${username}:${realm.toString()}:${credential}`)
        .digest();
      answer = await ask([
        transport,
        _attribute(_USERNAME, Buffer.from(username)),
        _attribute(_REALM, realm),
        _attribute(_NONCE, nonce),
      ], key);
    }
    const error = answer.attributes.get(_ERROR_CODE);
    const result: AllocateResult = answer.type === _SUCCESS
      ? { ok: true, code: 0, reason: "" }
      : {
        ok: false,
        code: error === undefined ? 0 : (error[2] & 7) * 100 + error[3],
        reason: error === undefined ? "" : error.subarray(4).toString(),
      };
    return { ...result, [Symbol.asyncDispose]: close };
  } catch (error) {
    await close();
    throw error;
  }
}
