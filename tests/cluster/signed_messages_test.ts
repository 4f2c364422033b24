// Tests of cluster/signed_messages.ts: what both Redis buses do alike with
// the messages they read off Redis. No Redis, no sockets; the clock of the
// reject counter is driven by hand.

import assert from "node:assert/strict";
import { Logger } from "../../lib/log.ts";
import {
  busMetrics,
  MessageSigner,
  RejectCounter,
  ReplayGuard,
} from "../../cluster/signed_messages.ts";

const SECRET = "a cluster secret of 32 bytes....";

function split(payload: string): [string, string] {
  return [payload.slice(0, 43), payload.slice(44)];
}

Deno.test("MessageSigner signs in the y-webrtc bus's wire format", async () => {
  const signer = new MessageSigner(SECRET, "sigver-yw-v1");
  const payload = await signer.sign("sigver:yw:1", "rest");
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(
    await crypto.subtle.sign(
      "HMAC",
      key,
      new TextEncoder().encode("sigver-yw-v1\nsigver:yw:1\nrest"),
    ),
  );
  const expected = btoa(String.fromCharCode(...mac)).replaceAll("+", "-")
    .replaceAll("/", "_").replace(/=+$/, "");
  assert.equal(payload, `${expected}.rest`);
});

Deno.test("MessageSigner verifies only the same secret, domain, channel and rest", async (t) => {
  const signer = new MessageSigner(SECRET, "sigver-pj-v1");
  const [signature, rest] = split(await signer.sign("channel", "rest"));
  const cases: [string, MessageSigner, string, string, string, boolean][] = [
    ["as signed", signer, "channel", signature, rest, true],
    ["another channel", signer, "other", signature, rest, false],
    ["another rest", signer, "channel", signature, "rest!", false],
    [
      "another domain",
      new MessageSigner(SECRET, "sigver-yw-v1"),
      "channel",
      signature,
      rest,
      false,
    ],
    [
      "another secret",
      new MessageSigner("another secret of 32 bytes......", "sigver-pj-v1"),
      "channel",
      signature,
      rest,
      false,
    ],
    ["a signature that is not base64url", signer, "channel", "*", rest, false],
  ];
  for (const [name, verifier, channel, sig, body, valid] of cases) {
    await t.step(name, async () => {
      assert.equal(await verifier.verify(channel, sig, body), valid);
    });
  }
});

Deno.test("MessageSigner refuses an empty secret", () => {
  assert.throws(() => new MessageSigner("", "sigver-yw-v1"), {
    name: "TypeError",
    message: "Cannot sign bus messages: the secret is empty",
  });
});

Deno.test("MessageSigner.mac is the HMAC of the text alone", async () => {
  const signer = new MessageSigner(SECRET, "sigver-pj-v1");
  const a = new Uint8Array(await signer.mac("sigver-pj-id\nkey\nid"));
  const b = new Uint8Array(await signer.mac("sigver-pj-id\nkey\nid"));
  const c = new Uint8Array(await signer.mac("sigver-pj-id\nkey\nid2"));
  assert.equal(a.length, 32);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("ReplayGuard admits only growing sequence numbers per node", () => {
  const guard = new ReplayGuard();
  assert.equal(guard.admit("a", 1), true);
  assert.equal(guard.admit("b", 1), true);
  assert.equal(guard.admit("a", 1), false);
  assert.equal(guard.admit("a", 0), false);
  assert.equal(guard.admit("a", 3), true);
  assert.equal(guard.admit("a", 2), false);
});

Deno.test("ReplayGuard forgets the node heard from longest ago when full", () => {
  const guard = new ReplayGuard(2);
  guard.admit("a", 5);
  guard.admit("b", 5);
  guard.admit("a", 6); // a is now the most recent
  guard.admit("c", 5); // b is forgotten
  assert.equal(guard.admit("a", 6), false);
  assert.equal(guard.admit("c", 5), false);
  assert.equal(guard.admit("b", 1), true);
});

Deno.test("RejectCounter counts every reject and warns once an interval", () => {
  const lines: string[] = [];
  let now = 0;
  const rejects = new RejectCounter(["malformed", "forged"], {
    event: "demo_rejected",
    log: new Logger((line) => lines.push(line), "info", "json"),
    interval: 10_000,
    now: () => now,
  });
  rejects.record("forged");
  now = 9_999;
  rejects.record("forged");
  rejects.record("malformed");
  now = 10_000;
  rejects.record("forged");
  assert.deepEqual(rejects.counts(), { malformed: 1, forged: 3 });
  const warnings = lines.map((line) => JSON.parse(line));
  assert.equal(warnings.length, 2);
  assert.deepEqual(
    warnings.map((w) => [w.level, w.event, w.reason, w.total]),
    [["warn", "demo_rejected", "forged", 1], [
      "warn",
      "demo_rejected",
      "forged",
      3,
    ]],
  );
});

Deno.test("RejectCounter.counts is a snapshot", () => {
  const rejects = new RejectCounter(["forged"], { event: "demo" });
  const before = rejects.counts();
  rejects.record("forged");
  assert.deepEqual(before, { forged: 0 });
  assert.deepEqual(rejects.counts(), { forged: 1 });
});

Deno.test("busMetrics puts the up gauge first and the rejects last", () => {
  const rejects = new RejectCounter(["malformed", "forged"], { event: "x" });
  rejects.record("forged");
  const families = busMetrics([{
    name: "sigver_peerjs_bus_claims_total",
    help: "Claims.",
    type: "counter",
    samples: [],
  }], {
    metric: "peerjs",
    title: "PeerJS",
    labels: { protocol: "peerjs" },
    up: false,
    rejects,
  });
  assert.deepEqual(families, [
    {
      name: "sigver_peerjs_bus_up",
      help: "Whether the PeerJS bus's Redis subscription is up (1) or not.",
      type: "gauge",
      samples: [[{ protocol: "peerjs" }, 0]],
    },
    {
      name: "sigver_peerjs_bus_claims_total",
      help: "Claims.",
      type: "counter",
      samples: [],
    },
    {
      name: "sigver_peerjs_bus_rejected_total",
      help: "Messages from Redis dropped by the PeerJS bus, by why.",
      type: "counter",
      samples: [
        [{ protocol: "peerjs", reason: "malformed" }, 0],
        [{ protocol: "peerjs", reason: "forged" }, 1],
      ],
    },
  ]);
});
