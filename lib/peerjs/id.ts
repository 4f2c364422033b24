/**
 * PeerJS ids and tokens as sigver accepts them. The original server takes
 * any string; sigver bounds their length and characters, so that an id is
 * safe in the WebSocket query the client builds without encoding it
 * (`&id=${id}&token=${token}`), in JSON, and as a log's hash input.
 *
 * @module
 */

/** Longest id accepted, in characters (a token's prefix included). */
export const MAX_ID_LENGTH = 128;

/** Longest client token accepted (the client makes 10 or 11 characters). */
export const MAX_CLIENT_TOKEN_LENGTH = 128;

// The client's own rule is letters and digits with single ` `, `_` or `-`
// between them; `.`, `:`, `@` and `/` are taken too, so that a token's
// prefix such as `room/` can start an id. Nothing that a query string
// would split or decode (`&`, `+`, `%`, `=`, `#`) and no control character.
const _ID = /^[A-Za-z0-9_.:@\/-](?:[A-Za-z0-9 _.:@\/-]*[A-Za-z0-9_.:@\/-])?$/;
const _TOKEN = /^[A-Za-z0-9_.-]+$/;

/**
 * Checks an id a client asks for.
 *
 * @param id The id.
 * @param scope The prefix the client's access token grants, if any.
 * @returns Why it is refused, or `undefined` when it is fine.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkId } from "./id.ts";
 * assert.equal(checkId("alice"), undefined);
 * assert.equal(checkId("room/alice", "room/"), undefined);
 * assert.equal(checkId("bob", "room/"), "Cannot take id: the token grants ids that start with its prefix only");
 * assert.equal(checkId("a&b"), "Cannot take id: letters, digits, ' ', '_', '-', '.', ':', '@' and '/' only, no space at either end");
 * ```
 */
export function checkId(id: string, scope?: string): string | undefined {
  if (id.length > MAX_ID_LENGTH) {
    return `Cannot take id: longer than ${MAX_ID_LENGTH} characters`;
  }
  if (!_ID.test(id)) {
    return "Cannot take id: letters, digits, ' ', '_', '-', '.', ':', '@' and '/' only, no space at either end";
  }
  if (scope !== undefined && !id.startsWith(scope)) {
    return "Cannot take id: the token grants ids that start with its prefix only";
  }
  return undefined;
}

/**
 * Whether an id could be held: a message to any other id is dropped.
 *
 * @param id The id.
 * @returns Whether it is well-formed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isId } from "./id.ts";
 * assert.equal(isId("alice"), true);
 * assert.equal(isId(""), false);
 * ```
 */
export function isId(id: unknown): id is string {
  return typeof id === "string" && id.length <= MAX_ID_LENGTH && _ID.test(id);
}

/**
 * Checks a client's token (its secret for reclaiming its id on reconnect,
 * not an access token).
 *
 * @param token The token.
 * @returns Whether it is accepted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isClientToken } from "./id.ts";
 * assert.equal(isClientToken("k3j4h5g6f7"), true);
 * assert.equal(isClientToken("a b"), false);
 * ```
 */
export function isClientToken(token: string): boolean {
  return token.length <= MAX_CLIENT_TOKEN_LENGTH && _TOKEN.test(token);
}

/**
 * A fresh id, as `GET <path><key>/id` hands out: a random UUID after the
 * token's prefix.
 *
 * @param scope The prefix the request's access token grants, if any.
 * @param taken Whether an id is held now: a held one is drawn again.
 * @returns The id.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkId, newId } from "./id.ts";
 * const id = newId("room/");
 * assert.match(id, /^room\/[0-9a-f-]{36}$/);
 * assert.equal(checkId(id, "room/"), undefined);
 * ```
 */
export function newId(
  scope = "",
  taken: (id: string) => boolean = () => false,
): string {
  let id = scope + crypto.randomUUID();
  // A UUID collision is not expected; the bound keeps the loop finite.
  for (let i = 0; i < 4 && taken(id); i++) id = scope + crypto.randomUUID();
  return id;
}
