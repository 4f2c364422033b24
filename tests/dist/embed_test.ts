/**
 * An app that embeds sigver type-checks wherever it lives: `deno check` in a
 * folder that holds a `package.json` resolves `node:` types through
 * `@types/node`, which such a folder does not have, so a `node:` import
 * anywhere in mod.ts's graph (the CLI's flag parser was one) breaks it.
 */

import assert from "node:assert/strict";
import { ROOT } from "../_cli.ts";

const MOD = new URL("mod.ts", ROOT).href;

/** An app that mounts the handler in its own `Deno.serve`. */
const APP = `import { createHandler } from ${JSON.stringify(MOD)};

const sigver = createHandler({ heartbeatInterval: 5000 });
Deno.serve({ hostname: "127.0.0.1", port: 0 }, (request, info) => {
  if (new URL(request.url).pathname === "/hello") return new Response("hi");
  return sigver.fetch(request, info);
});
`;

Deno.test("deno check of an app that imports mod.ts passes in a folder with a package.json", async (t) => {
  for (const packageJson of ["{}", '{"type":"module"}']) {
    await t.step(packageJson, async () => {
      const dir = await Deno.makeTempDir({ prefix: "sigver-embed-" });
      try {
        await Deno.writeTextFile(`${dir}/package.json`, packageJson + "\n");
        await Deno.writeTextFile(`${dir}/app.ts`, APP);
        // DENO_DIR is left as is: the embedder's cache, not a fresh one.
        const { code, stdout, stderr } = await new Deno.Command(
          Deno.execPath(),
          {
            args: ["check", "app.ts"],
            cwd: dir,
            env: { NO_COLOR: "1" },
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
          },
        ).output();
        const err = new TextDecoder().decode(stderr);
        assert.equal(code, 0, err);
        assert.equal(new TextDecoder().decode(stdout), "");
        assert.doesNotMatch(err, /error/i);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("mod.ts has no node: module in its graph", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "mod.ts"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const info: { modules: { specifier: string }[] } = JSON.parse(
    new TextDecoder().decode(stdout),
  );
  const specifiers = info.modules.map((m) => m.specifier);
  assert.ok(specifiers.includes(MOD), `mod.ts is not in ${specifiers}`);
  assert.ok(
    specifiers.includes(new URL("server.ts", ROOT).href),
    "server.ts, imported when mod.ts is the main module, is not in the graph",
  );
  assert.deepEqual(specifiers.filter((s) => s.startsWith("node:")), []);
});
