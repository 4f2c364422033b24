/**
 * One signaling session, as two real clients run it, against any server
 * URL: the distribution tests run it against the server however it was
 * started (from a local JSR registry, as a compiled binary, behind nginx).
 *
 * ```ts ignore
 * await relaySession("ws://127.0.0.1:8000/");
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { TestPeer, type TestPeerOptions } from "../_helpers.ts";

/**
 * Two peers meet in a fresh group and exchange an offer and an answer:
 * the first becomes the member, the second is bound to it (`connected:
 * false`), each `content` reaches the other with the signaling ids the
 * protocol gives, and the second then joins as a member.
 *
 * @param base The server's `ws[s]://host:port/` URL, ending with `/`.
 * @param options Peer options (an HTTP client for TLS, for example).
 * @throws {Error} When any step goes otherwise.
 */
export async function relaySession(
  base: string,
  options: TestPeerOptions = {},
): Promise<void> {
  const url = `${base}dist-${crypto.randomUUID()}`;
  await using member = await TestPeer.open(url, options);
  assert.equal(await member.join(1), true, "the first peer becomes a member");
  await using joiner = await TestPeer.open(url, options);
  assert.equal(
    await joiner.join(2),
    false,
    "the second peer is bound to the member",
  );
  joiner.sendContent({ data: "offer" });
  const offer = await member.nextContent();
  assert.equal(offer.data, "offer");
  assert.equal(offer.recipientId, 0);
  assert.notEqual(offer.senderId, 0, "the joiner gets a signaling id");
  member.sendContent({ recipientId: offer.senderId, data: "answer" });
  const answer = await joiner.nextContent();
  assert.deepEqual(
    { senderId: answer.senderId, recipientId: answer.recipientId },
    { senderId: 0, recipientId: offer.senderId },
  );
  assert.equal(answer.data, "answer");
  assert.equal(await joiner.join(2, [1]), true, "the joiner becomes a member");
  assert.equal((await joiner.close()).code, 1000);
  assert.equal((await member.close()).code, 1000);
}
