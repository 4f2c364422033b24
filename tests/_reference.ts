/**
 * The token and TURN credential contracts written from their docs alone,
 * with `node:crypto` and nothing of `lib/`: what the tests check the
 * server's tokens and credentials against.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";

/**
 * A token: `v1.<expiry>.<base64url prefix>.<base64url HMAC-SHA256 of
 * "v1|<expiry>|<prefix>">`.
 *
 * @param secret The signing secret.
 * @param expiry When it expires, in unix seconds.
 * @param prefix The key prefix it grants.
 * @returns The token.
 */
export function refToken(secret: string, expiry: number, prefix = ""): string {
  const signature = createHmac("sha256", secret)
    .update(`v1|${expiry}|${prefix}`)
    .digest("base64url");
  return `v1.${expiry}.${
    Buffer.from(prefix).toString("base64url")
  }.${signature}`;
}

/**
 * base64(HMAC-SHA1(secret, username)), as coturn checks it.
 *
 * @param secret coturn's `static-auth-secret`.
 * @param username The TURN username.
 * @returns The credential.
 */
export function refCredential(secret: string, username: string): string {
  return createHmac("sha1", secret).update(username).digest("base64");
}
