// Unit tests of lib/secret.ts: the 16-byte floor, counted in UTF-8 bytes,
// and new secrets of 32 random bytes.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { checkSecret, MIN_SECRET_BYTES, newSecret } from "../../lib/secret.ts";

Deno.test("checkSecret refuses under 16 UTF-8 bytes with RangeError, saying the length only", async (t) => {
  assert.equal(MIN_SECRET_BYTES, 16);
  const cases: [string, string, number][] = [
    ["empty", "", 0],
    ["abc", "abc", 3],
    ["15 ASCII bytes", "a".repeat(15), 15],
    ["5 characters of 3 bytes", "€€€€€", 15],
    ["3 characters of 4 bytes", "🔑🔑🔑", 12],
  ];
  for (const [name, secret, bytes] of cases) {
    await t.step(name, () => {
      assert.throws(() => checkSecret("do it", secret, "the key"), {
        name: "RangeError",
        message:
          `Cannot do it: the key is ${bytes} bytes, under 16 (use 32 random bytes, e.g. from sigver secret)`,
      });
    });
  }
});

Deno.test("checkSecret accepts 16 UTF-8 bytes or more", async (t) => {
  const cases: [string, string][] = [
    ["16 ASCII bytes", "a".repeat(16)],
    ["4 characters of 4 bytes", "🔑🔑🔑🔑"],
    ["a new secret", newSecret()],
  ];
  for (const [name, secret] of cases) {
    await t.step(name, () => checkSecret("do it", secret));
  }
});

Deno.test("checkSecret throws TypeError when the secret is not a string", () => {
  for (const bad of [undefined, null, 1234567890123456789n, ["a".repeat(16)]]) {
    assert.throws(() => checkSecret("do it", bad), {
      name: "TypeError",
      message: "Cannot do it: the secret is not a string",
    });
  }
});

Deno.test("newSecret gives 32 random bytes as unpadded base64url, never starting with -", () => {
  const seen = new Set<string>();
  // 1,000 draws: about 16 would start with "-" (a flag, after --secret).
  for (let i = 0; i < 1000; i++) {
    const secret = newSecret();
    assert.match(secret, /^[A-Za-z0-9_][A-Za-z0-9_-]{42}$/);
    assert.equal(Buffer.from(secret, "base64url").length, 32);
    seen.add(secret);
  }
  assert.equal(seen.size, 1000);
});
