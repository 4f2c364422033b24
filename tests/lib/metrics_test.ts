// Unit tests of lib/metrics.ts (Tally, collect, renderMetrics in the
// Prometheus text format 0.0.4) and lib/server_metrics.ts (the families of
// /metrics, read from the snapshot handler.ts builds).

import assert from "node:assert/strict";
import type { HubCounters, HubStats } from "../../lib/netflux/hub.ts";
import {
  collect,
  type MetricDef,
  type MetricFamily,
  renderMetrics,
  single,
  Tally,
} from "../../lib/metrics.ts";
import {
  SERVER_METRICS,
  type ServerSnapshot,
} from "../../lib/server_metrics.ts";

Deno.test("Tally counts each tuple of label values, in the order they first came", () => {
  const closes = new Tally(["code", "by"]);
  assert.deepEqual(closes.labels, ["code", "by"]);
  closes.add("1000", "client");
  closes.add("4743", "server");
  closes.add("1000", "client");
  closes.add("1000", "server");
  closes.add("1000", "client");
  assert.deepEqual(closes.samples(), [
    [{ code: "1000", by: "client" }, 3],
    [{ code: "4743", by: "server" }, 1],
    [{ code: "1000", by: "server" }, 1],
  ]);
});

Deno.test("Tally without events has no samples", () => {
  assert.deepEqual(new Tally(["reason"]).samples(), []);
});

Deno.test("Tally keeps label values as they are: empty, spaced, quoted, multi-line", () => {
  const tally = new Tally(["reason"]);
  for (const value of ["", "a b", 'say "hi"', "one\ntwo", "back\\slash", ""]) {
    tally.add(value);
  }
  assert.deepEqual(tally.samples(), [
    [{ reason: "" }, 2],
    [{ reason: "a b" }, 1],
    [{ reason: 'say "hi"' }, 1],
    [{ reason: "one\ntwo" }, 1],
    [{ reason: "back\\slash" }, 1],
  ]);
});

Deno.test("Tally with one label counts by that label", () => {
  const rejections = new Tally(["reason"]);
  rejections.add("origin");
  rejections.add("capacity");
  rejections.add("origin");
  assert.deepEqual(rejections.samples(), [
    [{ reason: "origin" }, 2],
    [{ reason: "capacity" }, 1],
  ]);
});

Deno.test("Tally.samples is a fresh snapshot: later adds and edits do not reach it", () => {
  const tally = new Tally(["reason"]);
  tally.add("x");
  const before = tally.samples();
  tally.add("x");
  tally.add("y");
  assert.deepEqual(before, [[{ reason: "x" }, 1]]);
  (before[0][0] as Record<string, string>).reason = "edited";
  assert.deepEqual(tally.samples(), [[{ reason: "x" }, 2], [
    { reason: "y" },
    1,
  ]]);
});

Deno.test("collect makes one family per definition, in order, a number as one unlabelled sample", () => {
  const labelled: readonly [Record<string, string>, number][] = [
    [{ type: "a" }, 1],
    [{ type: "b" }, 2],
  ];
  const defs: MetricDef<{ n: number; flag: boolean }>[] = [
    { name: "m_one", type: "gauge", help: "One.", read: (s) => s.n },
    {
      name: "m_two_total",
      type: "counter",
      help: "Two.",
      read: () => labelled,
    },
    { name: "m_none", type: "counter", help: "None.", read: () => [] },
    {
      name: "m_flag",
      type: "gauge",
      help: "Flag.",
      read: (s) => s.flag ? 1 : 0,
    },
  ];
  assert.deepEqual(collect(defs, { n: 42, flag: true }), [
    { name: "m_one", type: "gauge", help: "One.", samples: [[{}, 42]] },
    { name: "m_two_total", type: "counter", help: "Two.", samples: labelled },
    { name: "m_none", type: "counter", help: "None.", samples: [] },
    { name: "m_flag", type: "gauge", help: "Flag.", samples: [[{}, 1]] },
  ]);
  assert.deepEqual(collect(defs, { n: 0, flag: false })[3].samples, [[{}, 0]]);
  assert.deepEqual(collect([], { n: 1, flag: true }), []);
});

Deno.test("renderMetrics writes HELP and TYPE lines, then one line per sample", () => {
  const families: MetricFamily[] = [
    {
      name: "sigver_peers",
      help: "Connected peers.",
      type: "gauge",
      samples: [[{}, 2]],
    },
    {
      name: "sigver_closes_total",
      help: "Closed peer sockets.",
      type: "counter",
      samples: [
        [{ code: "1000", by: "client" }, 7],
        [{ code: "4743", by: "server" }, 1],
      ],
    },
  ];
  assert.equal(
    renderMetrics(families),
    "# HELP sigver_peers Connected peers.\n" +
      "# TYPE sigver_peers gauge\n" +
      "sigver_peers 2\n" +
      "# HELP sigver_closes_total Closed peer sockets.\n" +
      "# TYPE sigver_closes_total counter\n" +
      'sigver_closes_total{code="1000",by="client"} 7\n' +
      'sigver_closes_total{code="4743",by="server"} 1\n',
  );
});

Deno.test("renderMetrics writes a family without samples as its HELP and TYPE lines", () => {
  assert.equal(
    renderMetrics([
      { name: "m_total", help: "Nothing yet.", type: "counter", samples: [] },
      { name: "m_up", help: "Up.", type: "gauge", samples: [[{}, 1]] },
    ]),
    "# HELP m_total Nothing yet.\n# TYPE m_total counter\n" +
      "# HELP m_up Up.\n# TYPE m_up gauge\nm_up 1\n",
  );
});

Deno.test("renderMetrics of no families is empty", () => {
  assert.equal(renderMetrics([]), "");
});

Deno.test("renderMetrics escapes backslash, double quote and newline in label values", async (t) => {
  const cases: [string, string, string][] = [
    ["a plain value", "origin", "origin"],
    ["an empty value", "", ""],
    ["a backslash", "a\\b", "a\\\\b"],
    ["a double quote", 'say "hi"', 'say \\"hi\\"'],
    ["a newline", "one\ntwo", "one\\ntwo"],
    ["a backslash before a quote", '\\"', '\\\\\\"'],
    ["a backslash before an n", "\\n", "\\\\n"],
    ["all three", 'C:\\dir\n"x"', 'C:\\\\dir\\n\\"x\\"'],
    // Only those three: other characters go as they are.
    ["a tab, a carriage return and UTF-8", "\t\ré🔑", "\t\ré🔑"],
    ["braces, commas and equals signs", '{a="b",c}', '{a=\\"b\\",c}'],
  ];
  for (const [name, value, escaped] of cases) {
    await t.step(name, () => {
      const text = renderMetrics([
        {
          name: "m",
          help: "H.",
          type: "counter",
          samples: [[{ l: value }, 1]],
        },
      ]);
      assert.equal(
        text,
        `# HELP m H.\n# TYPE m counter\nm{l="${escaped}"} 1\n`,
      );
    });
  }
});

Deno.test("renderMetrics writes values as JavaScript numbers", async (t) => {
  const cases: [number, string][] = [
    [0, "0"],
    [-0, "0"],
    [1, "1"],
    [-3, "-3"],
    [0.25, "0.25"],
    [1234567890, "1234567890"],
    [Number.MAX_SAFE_INTEGER, "9007199254740991"],
    [NaN, "NaN"],
  ];
  for (const [value, written] of cases) {
    const shown = Object.is(value, -0) ? "-0" : String(value);
    await t.step(`${shown} as ${written}`, () => {
      const text = renderMetrics([
        { name: "m", help: "H.", type: "gauge", samples: [[{}, value]] },
      ]);
      assert.equal(text.split("\n")[2], `m ${written}`);
    });
  }
});

// The snapshot of handler.ts's metrics(): every number distinct, so that each
// family is seen to read its own field.
const STATS: HubStats = {
  peers: 11,
  groups: 12,
  members: 13,
  ids: 14,
  bindings: 15,
  scheduled: 16,
};
const COUNTERS: HubCounters = {
  inHeartbeat: 21,
  inContent: 22,
  inConnect: 23,
  inConnected: 24,
  outHeartbeat: 25,
  outContent: 26,
  outConnected: 27,
  bytesRelayed: 28,
  dropped: 29,
};

function snapshot(overrides: Partial<ServerSnapshot> = {}): ServerSnapshot {
  const closes = new Tally(["code", "by"]);
  closes.add("1000", "client");
  closes.add("4743", "server");
  closes.add("1000", "client");
  const rejections = new Tally(["reason"]);
  rejections.add("origin");
  return {
    stats: STATS,
    counters: COUNTERS,
    draining: false,
    connectionsTotal: 31,
    invalid: 32,
    closes,
    rejections,
    ...overrides,
  };
}

Deno.test("SERVER_METRICS: the families of /metrics, in order, with their types", () => {
  assert.deepEqual(
    SERVER_METRICS.map(({ name, type }) => `${name} ${type}`),
    [
      "sigver_peers gauge",
      "sigver_groups gauge",
      "sigver_members gauge",
      "sigver_bound_joiners gauge",
      "sigver_draining gauge",
      "sigver_connections_total counter",
      "sigver_messages_received_total counter",
      "sigver_messages_sent_total counter",
      "sigver_relayed_bytes_total counter",
      "sigver_dropped_messages_total counter",
      "sigver_closes_total counter",
      "sigver_rejections_total counter",
    ],
  );
});

Deno.test("SERVER_METRICS names are sigver_ prefixed, counters and only counters end in _total", () => {
  for (const def of SERVER_METRICS) {
    assert.match(def.name, /^sigver_[a-z_]+$/, def.name);
    assert.equal(def.name.endsWith("_total"), def.type === "counter", def.name);
    assert.match(def.help, /^[A-Z1].*\.$/, def.name);
    assert.ok(!def.help.includes("\n"), def.name);
  }
  assert.equal(new Set(SERVER_METRICS.map((d) => d.name)).size, 12);
});

Deno.test("SERVER_METRICS are the families README lists, but the two serve.ts adds", async () => {
  const readme = await Deno.readTextFile(
    new URL("../../README.md", import.meta.url),
  );
  const paragraph = readme.slice(
    readme.indexOf("**Metrics**"),
    readme.indexOf("**Logs.**"),
  );
  const listed = [...paragraph.matchAll(/`(sigver_[a-z_]+)(?:\{[a-z,]+\})?`/g)]
    .map((m) => m[1]);
  assert.deepEqual(
    listed.filter((n) =>
      n !== "sigver_accepting" && n !== "sigver_accept_errors_total"
    ).sort(),
    SERVER_METRICS.map((d) => d.name).sort(),
  );
  assert.equal(listed.length, SERVER_METRICS.length + 2);
});

Deno.test("collect(SERVER_METRICS) reads each family from its own field of the snapshot", () => {
  const families = collect(SERVER_METRICS, snapshot());
  const byName = Object.fromEntries(families.map((f) => [f.name, f.samples]));
  assert.deepEqual(byName, {
    sigver_peers: [[{}, 11]],
    sigver_groups: [[{}, 12]],
    sigver_members: [[{}, 13]],
    sigver_bound_joiners: [[{}, 15]],
    sigver_draining: [[{}, 0]],
    sigver_connections_total: [[{}, 31]],
    sigver_messages_received_total: [
      [{ type: "heartbeat" }, 21],
      [{ type: "content" }, 22],
      [{ type: "connect" }, 23],
      [{ type: "connected" }, 24],
      [{ type: "invalid" }, 32],
    ],
    sigver_messages_sent_total: [
      [{ type: "heartbeat" }, 25],
      [{ type: "content" }, 26],
      [{ type: "connected" }, 27],
    ],
    sigver_relayed_bytes_total: [[{}, 28]],
    sigver_dropped_messages_total: [[{}, 29]],
    sigver_closes_total: [
      [{ code: "1000", by: "client" }, 2],
      [{ code: "4743", by: "server" }, 1],
    ],
    sigver_rejections_total: [[{ reason: "origin" }, 1]],
  });
});

Deno.test("collect(SERVER_METRICS): sigver_draining is 1 while the server drains", () => {
  const families = collect(SERVER_METRICS, snapshot({ draining: true }));
  const draining = families.find((f) => f.name === "sigver_draining");
  assert.deepEqual(draining?.samples, [[{}, 1]]);
});

Deno.test("SERVER_METRICS render as the exposition /metrics serves", () => {
  const empty = snapshot({
    closes: new Tally(["code", "by"]),
    rejections: new Tally(["reason"]),
    draining: true,
  });
  assert.equal(
    renderMetrics(collect(SERVER_METRICS, empty)),
    `# HELP sigver_peers Connected peers.
# TYPE sigver_peers gauge
sigver_peers 11
# HELP sigver_groups Groups (keys with at least one member).
# TYPE sigver_groups gauge
sigver_groups 12
# HELP sigver_members Group members over all groups.
# TYPE sigver_members gauge
sigver_members 13
# HELP sigver_bound_joiners Joining peers bound to a member.
# TYPE sigver_bound_joiners gauge
sigver_bound_joiners 15
# HELP sigver_draining 1 while the server drains.
# TYPE sigver_draining gauge
sigver_draining 1
# HELP sigver_connections_total WebSocket upgrades accepted.
# TYPE sigver_connections_total counter
sigver_connections_total 31
# HELP sigver_messages_received_total Frames received from peers, by message type.
# TYPE sigver_messages_received_total counter
sigver_messages_received_total{type="heartbeat"} 21
sigver_messages_received_total{type="content"} 22
sigver_messages_received_total{type="connect"} 23
sigver_messages_received_total{type="connected"} 24
sigver_messages_received_total{type="invalid"} 32
# HELP sigver_messages_sent_total Frames sent to peers, by message type.
# TYPE sigver_messages_sent_total counter
sigver_messages_sent_total{type="heartbeat"} 25
sigver_messages_sent_total{type="content"} 26
sigver_messages_sent_total{type="connected"} 27
# HELP sigver_relayed_bytes_total Content payload bytes relayed.
# TYPE sigver_relayed_bytes_total counter
sigver_relayed_bytes_total 28
# HELP sigver_dropped_messages_total Content messages that matched no binding.
# TYPE sigver_dropped_messages_total counter
sigver_dropped_messages_total 29
# HELP sigver_closes_total Closed peer sockets, by close code and by who closed.
# TYPE sigver_closes_total counter
# HELP sigver_rejections_total Upgrades refused and peers closed by a limit, by reason.
# TYPE sigver_rejections_total counter
`,
  );
});

Deno.test("single makes a family of one sample, with labels or none", () => {
  assert.deepEqual(single("sigver_up", "gauge", "Up.", 1), {
    name: "sigver_up",
    type: "gauge",
    help: "Up.",
    samples: [[{}, 1]],
  });
  assert.deepEqual(
    single("sigver_x_total", "counter", "X.", 7, { protocol: "y-webrtc" })
      .samples,
    [[{ protocol: "y-webrtc" }, 7]],
  );
});
