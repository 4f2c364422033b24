/**
 * Shared secrets (token, TURN and cluster secrets): how short one may be,
 * and how to make a good one. A secret is an HMAC key, and a short or
 * guessable one lets anyone who sees one signed value search for it
 * offline: `short` or `abc` falls in seconds.
 *
 * @module
 */

/**
 * Fewest UTF-8 bytes a secret may have. 32 random bytes
 * ({@linkcode newSecret}) are recommended; 16 is the floor below which a
 * secret is refused.
 */
export const MIN_SECRET_BYTES = 16;

const _ENCODER = new TextEncoder();

/**
 * Throws unless a secret is a string of at least
 * {@linkcode MIN_SECRET_BYTES} UTF-8 bytes.
 *
 * @param action What the secret is for, as in "Cannot <action>: ...".
 * @param secret The secret.
 * @param name What the message calls it.
 * @throws {TypeError} When the secret is not a string.
 * @throws {RangeError} When it is shorter than {@linkcode MIN_SECRET_BYTES}
 * bytes (the message says how many it has, never the secret).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkSecret } from "./secret.ts";
 * checkSecret("mint a token", "a secret of at least 16 bytes");
 * assert.throws(() => checkSecret("mint a token", "short"), {
 *   name: "RangeError",
 *   message:
 *     "Cannot mint a token: the secret is 5 bytes, under 16 (use 32 random bytes, e.g. from sigver secret)",
 * });
 * ```
 */
export function checkSecret(
  action: string,
  secret: unknown,
  name = "the secret",
): void {
  if (typeof secret !== "string") {
    throw new TypeError(`Cannot ${action}: ${name} is not a string`);
  }
  const bytes = _ENCODER.encode(secret).length;
  if (bytes < MIN_SECRET_BYTES) {
    throw new RangeError(
      `Cannot ${action}: ${name} is ${bytes} bytes, under ${MIN_SECRET_BYTES} (use 32 random bytes, e.g. from sigver secret)`,
    );
  }
}

/**
 * A fresh secret: 32 random bytes, base64url without padding (43
 * characters), fit for `--auth-secret`, `--turn-secret` (and coturn's
 * `static-auth-secret`) and `--cluster-secret`.
 *
 * @returns The secret.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newSecret } from "./secret.ts";
 * assert.match(newSecret(), /^[A-Za-z0-9_-]{43}$/);
 * assert.notEqual(newSecret(), newSecret());
 * ```
 */
export function newSecret(): string {
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    const secret = btoa(binary).replaceAll("+", "-").replaceAll("/", "_")
      .replace(/=+$/, "");
    // One in 64 would start with "-", which reads as a flag after
    // `--secret `: `sigver token --secret $(sigver secret)` must work.
    if (!secret.startsWith("-")) return secret;
  }
}

/**
 * Imports a secret as an HMAC-SHA-256 key, as tokens, pipes and node records
 * sign with it.
 *
 * @param secret The secret, as UTF-8.
 * @returns The key, for signing and verifying.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hmacKey } from "./secret.ts";
 * const key = await hmacKey("a secret of 16 bytes or more");
 * assert.equal(key.algorithm.name, "HMAC");
 * ```
 */
export function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}
