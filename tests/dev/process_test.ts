// Tests of dev/process.ts: real child processes (Deno itself, cat), each
// ended by the test, so that the sanitizers see nothing left behind.

import assert from "node:assert/strict";
import { freePort, run, spawn } from "../../dev/process.ts";

const DENO = Deno.execPath();

/** `deno eval` of a script, as arguments. */
function _eval(script: string): string[] {
  return ["eval", "--quiet", script];
}

/** Whether a process with this id still exists (a zombie counts). */
async function _exists(pid: number): Promise<boolean> {
  try {
    await Deno.stat(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

Deno.test("spawn keeps stdout and stderr apart and reports the exit code", async () => {
  await using child = spawn(DENO, {
    args: _eval(
      "console.log('out 1'); console.error('err 1'); Deno.exit(3)",
    ),
  });
  const result = await child.exited;
  assert.equal(result.code, 3);
  assert.equal(result.success, false);
  assert.equal(result.stdout, "out 1\n");
  assert.equal(result.stderr, "err 1\n");
  assert.match(child.output, /out 1\n/);
  assert.match(child.output, /err 1\n/);
  assert.equal(child.running, false);
});

Deno.test("waitFor returns the match of a line on the stream asked", async () => {
  await using child = spawn(DENO, {
    args: _eval(
      "console.error('listen port=1234'); console.log('ready'); setInterval(() => {}, 1000)",
    ),
  });
  const match = await child.waitFor(/^listen port=(\d+)$/m, {
    what: "the listen line",
    stream: "stderr",
  });
  assert.equal(match[1], "1234");
  await child.waitFor(/^ready$/m, { what: "ready", stream: "stdout" });
  await assert.rejects(
    child.waitFor(/ready/, {
      what: "ready on stderr",
      stream: "stderr",
      timeout: 50,
    }),
    /Cannot see ready on stderr: .* wrote nothing of it in 50 ms/,
  );
  const { signal } = await child.stop();
  assert.equal(signal, "SIGTERM");
});

Deno.test("waitFor looks only after a mark when given one", async () => {
  await using child = spawn("cat", { stdin: "piped" });
  await child.write("one\n");
  await child.waitFor(/one/, { what: "one" });
  const mark = child.mark("stdout");
  await child.write("two\n");
  await child.waitFor(/two/, { what: "two", stream: "stdout", from: mark });
  await assert.rejects(
    child.waitFor(/one/, { what: "one again", from: mark, timeout: 50 }),
    /Cannot see one again/,
  );
});

Deno.test("waitFor throws with the output when the process exits first", async () => {
  await using child = spawn(DENO, {
    args: _eval("console.error('bad flag'); Deno.exit(2)"),
    name: "the server",
  });
  await assert.rejects(
    child.waitFor(/listen/, { what: "the listen line" }),
    /Cannot see the listen line: the server exited with 2\n[^]*bad flag/,
  );
});

Deno.test("waitForPort returns once the port accepts and throws when the process exits", async () => {
  const port = freePort();
  await using server = spawn(DENO, {
    args: _eval(
      `Deno.listen({ hostname: "127.0.0.1", port: ${port} }); setInterval(() => {}, 1000)`,
    ),
  });
  await server.waitForPort(port);
  await using quitter = spawn(DENO, { args: _eval("Deno.exit(0)") });
  await assert.rejects(quitter.waitForPort(freePort()), /it exited/);
});

Deno.test("stop sends SIGKILL when SIGTERM is ignored past the bound", async () => {
  await using child = spawn(DENO, {
    args: _eval(
      "Deno.addSignalListener('SIGTERM', () => console.log('ignored')); console.log('armed'); setInterval(() => {}, 1000)",
    ),
  });
  await child.waitFor(/armed/, { what: "the listener" });
  const stopping = child.stop({ timeout: 300 });
  assert.equal(child.stop(), stopping, "stop is idempotent");
  const result = await stopping;
  assert.equal(result.signal, "SIGKILL");
  assert.match(result.stdout, /ignored/);
  assert.equal(await _exists(child.pid), false);
});

Deno.test("disposing ends the process and a later stop returns how it ended", async () => {
  let pid = 0;
  let stopped;
  {
    await using child = spawn(DENO, {
      args: _eval("setInterval(() => {}, 1000)"),
    });
    pid = child.pid;
    stopped = child;
  }
  assert.equal(await _exists(pid), false);
  assert.equal((await stopped.stop()).signal, "SIGTERM");
  stopped.signal("SIGKILL"); // a no-op once it exited
});

Deno.test("write throws when stdin is not piped", async () => {
  await using child = spawn("cat");
  await assert.rejects(child.write("x"), TypeError);
});

Deno.test("run collects the output, and kills and throws past its timeout", async () => {
  const done = await run(DENO, { args: _eval("console.log('done')") });
  assert.equal(done.code, 0);
  assert.equal(done.stdout, "done\n");
  await assert.rejects(
    run(DENO, { args: _eval("setInterval(() => {}, 1000)"), timeout: 300 }),
    /still running after 300 ms, killed/,
  );
});

Deno.test("outputLimit keeps the last characters and marks count the dropped", async () => {
  await using child = spawn(DENO, {
    args: _eval("console.log('a'.repeat(1000) + 'END')"),
    outputLimit: 100,
  });
  await child.exited;
  assert.ok(child.stdout.length <= 100);
  assert.match(child.stdout, /END\n$/);
  assert.equal(child.mark("stdout"), 1004);
});

Deno.test("echo gets every complete line with its stream", async () => {
  const lines: string[] = [];
  await using child = spawn(DENO, {
    args: _eval(
      "console.log('a\\nb'); console.error('c'); Deno.stdout.writeSync(new TextEncoder().encode('tail'))",
    ),
    echo: (line, stream) => lines.push(`${stream}:${line}`),
  });
  await child.exited;
  assert.deepEqual(lines.sort(), [
    "stderr:c",
    "stdout:a",
    "stdout:b",
    "stdout:tail",
  ]);
});
