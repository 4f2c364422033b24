/**
 * The layers, as the tree shows them: each folder imports only the layers
 * below it. `lib/` is pure and imports only `lib/`; the Deno binding
 * (`deno/`) imports `lib/` and never `cluster/`; `cluster/` plugs in through
 * the binding's placement seam only; the browser client imports only `lib/`;
 * the root holds `mod.ts` and `server.ts` as its only modules.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** Every `.ts` file below a folder of the repository. */
function* files(folder: string): Generator<string> {
  for (const entry of Deno.readDirSync(new URL(folder, ROOT))) {
    const path = `${folder}${entry.name}`;
    if (entry.isDirectory) yield* files(`${path}/`);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

/** The repository paths a module imports (relative specifiers only). */
function imports(path: string): string[] {
  const text = Deno.readTextFileSync(new URL(path, ROOT));
  const found: string[] = [];
  // Import and export statements, and dynamic imports; not doc examples.
  const code = text.replace(/\/\*\*[\s\S]*?\*\//g, "");
  for (
    const match of code.matchAll(
      /(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g,
    )
  ) {
    const url = new URL(match[1], new URL(path, ROOT));
    found.push(decodeURIComponent(url.pathname.slice(ROOT.pathname.length)));
  }
  return found;
}

function assertLayer(
  folder: string,
  allowed: (target: string) => boolean,
): void {
  let seen = 0;
  for (const path of files(folder)) {
    for (const target of imports(path)) {
      seen++;
      assert.ok(allowed(target), `${path} imports ${target}`);
    }
  }
  assert.ok(seen > 0, `no import read in ${folder}: the reader is broken`);
}

Deno.test("the import reader finds a module's imports, and not its doc examples", () => {
  const found = imports("deno/handler.ts");
  assert.ok(found.includes("lib/netflux/hub.ts"), found.join(", "));
  assert.ok(!found.some((f) => f.includes("@coast")));
});

Deno.test("the root holds mod.ts and server.ts as its only modules", () => {
  const modules = [...Deno.readDirSync(ROOT)]
    .filter((e) => e.isFile && /\.(ts|js|tsx|mts)$/.test(e.name))
    .map((e) => e.name)
    .sort();
  assert.deepEqual(modules, ["mod.ts", "server.ts"]);
});

Deno.test("lib/ imports nothing outside lib/, and uses no Deno API", () => {
  assertLayer("lib/", (target) => target.startsWith("lib/"));
  for (const path of files("lib/")) {
    const code = Deno.readTextFileSync(new URL(path, ROOT))
      .replace(/\/\*\*[\s\S]*?\*\//g, "")
      .replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(code, /\bDeno\./, `${path} uses Deno.*`);
  }
});

Deno.test("the Deno binding imports lib/ and itself, never cluster/", () => {
  assertLayer(
    "deno/",
    (target) =>
      target.startsWith("lib/") || target.startsWith("deno/") ||
      target.startsWith("demo/") || target === "deno.json",
  );
});

Deno.test("cluster/ imports lib/, itself, and the binding's placement seam only", () => {
  assertLayer(
    "cluster/",
    (target) =>
      target.startsWith("lib/") || target.startsWith("cluster/") ||
      target === "deno/placement.ts",
  );
});

Deno.test("the browser client imports only lib/ and itself", () => {
  assertLayer(
    "client/",
    (target) => target.startsWith("lib/") || target.startsWith("client/"),
  );
});

Deno.test("the command line imports the layers below it, and nothing imports it", () => {
  assertLayer(
    "cli/",
    (target) =>
      ["lib/", "deno/", "cluster/", "cli/"].some((l) => target.startsWith(l)),
  );
  for (const folder of ["lib/", "deno/", "cluster/", "client/"]) {
    for (const path of files(folder)) {
      for (const target of imports(path)) {
        assert.ok(!target.startsWith("cli/"), `${path} imports ${target}`);
      }
    }
  }
});

Deno.test("no product file is over 700 lines", () => {
  for (const folder of ["lib/", "deno/", "cluster/", "client/", "cli/", ""]) {
    for (
      const path of folder === "" ? ["mod.ts", "server.ts"] : files(folder)
    ) {
      const lines = Deno.readTextFileSync(new URL(path, ROOT)).split("\n")
        .length;
      assert.ok(lines <= 700, `${path} has ${lines} lines`);
    }
  }
});

Deno.test("no product class is over 400 lines", () => {
  for (const folder of ["lib/", "deno/", "cluster/", "client/", "cli/"]) {
    for (const path of files(folder)) {
      const lines = Deno.readTextFileSync(new URL(path, ROOT)).split("\n");
      let start = -1;
      let name = "";
      lines.forEach((line, i) => {
        const m = /^(?:export )?(?:abstract )?class (\w+)/.exec(line);
        if (m !== null) [start, name] = [i, m[1]];
        else if (line === "}" && start !== -1) {
          const length = i - start + 1;
          assert.ok(length <= 400, `${path}: ${name} has ${length} lines`);
          start = -1;
        }
      });
    }
  }
});
