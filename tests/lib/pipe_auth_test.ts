import assert from "node:assert/strict";
import {
  PIPE_CLOCK_SKEW,
  PIPE_HEADERS,
  PipeAuthority,
  type PipeClaims,
} from "../../lib/pipe_auth.ts";

const NOW = 1_790_000_000_000;
const CLAIMS: PipeClaims = {
  node: "n1",
  key: "room/a",
  favored: true,
  client: "127.0.0.2",
  origin: "https://app.example",
  owner: "ws://10.0.0.2:8000",
};

async function signed(
  claims: PipeClaims = CLAIMS,
  secret = "s3cret",
): Promise<Headers> {
  return new Headers(await new PipeAuthority(secret).sign(claims, NOW));
}

Deno.test("PipeAuthority: a signed upgrade checks out with its claims, keys of any text included", async (t) => {
  const authority = new PipeAuthority("s3cret");
  for (
    const key of [
      "room/a",
      "\uFEFFroom", // a leading BOM is part of the key
      "日本/😀",
      "a/../b",
      "",
    ]
  ) {
    await t.step(JSON.stringify(key), async () => {
      const claims = { ...CLAIMS, key, origin: null, favored: false };
      const check = await authority.check(await signed(claims), NOW);
      assert.deepEqual(check, { kind: "pipe", claims });
    });
  }
});

Deno.test("PipeAuthority: an upgrade without the node header is a client's, whatever else it carries", async () => {
  const headers = await signed();
  headers.delete(PIPE_HEADERS.node);
  assert.deepEqual(await new PipeAuthority("s3cret").check(headers, NOW), {
    kind: "client",
  });
});

Deno.test("PipeAuthority: a changed field, another secret, or a time out of skew is refused", async (t) => {
  const authority = new PipeAuthority("s3cret");
  const tampered: [string, string][] = [
    [PIPE_HEADERS.node, "n2"],
    [PIPE_HEADERS.key, "cm9vbS9i"], // "room/b"
    [PIPE_HEADERS.favored, "0"],
    [PIPE_HEADERS.client, "127.0.0.3"],
    [PIPE_HEADERS.origin, "https://evil.example"],
    [PIPE_HEADERS.owner, "ws://10.0.0.3:8000"],
    [PIPE_HEADERS.owner, ""],
    [PIPE_HEADERS.time, String(NOW + 1)],
    [PIPE_HEADERS.nonce, "A".repeat(22)],
    [PIPE_HEADERS.nonce, ""],
    [PIPE_HEADERS.signature, "A".repeat(43)],
    [PIPE_HEADERS.signature, ""],
    [PIPE_HEADERS.key, "!!"],
    [PIPE_HEADERS.favored, "yes"],
  ];
  for (const [name, value] of tampered) {
    await t.step(`${name}: ${value}`, async () => {
      const headers = await signed();
      headers.set(name, value);
      const check = await authority.check(headers, NOW);
      assert.equal(check.kind, "refused");
    });
  }
  await t.step("signed with another secret", async () => {
    const check = await authority.check(await signed(CLAIMS, "other"), NOW);
    assert.equal(check.kind, "refused");
  });
  for (const skew of [PIPE_CLOCK_SKEW + 1, -PIPE_CLOCK_SKEW - 1]) {
    await t.step(`checked ${skew} ms after signing`, async () => {
      const check = await authority.check(await signed(), NOW + skew);
      assert.equal(check.kind, "refused");
    });
  }
  await t.step("within the skew it passes", async () => {
    const check = await authority.check(await signed(), NOW + PIPE_CLOCK_SKEW);
    assert.equal(check.kind, "pipe");
  });
});

Deno.test("PipeAuthority refuses an empty secret", () => {
  assert.throws(() => new PipeAuthority(""), TypeError);
});

Deno.test("PipeAuthority accepts each signature once: the same signed headers again are refused", async () => {
  const authority = new PipeAuthority("s3cret");
  const headers = await signed();
  assert.equal((await authority.check(headers, NOW)).kind, "pipe");
  assert.deepEqual(await authority.check(headers, NOW + 1), {
    kind: "refused",
    reason: "the pipe signature was used already",
  });
  // Checked at once, one of two copies passes.
  const copy = await signed();
  const both = await Promise.all([
    authority.check(copy, NOW),
    authority.check(copy, NOW),
  ]);
  assert.deepEqual(both.map((check) => check.kind).sort(), ["pipe", "refused"]);
});

Deno.test("PipeAuthority: a signature written again with other spare bits is the same signature", async () => {
  const authority = new PipeAuthority("s3cret");
  const headers = await signed();
  const signature = headers.get(PIPE_HEADERS.signature)!;
  assert.equal((await authority.check(headers, NOW)).kind, "pipe");
  // 43 base64url characters carry 258 bits: the last one's low 2 are spare.
  const last =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
      .indexOf(signature[42]);
  const respelled = signature.slice(0, 42) +
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
      last ^ 1
    ];
  headers.set(PIPE_HEADERS.signature, respelled);
  assert.deepEqual(await authority.check(headers, NOW), {
    kind: "refused",
    reason: "the pipe signature was used already",
  });
});

Deno.test("PipeAuthority: pipes with the same claims at the same millisecond differ, and both pass", async () => {
  const authority = new PipeAuthority("s3cret");
  const first = await signed();
  const second = await signed();
  assert.notEqual(
    first.get(PIPE_HEADERS.nonce),
    second.get(PIPE_HEADERS.nonce),
  );
  assert.match(first.get(PIPE_HEADERS.nonce)!, /^[A-Za-z0-9_-]{22}$/);
  assert.equal((await authority.check(first, NOW)).kind, "pipe");
  assert.equal((await authority.check(second, NOW)).kind, "pipe");
});

Deno.test("PipeAuthority remembers at most maxSeen signatures, each until it is stale", async () => {
  const authority = new PipeAuthority("s3cret", { maxSeen: 2 });
  const a = await signed();
  assert.equal((await authority.check(a, NOW)).kind, "pipe");
  assert.equal((await authority.check(await signed(), NOW)).kind, "pipe");
  // Full of signatures that are not stale: a third pipe is refused.
  assert.deepEqual(await authority.check(await signed(), NOW), {
    kind: "refused",
    reason: "too many pipes in the signature window",
  });
  // Once they are stale (the time check refuses them anyway), they go.
  const later = NOW + PIPE_CLOCK_SKEW + 1;
  const fresh = new Headers(
    await new PipeAuthority("s3cret").sign(CLAIMS, later),
  );
  assert.equal((await authority.check(fresh, later)).kind, "pipe");
  assert.deepEqual(await authority.check(a, later), {
    kind: "refused",
    reason: "the pipe signature is stale",
  });
});
