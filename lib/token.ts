/**
 * Access tokens: who may open a signaling socket, for which keys, until when.
 *
 * With an auth secret configured, peers come on `/t/<token>/<key>` instead of
 * `/<key>`: Netflux builds its URL as `${signalingServer}/${key}`, so the token
 * rides in the path. A token is four dot-separated fields, base64url without
 * padding where encoded:
 *
 * ```text
 * v1.<expiry>.<base64url(prefix)>.<base64url(HMAC-SHA256(secret, "v1|<expiry>|<prefix>"))>
 * ```
 *
 * - `expiry` is the unix time in seconds after which the token is refused
 *   (with {@linkcode TOKEN_CLOCK_SKEW} milliseconds of grace), in decimal
 *   digits;
 * - `prefix` is the start every key must have, compared with the key as the
 *   server reads it (percent-encoding kept): the token's third field is the
 *   base64url of its UTF-8 bytes, the signed string holds the prefix itself.
 *   The empty prefix allows any key. A prefix is a plain string prefix:
 *   `room` allows `room2` too, so end it with `/` to grant a namespace;
 * - the secret's UTF-8 bytes are the HMAC key: at least 16 of them
 *   (`MIN_SECRET_BYTES`), 32 random bytes recommended (`sigver secret`).
 *
 * Tokens are checked once, at the upgrade. A {@linkcode TokenAuthority} holds
 * a list of secrets so that a secret can be rotated: the first one signs, any
 * one of them validates.
 *
 * @module
 */

import { checkSecret, hmacKey } from "./secret.ts";
import { checkSeconds } from "./duration.ts";

/** The version field every token starts with. */
export const TOKEN_VERSION = "v1";

/**
 * Lifetime of a minted token when none is given, in milliseconds (one hour),
 * the unit of every duration in sigver's API.
 */
export const DEFAULT_TOKEN_TTL = 3_600_000;

/** Milliseconds a token is still accepted after its expiry, for clock skew. */
export const TOKEN_CLOCK_SKEW = 30_000;

/** Longest token accepted, in characters; longer ones are malformed. */
export const MAX_TOKEN_LENGTH = 4096;

/**
 * Largest expiry a token can carry, in unix seconds: 12 decimal digits (year
 * 33658).
 */
export const MAX_TOKEN_EXPIRY = 999_999_999_999;

/** Why a token was refused: a label for metrics and logs. */
export type TokenRefusalReason =
  | "token_missing"
  | "token_malformed"
  | "token_signature"
  | "token_expired"
  | "token_scope";

/** Every refusal reason, to declare metric labels up front. */
export const TOKEN_REFUSAL_REASONS: readonly TokenRefusalReason[] = [
  "token_missing",
  "token_malformed",
  "token_signature",
  "token_expired",
  "token_scope",
];

/** A refused token: what to answer the upgrade request with. */
export interface TokenRefusal {
  /** Always `false`. */
  ok: false;
  /** 401 when the token is missing or malformed, 403 when it is refused. */
  status: 401 | 403;
  /** The label for metrics and logs. */
  reason: TokenRefusalReason;
  /** A short human text for the response body; never holds the token. */
  text: string;
}

/** The result of checking a token: accepted, or refused with a status. */
export type TokenCheck =
  | {
    ok: true;
    /** The key prefix the token grants. */
    prefix: string;
  }
  | TokenRefusal;

/** The token and the group key read from a request path. */
export interface TokenAccess {
  /** The token, or `undefined` when the path carries none. */
  token: string | undefined;
  /** The group key, percent-encoding kept as it arrived. */
  key: string;
}

/** What {@linkcode TokenAuthority.check} checks: a token, a key and a time. */
export interface TokenRequest {
  /** The token, or `undefined` when the request carries none. */
  token: string | undefined;
  /**
   * The group key the token must grant, or `undefined` when the request is
   * not for a group (`/ice-servers`): the prefix is then not checked.
   */
  key?: string;
  /**
   * The wall-clock time, in unix milliseconds (`Date.now()`). Not a
   * monotonic reading such as `performance.now()`.
   */
  now: number;
}

/** Options of {@linkcode TokenAuthority.mint} and {@linkcode mintToken}. */
export interface MintTokenOptions {
  /**
   * The start every key must have, as the server reads keys (percent-encoding
   * kept: room `my room` is key `my%20room`).
   *
   * @default {""}
   */
  prefix?: string;
  /**
   * Lifetime in milliseconds: a whole number of seconds (a multiple of
   * 1000), at least 1000, as the token carries its expiry in unix seconds.
   *
   * @default {3_600_000}
   */
  ttl?: number;
  /**
   * The wall-clock time to count the lifetime from, in unix milliseconds.
   *
   * @default {Date.now()}
   */
  now?: number;
}

const _REFUSALS: Record<TokenRefusalReason, TokenRefusal> = {
  token_missing: _refusal(
    401,
    "token_missing",
    "Unauthorized: a valid access token is required in the path /t/<token>/<key>",
  ),
  token_malformed: _refusal(
    401,
    "token_malformed",
    "Unauthorized: the access token is malformed",
  ),
  token_signature: _refusal(
    403,
    "token_signature",
    "Forbidden: the access token is not valid for this server",
  ),
  token_expired: _refusal(
    403,
    "token_expired",
    "Forbidden: the access token has expired",
  ),
  token_scope: _refusal(
    403,
    "token_scope",
    "Forbidden: the access token does not grant this key",
  ),
};

const _EXPIRY = /^[0-9]{1,12}$/;
const _ENCODER = new TextEncoder();
const _ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const _VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < _ALPHABET.length; i++) _VALUES[_ALPHABET.charCodeAt(i)] = i;

function _refusal(
  status: 401 | 403,
  reason: TokenRefusalReason,
  text: string,
): TokenRefusal {
  return Object.freeze({ ok: false, status, reason, text });
}

function _encode(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += _ALPHABET[n >> 18] + _ALPHABET[(n >> 12) & 63] +
      _ALPHABET[(n >> 6) & 63] + _ALPHABET[n & 63];
  }
  if (i + 1 === bytes.length) {
    const n = bytes[i] << 16;
    out += _ALPHABET[n >> 18] + _ALPHABET[(n >> 12) & 63];
  } else if (i + 2 === bytes.length) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += _ALPHABET[n >> 18] + _ALPHABET[(n >> 12) & 63] +
      _ALPHABET[(n >> 6) & 63];
  }
  return out;
}

// Unpadded base64url only: `=`, `+`, `/` and anything else outside the
// alphabet, or a length no byte count gives, is undecodable. Unused low bits
// of the last character are ignored here; the caller compares the canonical
// form where it matters.
function _decode(text: string): Uint8Array | undefined {
  if (text.length % 4 === 1) return undefined;
  const bytes = new Uint8Array(Math.floor(text.length * 3 / 4));
  let acc = 0;
  let bits = 0;
  let j = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const v = code < 128 ? _VALUES[code] : -1;
    if (v === -1) return undefined;
    acc = ((acc << 6) | v) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[j++] = (acc >> bits) & 0xff;
    }
  }
  return bytes;
}

function _utf8(bytes: Uint8Array): string | undefined {
  try {
    // ignoreBOM keeps a leading U+FEFF: it is part of the prefix.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      bytes,
    );
  } catch {
    return undefined;
  }
}

// Equal-length ASCII strings compared without an early exit, so the time
// taken does not tell how many leading characters of a signature are right.
function _timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

async function _sign(
  key: CryptoKey,
  expiry: string,
  prefix: string,
): Promise<string> {
  const message = _ENCODER.encode(`${TOKEN_VERSION}|${expiry}|${prefix}`);
  return _encode(
    new Uint8Array(await crypto.subtle.sign("HMAC", key, message)),
  );
}

/**
 * Mints and checks access tokens with a list of secrets: the first signs,
 * any one validates, so a secret is rotated by putting the new one first,
 * then dropping the old one once the tokens it signed have expired. Imported
 * HMAC keys are kept for the life of the object.
 *
 * @example Mint a token for a namespace, then check it
 * ```ts
 * import assert from "node:assert/strict";
 * import { TokenAuthority } from "./token.ts";
 * const authority = new TokenAuthority([
 *   "new secret, 16 bytes or more",
 *   "old secret, 16 bytes or more",
 * ]);
 * const now = Date.UTC(2026, 0, 1);
 * const token = await authority.mint({ prefix: "room/", ttl: 60_000, now });
 * assert.deepEqual(await authority.check({ token, key: "room/a", now }), {
 *   ok: true,
 *   prefix: "room/",
 * });
 * const refused = await authority.check({ token, key: "other", now });
 * assert.equal(refused.ok ? 200 : refused.status, 403);
 * ```
 */
export class TokenAuthority {
  #secrets: readonly string[];
  #keys: Promise<CryptoKey[]> | undefined;

  /**
   * Creates an authority. Keys are imported on first use.
   *
   * @param secrets The secrets, the signing one first, each of at least 16
   * UTF-8 bytes: 32 random bytes, encoded, are recommended (`sigver secret`
   * prints such a one).
   * @throws {TypeError} When there is no secret or one is not a string.
   * @throws {RangeError} When a secret is under 16 bytes: a short secret
   * falls to an offline search from a single token.
   */
  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) {
      throw new TypeError("Cannot create a token authority: no secret given");
    }
    for (const secret of secrets) {
      checkSecret("create a token authority", secret, "a secret");
    }
    this.#secrets = [...secrets];
  }

  #importKeys(): Promise<CryptoKey[]> {
    this.#keys ??= Promise.all(
      this.#secrets.map((secret) => hmacKey(secret)),
    );
    return this.#keys;
  }

  /**
   * Mints a token with the first secret.
   *
   * @param options The prefix, the lifetime and the time to count it from.
   * @returns The token.
   * @throws {RangeError} When `ttl` is not a whole number of seconds (in
   * milliseconds) of 1000 or more, `now` is not a finite non-negative
   * number, or the expiry needs over 12 digits.
   * @throws {TypeError} When the prefix is not well-formed Unicode (a lone
   * surrogate cannot round-trip through UTF-8).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TokenAuthority } from "./token.ts";
   * const authority = new TokenAuthority(["a secret of 16 bytes or more"]);
   * const token = await authority.mint({ prefix: "room", now: 1_700_000_000_000 });
   * assert.match(token, /^v1\.1700003600\.cm9vbQ\.[\w-]{43}$/);
   * ```
   */
  async mint(options: MintTokenOptions = {}): Promise<string> {
    const { prefix = "", ttl = DEFAULT_TOKEN_TTL, now = Date.now() } = options;
    checkSeconds("mint a token", ttl);
    if (!Number.isFinite(now) || now < 0) {
      throw new RangeError(
        `Cannot mint a token: now must be a unix time in milliseconds, got ${now}`,
      );
    }
    if (typeof prefix !== "string" || !prefix.isWellFormed()) {
      throw new TypeError(
        "Cannot mint a token: the prefix is not a well-formed string",
      );
    }
    const expiry = Math.floor(now / 1000) + ttl / 1000;
    if (expiry > MAX_TOKEN_EXPIRY) {
      throw new RangeError(
        `Cannot mint a token: the expiry ${expiry} is beyond ${MAX_TOKEN_EXPIRY}`,
      );
    }
    const [key] = await this.#importKeys();
    const signature = await _sign(key, String(expiry), prefix);
    return `${TOKEN_VERSION}.${expiry}.${
      _encode(_ENCODER.encode(prefix))
    }.${signature}`;
  }

  /**
   * Checks a token for a key at a time, in this order: present (else 401
   * `token_missing`), well-formed (else 401 `token_malformed`), signed by one
   * of the secrets (else 403 `token_signature`), not expired for more than
   * {@linkcode TOKEN_CLOCK_SKEW} (else 403 `token_expired`), and the
   * key starts with the prefix (else 403 `token_scope`). Expiry and prefix
   * are trusted only once the signature is.
   *
   * @param request The token (`undefined` or empty when absent), the key as
   * the server reads it, and the time in unix milliseconds.
   * @returns `{ ok: true, prefix }`, or the refusal to answer with.
   * @throws {TypeError} When `now` is not a finite number.
   *
   * @example Refuse a request that has no token
   * ```ts
   * import assert from "node:assert/strict";
   * import { splitTokenPath, TokenAuthority } from "./token.ts";
   * const authority = new TokenAuthority(["a secret of 16 bytes or more"]);
   * const access = splitTokenPath("room");
   * const result = await authority.check({ ...access, now: Date.now() });
   * assert.equal(result.ok ? "ok" : result.reason, "token_missing");
   * ```
   */
  async check(request: TokenRequest): Promise<TokenCheck> {
    const { token, key, now } = request;
    if (!Number.isFinite(now)) {
      throw new TypeError(
        `Cannot check a token: now must be a unix time in milliseconds, got ${now}`,
      );
    }
    if (token === undefined || token === "") return _REFUSALS.token_missing;
    if (token.length > MAX_TOKEN_LENGTH) return _REFUSALS.token_malformed;
    const fields = token.split(".");
    if (fields.length !== 4) return _REFUSALS.token_malformed;
    const [version, expiry, encodedPrefix, signature] = fields;
    if (version !== TOKEN_VERSION || !_EXPIRY.test(expiry)) {
      return _REFUSALS.token_malformed;
    }
    const prefixBytes = _decode(encodedPrefix);
    const prefix = prefixBytes && _utf8(prefixBytes);
    if (prefixBytes === undefined || prefix === undefined) {
      return _REFUSALS.token_malformed;
    }
    if (_decode(signature)?.length !== 32) return _REFUSALS.token_malformed;
    // A field in another spelling than the one minted (unused low bits set
    // in its last character) is not what a signer wrote: a bad signature.
    let valid = _encode(prefixBytes) === encodedPrefix;
    if (valid) {
      valid = false;
      for (const cryptoKey of await this.#importKeys()) {
        const expected = await _sign(cryptoKey, expiry, prefix);
        if (_timingSafeEqual(expected, signature)) valid = true;
      }
    }
    if (!valid) return _REFUSALS.token_signature;
    if (now > Number(expiry) * 1000 + TOKEN_CLOCK_SKEW) {
      return _REFUSALS.token_expired;
    }
    if (key !== undefined && !key.startsWith(prefix)) {
      return _REFUSALS.token_scope;
    }
    return { ok: true, prefix };
  }
}

/**
 * Mints a token with one secret. To mint many, keep a
 * {@linkcode TokenAuthority}: it imports the key once.
 *
 * @param secret The secret, at least 16 UTF-8 bytes.
 * @param options The prefix, the lifetime and the time to count it from.
 * @returns The token.
 * @throws {RangeError} When the secret is under 16 bytes, or as
 * {@linkcode TokenAuthority.mint} throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mintToken } from "./token.ts";
 * const token = await mintToken("a secret of 16 bytes or more", {
 *   ttl: 60_000,
 *   now: 1_700_000_000_000,
 * });
 * assert.match(token, /^v1\.1700000060\.\.[\w-]{43}$/);
 * ```
 */
export async function mintToken(
  secret: string,
  options?: MintTokenOptions,
): Promise<string> {
  return await new TokenAuthority([secret]).mint(options);
}

/**
 * Checks a token against a list of secrets, as
 * {@linkcode TokenAuthority.check} does. To check many, keep a
 * {@linkcode TokenAuthority}: it imports the keys once.
 *
 * @param secrets The secrets, any of which validates.
 * @param request The token, the key and the time in unix milliseconds.
 * @returns `{ ok: true, prefix }`, or the refusal to answer with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkToken, mintToken } from "./token.ts";
 * const now = 1_700_000_000_000;
 * const [next, old] = ["the next secret, 16+ bytes", "the old secret, 16+ bytes"];
 * const token = await mintToken(old, { now });
 * const result = await checkToken([next, old], { token, key: "room", now });
 * assert.deepEqual(result, { ok: true, prefix: "" });
 * ```
 */
export async function checkToken(
  secrets: readonly string[],
  request: TokenRequest,
): Promise<TokenCheck> {
  return await new TokenAuthority(secrets).check(request);
}

/**
 * Splits the token off a path as the server reads it (without its leading
 * `/`, percent-encoding kept): `t/<token>/<key>` gives the token and the key;
 * `t/<token>` alone gives the token and an empty key (refused later as any
 * empty key is). Any other path, `t//key` included, has no token and is all
 * key.
 *
 * @param path The request path without its leading `/`.
 * @returns The token, or `undefined`, and the key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitTokenPath } from "./token.ts";
 * assert.deepEqual(splitTokenPath("t/v1.1.cm9vbQ.sig/room/a"), {
 *   token: "v1.1.cm9vbQ.sig",
 *   key: "room/a",
 * });
 * assert.deepEqual(splitTokenPath("room/a"), { token: undefined, key: "room/a" });
 * ```
 */
export function splitTokenPath(path: string): TokenAccess {
  if (!path.startsWith("t/")) return { token: undefined, key: path };
  const slash = path.indexOf("/", 2);
  const token = slash === -1 ? path.slice(2) : path.slice(2, slash);
  if (token === "") return { token: undefined, key: path };
  return { token, key: slash === -1 ? "" : path.slice(slash + 1) };
}
