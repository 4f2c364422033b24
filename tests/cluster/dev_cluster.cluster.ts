// `deno task cluster` (dev/cluster/main.ts) as a subprocess on free ports:
// it serves, and SIGHUP (the terminal closed) stops Redis, nginx and every
// node, and leaves no temp folder. It needs redis-server and nginx, hence
// the `.cluster.ts` name (`deno task test:cluster`).

import assert from "node:assert/strict";
import { spawn } from "../../dev/process.ts";

const MAIN = decodeURIComponent(
  new URL("../../dev/cluster/main.ts", import.meta.url).pathname,
);

/** Whether a process with this id exists (a zombie counts). */
async function _exists(pid: number): Promise<boolean> {
  try {
    await Deno.stat(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

async function _pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The children of a process (Linux `/proc`), nginx's workers here. */
async function _children(pid: number): Promise<number[]> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`);
    return text.split(/\s+/).filter((s) => s !== "").map(Number);
  } catch {
    return [];
  }
}

Deno.test("deno task cluster stops redis, nginx and every node on SIGHUP and leaves no temp folder", async () => {
  await using cluster = spawn(Deno.execPath(), {
    name: "deno task cluster",
    args: ["run", "-A", MAIN, "--nodes", "2", "--balancer", "round-robin"],
    env: { NO_COLOR: "1" },
  });
  const ready = await cluster.waitFor(/^Type 'status'/m, {
    what: "the cluster to be ready",
    stream: "stdout",
    timeout: 60_000,
  });
  assert.ok(ready);
  const described = cluster.stdout;
  const pids = [...described.matchAll(/ pid (\d+)/g)].map((m) => Number(m[1]));
  const dirs = [...described.matchAll(/ dir (\S+)/g)].map((m) => m[1]);
  // redis, 2 nodes, nginx; redis's and nginx's folders.
  assert.equal(pids.length, 4, described);
  assert.equal(dirs.length, 2, described);
  const nginx = pids[pids.length - 1];
  const workers = await _children(nginx);
  assert.ok(workers.length >= 1, "nginx has a worker");
  for (const pid of pids) assert.ok(await _exists(pid), `pid ${pid} runs`);
  for (const dir of dirs) assert.ok(await _pathExists(dir), `${dir} exists`);

  // It serves: a node answers /healthz directly and through nginx.
  const node = described.match(/^node 0 +(ws:\/\/\S+)\/<key>/m)![1];
  const direct = await fetch(`${node.replace("ws:", "http:")}/healthz`);
  assert.equal(direct.status, 200);
  await direct.body?.cancel();
  const front = described.match(/^nginx +ws:\/\/(\S+)\/<key>/m)![1];
  const proxied = await fetch(`http://${front}/healthz`);
  assert.equal(proxied.status, 200);
  await proxied.body?.cancel();

  const result = await cluster.stop({ signal: "SIGHUP", timeout: 20_000 });
  assert.equal(result.code, 0, cluster.output);
  assert.equal(result.signal, null, "it exited by itself");
  assert.match(result.stdout, /^stopping\.\.\.$/m);
  for (const pid of [...pids, ...workers]) {
    assert.equal(await _exists(pid), false, `pid ${pid} is gone`);
  }
  for (const dir of dirs) {
    assert.equal(await _pathExists(dir), false, `${dir} is removed`);
  }
});
