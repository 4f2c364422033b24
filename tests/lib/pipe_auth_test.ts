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
