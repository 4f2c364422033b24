// Unit tests of lib/token.ts. Reference tokens are built here with
// node:crypto and Buffer, independently of the code under test, so that the
// wire format is checked against the contract and not against itself.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import {
  checkToken,
  DEFAULT_TOKEN_TTL,
  MAX_TOKEN_LENGTH,
  mintToken,
  type MintTokenOptions,
  splitTokenPath,
  TOKEN_CLOCK_SKEW,
  TOKEN_REFUSAL_REASONS,
  type TokenAccess,
  TokenAuthority,
  type TokenCheck,
  type TokenRefusalReason,
} from "../../lib/token.ts";

const SECRET = "s3cret-for-tests";
const OTHER = "another-secret-for-tests";
const NEW = "the new secret, for rotation";
const OLD = "the old secret, for rotation";
/** 2023-11-14T22:13:20Z, in unix milliseconds. */
const NOW = 1_700_000_000_000;
/** An expiry one hour after NOW, in unix seconds. */
const EXPIRY = 1_700_003_600;

function b64url(text: string | Uint8Array): string {
  return Buffer.from(text).toString("base64url");
}

/** HMAC-SHA256 of the signed string, base64url, with node:crypto. */
function refSignature(secret: string, expiry: string, prefix: string): string {
  return Buffer.from(
    createHmac("sha256", secret).update(`v1|${expiry}|${prefix}`).digest(),
  ).toString("base64url");
}

/** A token built from the contract alone. */
function refToken(
  secret: string,
  expiry: number | string,
  prefix: string,
): string {
  const e = String(expiry);
  return `v1.${e}.${b64url(prefix)}.${refSignature(secret, e, prefix)}`;
}

type Outcome = "ok" | `${401 | 403} ${TokenRefusalReason}`;

function outcome(result: TokenCheck): Outcome {
  return result.ok ? "ok" : `${result.status} ${result.reason}`;
}

const authority = new TokenAuthority([SECRET]);

function check(
  token: string | undefined,
  key = "room/a",
  now = NOW,
): Promise<Outcome> {
  return authority.check({ token, key, now }).then(outcome);
}

/** The last character with its unused low bits changed: same bytes. */
function respell(field: string): string {
  const alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const last = alphabet.indexOf(field.at(-1)!);
  return field.slice(0, -1) + alphabet[last ^ 1];
}

Deno.test("mint makes a token that check accepts and node:crypto rebuilds", async () => {
  const token = await authority.mint({
    prefix: "room/",
    ttl: 3_600_000,
    now: NOW,
  });
  assert.equal(token, refToken(SECRET, EXPIRY, "room/"));
  assert.match(token, /^v1\.1700003600\.cm9vbS8\.[A-Za-z0-9_-]{43}$/);
  assert.equal(await check(token, "room/a"), "ok");
});

Deno.test("mint counts the ttl in milliseconds from now, one hour by default", async () => {
  assert.equal(DEFAULT_TOKEN_TTL, 3_600_000);
  assert.equal(
    await authority.mint({ now: NOW + 999 }),
    refToken(SECRET, EXPIRY, ""),
  );
  assert.equal(
    await authority.mint({ ttl: 1000, now: NOW }),
    refToken(SECRET, 1_700_000_001, ""),
  );
  assert.equal(
    await authority.mint({ ttl: 600_000, now: NOW + 999 }),
    refToken(SECRET, 1_700_000_600, ""),
  );
  const before = Math.floor(Date.now() / 1000);
  const expiry = Number((await authority.mint()).split(".")[1]);
  const after = Math.floor(Date.now() / 1000);
  assert.ok(before + 3600 <= expiry && expiry <= after + 3600, `${expiry}`);
});

Deno.test("mintToken and checkToken agree with TokenAuthority", async () => {
  const token = await mintToken(SECRET, { prefix: "p", now: NOW });
  assert.equal(token, refToken(SECRET, EXPIRY, "p"));
  assert.deepEqual(
    await checkToken([OTHER, SECRET], { token, key: "p1", now: NOW }),
    { ok: true, prefix: "p" },
  );
  assert.equal(
    outcome(await checkToken([OTHER], { token, key: "p1", now: NOW })),
    "403 token_signature",
  );
});

Deno.test("check accepts a token up to 30 s after its expiry, not beyond", async (t) => {
  assert.equal(TOKEN_CLOCK_SKEW, 30_000, "milliseconds, as every duration");
  const token = refToken(SECRET, EXPIRY, "");
  const at = EXPIRY * 1000;
  const cases: [string, number, Outcome][] = [
    ["long before", NOW, "ok"],
    ["1 s before expiry", at - 1000, "ok"],
    ["at expiry", at, "ok"],
    ["1 s after expiry", at + 1000, "ok"],
    ["29.999 s after", at + 29_999, "ok"],
    ["exactly expiry + 30 s", at + 30_000, "ok"],
    ["expiry + 30.001 s", at + 30_001, "403 token_expired"],
    ["expiry + 31 s", at + 31_000, "403 token_expired"],
    ["a day after", at + 86_400_000, "403 token_expired"],
  ];
  for (const [name, now, expected] of cases) {
    await t.step(name, async () => {
      assert.equal(await check(token, "k", now), expected);
    });
  }
});

Deno.test("check limits keys to the token's prefix", async (t) => {
  const cases: [string, string, Outcome][] = [
    ["", "anything/at/all", "ok"],
    ["", "x", "ok"],
    ["room/a", "room/a", "ok"],
    ["room/a", "room/a/b", "ok"],
    ["room/", "room/a", "ok"],
    ["room/", "room/a/b", "ok"],
    ["room", "roomy", "ok"],
    ["room/", "room", "403 token_scope"],
    ["room/a", "room/b", "403 token_scope"],
    ["room/a", "Room/a", "403 token_scope"],
    ["room/a", "other/room/a", "403 token_scope"],
    ["room/a", "", "403 token_scope"],
    ["my%20room/", "my%20room/a", "ok"],
    ["my room/", "my%20room/a", "403 token_scope"],
    ["salle-é/", "salle-é/1", "ok"],
    ["a|b", "a|b/c", "ok"],
    ["\ufeffroom/", "\ufeffroom/a", "ok"],
    ["\ufeffroom/", "room/a", "403 token_scope"],
  ];
  for (const [prefix, key, expected] of cases) {
    await t.step(`prefix ${JSON.stringify(prefix)}, key ${key}`, async () => {
      assert.equal(
        await check(refToken(SECRET, EXPIRY, prefix), key),
        expected,
      );
      const minted = await authority.mint({ prefix, now: NOW });
      assert.equal(await check(minted, key), expected);
    });
  }
});

Deno.test("check accepts any listed secret and mint signs with the first", async () => {
  const rotating = new TokenAuthority([NEW, OLD]);
  for (const secret of [NEW, OLD]) {
    const token = refToken(secret, EXPIRY, "room/");
    assert.equal(
      outcome(await rotating.check({ token, key: "room/a", now: NOW })),
      "ok",
      secret,
    );
  }
  const minted = await rotating.mint({ prefix: "room/", now: NOW });
  assert.equal(minted, refToken(NEW, EXPIRY, "room/"));
  const oldOnly = new TokenAuthority([OLD]);
  assert.equal(
    outcome(await oldOnly.check({ token: minted, key: "room/a", now: NOW })),
    "403 token_signature",
  );
  assert.equal(
    outcome(
      await rotating.check({
        token: refToken("neither", EXPIRY, "room/"),
        key: "room/a",
        now: NOW,
      }),
    ),
    "403 token_signature",
  );
});

Deno.test("check refuses a token forged or built to another recipe", async (t) => {
  const e = String(EXPIRY);
  const hmac = (algorithm: string, secret: string, text: string) =>
    Buffer.from(createHmac(algorithm, secret).update(text).digest()).toString(
      "base64url",
    );
  const cases: [string, string, Outcome][] = [
    ["the contract's token", refToken(SECRET, EXPIRY, "room/"), "ok"],
    [
      "another secret",
      refToken("guess", EXPIRY, "room/"),
      "403 token_signature",
    ],
    [
      "the prefix's base64url in the signed string",
      `v1.${e}.${b64url("room/")}.${
        hmac("sha256", SECRET, `v1|${e}|${b64url("room/")}`)
      }`,
      "403 token_signature",
    ],
    [
      "dots instead of bars in the signed string",
      `v1.${e}.${b64url("room/")}.${hmac("sha256", SECRET, `v1.${e}.room/`)}`,
      "403 token_signature",
    ],
    [
      "HMAC-SHA384 (48 bytes)",
      `v1.${e}.${b64url("room/")}.${hmac("sha384", SECRET, `v1|${e}|room/`)}`,
      "401 token_malformed",
    ],
    [
      "HMAC-SHA1 (20 bytes)",
      `v1.${e}.${b64url("room/")}.${hmac("sha1", SECRET, `v1|${e}|room/`)}`,
      "401 token_malformed",
    ],
    ["an empty secret", refToken("", EXPIRY, "room/"), "403 token_signature"],
  ];
  for (const [name, token, expected] of cases) {
    await t.step(name, async () => {
      assert.equal(await check(token, "room/a"), expected);
    });
  }
});

Deno.test("check refuses a tampered token with the right status and reason", async (t) => {
  const e = String(EXPIRY);
  const p = b64url("room/");
  const s = refSignature(SECRET, e, "room/");
  const good = `v1.${e}.${p}.${s}`;
  assert.equal(await check(good), "ok");
  const flip = (c: string) => (c === "A" ? "B" : "A");
  const cases: [string, string | undefined, Outcome][] = [
    // Missing.
    ["no token", undefined, "401 token_missing"],
    ["empty token", "", "401 token_missing"],
    // Parts.
    ["one part", "v1", "401 token_malformed"],
    ["three parts", `v1.${e}.${p}`, "401 token_malformed"],
    ["prefix left out", `v1.${e}.${s}`, "401 token_malformed"],
    ["an extra part", `${good}.x`, "401 token_malformed"],
    ["an empty extra part", `${good}.`, "401 token_malformed"],
    ["a leading dot", `.${good}`, "401 token_malformed"],
    ["dots only", "...", "401 token_malformed"],
    ["surrounding space", ` ${good}`, "401 token_malformed"],
    ["too long", good + "A".repeat(MAX_TOKEN_LENGTH), "401 token_malformed"],
    // Version.
    ["version v2", `v2.${e}.${p}.${s}`, "401 token_malformed"],
    ["version V1", `V1.${e}.${p}.${s}`, "401 token_malformed"],
    ["version empty", `.${e}.${p}.${s}`, "401 token_malformed"],
    ["version v10", `v10.${e}.${p}.${s}`, "401 token_malformed"],
    // Expiry.
    ["expiry + 1", `v1.${EXPIRY + 1}.${p}.${s}`, "403 token_signature"],
    ["expiry far later", `v1.9${e}.${p}.${s}`, "403 token_signature"],
    ["expiry with a leading 0", `v1.0${e}.${p}.${s}`, "403 token_signature"],
    ["expiry 0", `v1.0.${p}.${s}`, "403 token_signature"],
    ["expiry empty", `v1..${p}.${s}`, "401 token_malformed"],
    ["expiry signed +", `v1.+${e}.${p}.${s}`, "401 token_malformed"],
    ["expiry signed -", `v1.-${e}.${p}.${s}`, "401 token_malformed"],
    ["expiry exponent", `v1.17e8.${p}.${s}`, "401 token_malformed"],
    ["expiry fraction", `v1.${e}.5.${p}.${s}`, "401 token_malformed"],
    ["expiry hex", `v1.0x6553f100.${p}.${s}`, "401 token_malformed"],
    ["expiry with a space", `v1. ${e}.${p}.${s}`, "401 token_malformed"],
    ["expiry 13 digits", `v1.1${e}00.${p}.${s}`, "401 token_malformed"],
    ["expiry Infinity", `v1.Infinity.${p}.${s}`, "401 token_malformed"],
    ["expiry Arabic-Indic digits", `v1.١٧٠٠.${p}.${s}`, "401 token_malformed"],
    // Prefix.
    ["prefix widened to empty", `v1.${e}..${s}`, "403 token_signature"],
    [
      "prefix changed",
      `v1.${e}.${b64url("room/a")}.${s}`,
      "403 token_signature",
    ],
    ["prefix respelled", `v1.${e}.${respell(p)}.${s}`, "403 token_signature"],
    ["prefix padded", `v1.${e}.${p}=.${s}`, "401 token_malformed"],
    [
      "prefix in standard base64",
      `v1.${e}.${Buffer.from("room/?>").toString("base64")}.${s}`,
      "401 token_malformed",
    ],
    ["prefix with +", `v1.${e}.cm9v+S8.${s}`, "401 token_malformed"],
    ["prefix with /", `v1.${e}.cm9v/S8.${s}`, "401 token_malformed"],
    ["prefix with %", `v1.${e}.cm9v%2F.${s}`, "401 token_malformed"],
    [
      "prefix of impossible length",
      `v1.${e}.cm9vb.${s}`,
      "401 token_malformed",
    ],
    [
      "prefix not UTF-8",
      `v1.${e}.${b64url(new Uint8Array([0x72, 0xff]))}.${s}`,
      "401 token_malformed",
    ],
    [
      "prefix a lone surrogate in UTF-8",
      `v1.${e}.${b64url(new Uint8Array([0xed, 0xa0, 0x80]))}.${s}`,
      "401 token_malformed",
    ],
    // Signature.
    [
      "signature first char",
      `v1.${e}.${p}.${flip(s[0])}${s.slice(1)}`,
      "403 token_signature",
    ],
    [
      "signature middle char",
      `v1.${e}.${p}.${s.slice(0, 20)}${flip(s[20])}${s.slice(21)}`,
      "403 token_signature",
    ],
    [
      "signature last char respelled",
      `v1.${e}.${p}.${respell(s)}`,
      "403 token_signature",
    ],
    [
      "signature of another token",
      `v1.${e}.${p}.${refSignature(SECRET, e, "")}`,
      "403 token_signature",
    ],
    [
      "signature all A",
      `v1.${e}.${p}.${"A".repeat(43)}`,
      "403 token_signature",
    ],
    ["signature empty", `v1.${e}.${p}.`, "401 token_malformed"],
    [
      "signature one char short",
      `v1.${e}.${p}.${s.slice(0, -1)}`,
      "401 token_malformed",
    ],
    [
      "signature one char long (33 bytes)",
      `v1.${e}.${p}.${s}A`,
      "401 token_malformed",
    ],
    [
      "signature of impossible length",
      `v1.${e}.${p}.${s}AA`,
      "401 token_malformed",
    ],
    ["signature 34 bytes", `v1.${e}.${p}.${s}AAA`, "401 token_malformed"],
    ["signature padded", `v1.${e}.${p}.${s}=`, "401 token_malformed"],
    [
      "signature in standard base64",
      `v1.${e}.${p}.${Buffer.from(s, "base64url").toString("base64")}`,
      "401 token_malformed",
    ],
    ["signature with +", `v1.${e}.${p}.+${s.slice(1)}`, "401 token_malformed"],
    ["signature with /", `v1.${e}.${p}./${s.slice(1)}`, "401 token_malformed"],
    [
      "signature with a space",
      `v1.${e}.${p}. ${s.slice(1)}`,
      "401 token_malformed",
    ],
    ["signature with é", `v1.${e}.${p}.é${s.slice(1)}`, "401 token_malformed"],
    [
      "signature in hex",
      `v1.${e}.${p}.${Buffer.from(s, "base64url").toString("hex")}`,
      "401 token_malformed",
    ],
  ];
  for (const [name, token, expected] of cases) {
    await t.step(name, async () => {
      assert.equal(await check(token), expected);
    });
  }
});

Deno.test("check refuses a token longer than MAX_TOKEN_LENGTH as malformed", async () => {
  // The longest signed token that fits, then the shortest that does not.
  let n = 0;
  while (
    refToken(SECRET, EXPIRY, "r".repeat(n + 1)).length <= MAX_TOKEN_LENGTH
  ) {
    n++;
  }
  const fits = refToken(SECRET, EXPIRY, "r".repeat(n));
  const over = refToken(SECRET, EXPIRY, "r".repeat(n + 1));
  assert.ok(fits.length <= MAX_TOKEN_LENGTH && over.length > MAX_TOKEN_LENGTH);
  assert.equal(await check(fits, "r".repeat(n + 1)), "ok");
  assert.equal(await check(over, "r".repeat(n + 1)), "401 token_malformed");
});

Deno.test("check trusts expiry and prefix only once the signature holds", async () => {
  const e = String(EXPIRY);
  const forged = `v1.${e}.${b64url("other/")}.${
    refSignature("guess", e, "other/")
  }`;
  // Expired and out of scope, but the signature is what is wrong first.
  assert.equal(
    await check(forged, "room/a", (EXPIRY + 60) * 1000),
    "403 token_signature",
  );
  // Signed, expired and out of scope: expiry is checked before scope.
  assert.equal(
    await check(
      refToken(SECRET, EXPIRY, "other/"),
      "room/a",
      (EXPIRY + 60) * 1000,
    ),
    "403 token_expired",
  );
});

Deno.test("check refusals carry a short text with neither token, key nor secret", async () => {
  const token = refToken(SECRET, EXPIRY, "secret-room/");
  const refusals = await Promise.all([
    authority.check({ token: undefined, key: "secret-room/a", now: NOW }),
    authority.check({ token: `${token}.`, key: "secret-room/a", now: NOW }),
    authority.check({ token: respell(token), key: "secret-room/a", now: NOW }),
    authority.check({ token, key: "secret-room/a", now: NOW + 1e9 }),
    authority.check({ token, key: "elsewhere", now: NOW }),
  ]);
  const seen = new Set<string>();
  for (const result of refusals) {
    assert.equal(result.ok, false);
    if (result.ok) continue;
    seen.add(result.reason);
    assert.ok(TOKEN_REFUSAL_REASONS.includes(result.reason));
    assert.equal(
      result.status,
      result.reason.match(/missing|malformed/) ? 401 : 403,
    );
    assert.match(result.text, /^(Unauthorized|Forbidden): /);
    for (
      const secret of [
        SECRET,
        token,
        token.split(".")[3],
        "secret-room",
        "elsewhere",
      ]
    ) {
      assert.ok(
        !result.text.includes(secret),
        `${result.text} holds ${secret}`,
      );
    }
  }
  assert.deepEqual([...seen].sort(), [...TOKEN_REFUSAL_REASONS].sort());
  const [missing] = refusals;
  assert.deepEqual(missing, {
    ok: false,
    status: 401,
    reason: "token_missing",
    text:
      "Unauthorized: a valid access token is required in the path /t/<token>/<key>",
  });
});

Deno.test("TokenAuthority throws TypeError when a secret is missing or not a string", async (t) => {
  const cases: [string, unknown[]][] = [
    ["no secret", []],
    ["a number", [1234567890123456789]],
    ["undefined second secret", [SECRET, undefined]],
  ];
  for (const [name, secrets] of cases) {
    await t.step(name, () => {
      assert.throws(() => new TokenAuthority(secrets as string[]), {
        name: "TypeError",
        message: /^Cannot create a token authority: /,
      });
    });
  }
  await assert.rejects(
    checkToken([], { token: "x", key: "k", now: NOW }),
    TypeError,
  );
});

Deno.test("TokenAuthority, mintToken and checkToken refuse a secret under 16 bytes with RangeError", async (t) => {
  const cases: [string, string, number][] = [
    ["empty", "", 0],
    ["short", "short", 5],
    ["abcdef", "abcdef", 6],
    ["15 bytes", "x".repeat(15), 15],
    // Counted in UTF-8 bytes, not characters: 5 × 3 bytes.
    ["15 bytes in 5 characters", "€€€€€", 15],
  ];
  for (const [name, secret, bytes] of cases) {
    await t.step(name, async () => {
      const message =
        `Cannot create a token authority: a secret is ${bytes} bytes, under 16 (use 32 random bytes, e.g. from sigver secret)`;
      assert.throws(() => new TokenAuthority([secret]), {
        name: "RangeError",
        message,
      });
      // A short secret among good ones is refused too: any one validates.
      assert.throws(() => new TokenAuthority([SECRET, secret]), RangeError);
      await assert.rejects(mintToken(secret, { now: NOW }), {
        name: "RangeError",
        message,
      });
      await assert.rejects(
        checkToken([secret], { token: "x", key: "k", now: NOW }),
        RangeError,
      );
      // The message never holds the secret.
      if (secret.length > 0) assert.ok(!message.includes(secret));
    });
  }
  await t.step("16 bytes are enough", async () => {
    for (const secret of ["x".repeat(16), "€€€€€x"]) {
      const token = await mintToken(secret, { now: NOW });
      assert.equal(token, refToken(secret, EXPIRY, ""));
    }
  });
});

Deno.test("mint throws when the ttl, the time or the prefix is unusable", async (t) => {
  const cases: [string, MintTokenOptions, string][] = [
    ["ttl 0", { ttl: 0, now: NOW }, "RangeError"],
    ["now NaN", { now: NaN }, "RangeError"],
    ["now negative", { now: -1 }, "RangeError"],
    ["expiry over 12 digits", { ttl: 1e15, now: NOW }, "RangeError"],
    [
      "prefix with a lone surrogate",
      { prefix: "room\ud800", now: NOW },
      "TypeError",
    ],
  ];
  for (const [name, options, error] of cases) {
    await t.step(name, async () => {
      await assert.rejects(authority.mint(options), {
        name: error,
        message: /^Cannot mint a token: /,
      });
    });
  }
});

Deno.test("mint refuses a ttl that is not whole seconds in milliseconds, saying why", async (t) => {
  const cases: [string, number, string][] = [
    ["seconds by mistake (600)", 600, "ttl 600 ms is under 1000 ms"],
    [
      "seconds by mistake (3600)",
      3600,
      "ttl 3600 ms is not a whole number of seconds",
    ],
    ["under a second", 999, "ttl 999 ms is under 1000 ms"],
    ["a negative", -1000, "ttl -1000 ms is under 1000 ms"],
    [
      "a fraction of a millisecond",
      1000.5,
      "ttl 1000.5 is not a whole number of milliseconds",
    ],
    ["NaN", NaN, "ttl NaN is not a whole number of milliseconds"],
    [
      "Infinity",
      Infinity,
      "ttl Infinity is not a whole number of milliseconds",
    ],
    [
      "beyond safe integers",
      2 ** 53,
      "ttl 9007199254740992 is not a whole number of milliseconds",
    ],
    [
      "a second and a half",
      1500,
      "ttl 1500 ms is not a whole number of seconds",
    ],
  ];
  for (const [name, ttl, state] of cases) {
    await t.step(name, async () => {
      await assert.rejects(authority.mint({ ttl, now: NOW }), {
        name: "RangeError",
        message: `Cannot mint a token: ${state}`,
      });
      await assert.rejects(mintToken(SECRET, { ttl, now: NOW }), RangeError);
    });
  }
});

Deno.test("check throws TypeError when now is not a number of milliseconds", async () => {
  await assert.rejects(
    authority.check({ token: "x", key: "k", now: NaN }),
    { name: "TypeError", message: /^Cannot check a token: / },
  );
});

Deno.test("splitTokenPath splits t/<token>/<key> and leaves other paths whole", async (t) => {
  const cases: [string, TokenAccess][] = [
    ["t/TOKEN/room/a", { token: "TOKEN", key: "room/a" }],
    ["t/TOKEN/room", { token: "TOKEN", key: "room" }],
    ["t/TOKEN/room/a/b", { token: "TOKEN", key: "room/a/b" }],
    ["t/TOKEN", { token: "TOKEN", key: "" }],
    ["t/TOKEN/", { token: "TOKEN", key: "" }],
    ["t/TOKEN//a", { token: "TOKEN", key: "/a" }],
    ["t/TOKEN/t/OTHER/x", { token: "TOKEN", key: "t/OTHER/x" }],
    ["t/v1.1.cm9vbQ.x-_/my%20room/%C3%A9", {
      token: "v1.1.cm9vbQ.x-_",
      key: "my%20room/%C3%A9",
    }],
    ["t/v1%2E1/room", { token: "v1%2E1", key: "room" }],
    ["room/a", { token: undefined, key: "room/a" }],
    ["", { token: undefined, key: "" }],
    ["t", { token: undefined, key: "t" }],
    ["t/", { token: undefined, key: "t/" }],
    ["t//room", { token: undefined, key: "t//room" }],
    ["T/TOKEN/room", { token: undefined, key: "T/TOKEN/room" }],
    ["tt/TOKEN/room", { token: undefined, key: "tt/TOKEN/room" }],
    ["t%2FTOKEN/room", { token: undefined, key: "t%2FTOKEN/room" }],
    ["/t/TOKEN/room", { token: undefined, key: "/t/TOKEN/room" }],
    ["room/t/TOKEN/x", { token: undefined, key: "room/t/TOKEN/x" }],
  ];
  for (const [path, expected] of cases) {
    await t.step(JSON.stringify(path), () => {
      assert.deepEqual(splitTokenPath(path), expected);
    });
  }
});

Deno.test("splitTokenPath feeds check: a minted token opens its key", async () => {
  const token = await authority.mint({ prefix: "room/", now: NOW });
  const access = splitTokenPath(`t/${token}/room/a`);
  assert.deepEqual(access, { token, key: "room/a" });
  assert.equal(outcome(await authority.check({ ...access, now: NOW })), "ok");
  const bare = splitTokenPath("room/a");
  assert.equal(
    outcome(await authority.check({ ...bare, now: NOW })),
    "401 token_missing",
  );
});
