/**
 * Tests of deno/system.ts: the open-file limit and the `maxPeers` default
 * it gives. The limit and the permissions are the process's own, so each
 * case runs a small program in a child Deno (`Deno.execPath()`) under
 * `ulimit -n` and the permissions it names, and reads what it prints.
 */

import assert from "node:assert/strict";
import { defaultMaxPeers, openFileLimit } from "../../deno/system.ts";

const SYSTEM = new URL("../../deno/system.ts", import.meta.url).href;

/** Prints `[openFileLimit() ?? null, defaultMaxPeers()]` as JSON. */
const PROGRAM = `
import { defaultMaxPeers, openFileLimit } from ${JSON.stringify(SYSTEM)};
console.log(JSON.stringify([openFileLimit() ?? null, defaultMaxPeers()]));
`;

/** What the child printed, on its stdout, stderr, and its exit code. */
interface Run {
  stdout: string;
  stderr: string;
  code: number;
}

/**
 * Runs {@linkcode PROGRAM} from stdin in a child Deno with a soft
 * open-file limit and permission flags.
 */
async function run(nofile: number, permissions: string[]): Promise<Run> {
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `ulimit -n ${nofile} && exec "$@"`,
      "sh",
      Deno.execPath(),
      "run",
      "--quiet",
      "--no-config",
      "--no-lock",
      "--no-prompt",
      ...permissions,
      "-",
    ],
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(PROGRAM));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return {
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
    code,
  };
}

Deno.test("openFileLimit reads the soft open-file limit, and defaultMaxPeers leaves 256 of it", async (t) => {
  const cases: [number, string][] = [
    [1000, "[1000,744]\n"],
    [500, "[500,244]\n"],
  ];
  for (const [nofile, expected] of cases) {
    await t.step(`ulimit -n ${nofile}`, async () => {
      const { stdout, stderr, code } = await run(nofile, ["-A"]);
      assert.equal(stderr, "");
      assert.equal(stdout, expected);
      assert.equal(code, 0);
    });
  }
});

Deno.test("defaultMaxPeers is at least 64 under a small open-file limit", async () => {
  const { stdout, stderr, code } = await run(300, ["-A"]);
  assert.equal(stderr, "");
  assert.equal(stdout, "[300,64]\n");
  assert.equal(code, 0);
});

Deno.test("openFileLimit gives undefined, and defaultMaxPeers 10000, when the file may not be read", async (t) => {
  // Deno 2.9 lets a program read /proc/self/limits only with -A, whatever
  // --allow-read says (docs/deploy.md).
  const cases: [string, string[]][] = [
    ["no permission", []],
    ["--allow-read", ["--allow-read"]],
    ["--allow-read=/proc/self/limits", ["--allow-read=/proc/self/limits"]],
  ];
  for (const [name, permissions] of cases) {
    await t.step(name, async () => {
      const { stdout, stderr, code } = await run(1000, permissions);
      assert.equal(stderr, "", "no prompt, no error");
      assert.equal(stdout, "[null,10000]\n");
      assert.equal(code, 0);
    });
  }
});

Deno.test("openFileLimit and defaultMaxPeers agree in this process", () => {
  // Tests run with -A: the limit is readable here.
  const limit = openFileLimit();
  assert.ok(limit !== undefined && Number.isSafeInteger(limit) && limit > 0);
  assert.equal(defaultMaxPeers(), Math.max(64, limit - 256));
});
