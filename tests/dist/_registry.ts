/**
 * A local JSR registry for one package, laid out like JSR's registry API, so
 * that `deno run jsr:@scope/name` and `import ... from "jsr:@scope/name"` can
 * be tested offline with `JSR_URL` pointing at it:
 *
 * - `/@scope/name/meta.json`: the versions and the latest one;
 * - `/@scope/name/<version>_meta.json`: the file manifest (size and sha256
 *   checksum of every file, which Deno verifies) and the exports;
 * - `/@scope/name/<version>/<path>`: the files, TypeScript served as
 *   `application/typescript` (anything else would be parsed as JavaScript).
 *
 * The files are those `deno publish --dry-run` lists, read from the working
 * tree. Like `deno publish`, bare specifiers that the `imports` map resolves
 * are rewritten ("unfurled") to what they map to.
 *
 * ```ts ignore
 * const pkg = await readPackage(new URL("../../", import.meta.url));
 * await using registry = await LocalJsr.start(pkg);
 * // JSR_URL=registry.url deno run -A jsr:@coast/sigver
 * ```
 *
 * @module
 */

/** A package as `deno publish` would upload it. */
export interface PackageInfo {
  /** The scope, without `@`. */
  scope: string;
  /** The name inside the scope. */
  name: string;
  /** The version being published. */
  version: string;
  /** The exports map, `.`-keyed, as in the package's `deno.json`. */
  exports: Record<string, string>;
  /** The published files' contents, by path from the package root (`/mod.ts`). */
  files: Map<string, Uint8Array<ArrayBuffer>>;
}

const BARE = /^(?![./]|[a-z][a-z0-9+.-]*:)/i;

/**
 * Reads the package at `root` the way `deno publish` sees it: its file list
 * from `deno publish --dry-run --allow-dirty`, its config from `deno.json`.
 *
 * @param root The package root (a directory URL ending with `/`).
 * @returns The package.
 * @throws {Error} When the dry run fails or a module of an export's graph
 * would not be published.
 */
export async function readPackage(root: URL): Promise<PackageInfo> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", root)),
  );
  const [scope, name] = String(config.name).replace(/^@/, "").split("/");
  const exports: Record<string, string> = typeof config.exports === "string"
    ? { ".": config.exports }
    : config.exports;
  const dryRun = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const log = new TextDecoder().decode(dryRun.stderr) +
    new TextDecoder().decode(dryRun.stdout);
  if (!dryRun.success) {
    throw new Error(`Cannot read the package: deno publish failed\n${log}`);
  }
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const [, url] of log.matchAll(/^\s+(file:\/\/\S+)/gm)) {
    const path = "/" + url.slice(root.href.length);
    files.set(path, await Deno.readFile(new URL(url)));
  }
  if (files.size === 0) {
    throw new Error(`Cannot read the package: no file in\n${log}`);
  }
  await _unfurl(root, config.imports ?? {}, Object.values(exports), files);
  return { scope, name, version: config.version, exports, files };
}

/** A module as `deno info --json` shows it. */
interface _Module {
  specifier: string;
  dependencies?: {
    specifier: string;
    code?: { span: { start: { line: number } } };
    type?: { span: { start: { line: number } } };
  }[];
}

/**
 * Rewrites bare specifiers mapped by `imports` in the published modules, as
 * `deno publish` does, and checks that every local module of the graph is
 * published.
 */
async function _unfurl(
  root: URL,
  imports: Record<string, string>,
  entries: string[],
  files: Map<string, Uint8Array<ArrayBuffer>>,
): Promise<void> {
  const modules = new Map<string, _Module>();
  for (const entry of entries) {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdin: "null",
    }).output();
    if (!info.success) {
      throw new Error(
        `Cannot read the module graph of ${entry}: ${
          new TextDecoder().decode(info.stderr)
        }`,
      );
    }
    const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as {
      modules: _Module[];
    };
    for (const module of graph.modules) modules.set(module.specifier, module);
  }
  for (const module of modules.values()) {
    if (!module.specifier.startsWith(root.href)) continue;
    const path = "/" + module.specifier.slice(root.href.length);
    const bytes = files.get(path);
    if (bytes === undefined) {
      throw new Error(
        `Cannot publish: ${path} is imported but not in publish.include`,
      );
    }
    const bare = (module.dependencies ?? []).filter((d) =>
      BARE.test(d.specifier)
    );
    if (bare.length === 0) continue;
    const lines = new TextDecoder().decode(bytes).split("\n");
    for (const dep of bare) {
      const target = imports[dep.specifier];
      if (target === undefined) {
        throw new Error(
          `Cannot unfurl '${dep.specifier}' in ${path}: not in the imports map`,
        );
      }
      for (const at of [dep.code, dep.type]) {
        if (at === undefined) continue;
        const n = at.span.start.line;
        lines[n] = lines[n].replace(
          new RegExp(`(["'])${RegExp.escape(dep.specifier)}\\1`),
          `$1${target}$1`,
        );
      }
    }
    files.set(path, new TextEncoder().encode(lines.join("\n")));
  }
}

function _contentType(path: string): string {
  if (/\.(ts|mts|tsx)$/.test(path)) return "application/typescript";
  if (/\.(js|mjs)$/.test(path)) return "application/javascript";
  if (path.endsWith(".json")) return "application/json";
  if (path.endsWith(".md")) return "text/markdown";
  return "text/plain";
}

async function _sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A JSR-like registry serving one package on 127.0.0.1. */
export class LocalJsr implements AsyncDisposable {
  /** The value for `JSR_URL`: `http://127.0.0.1:<port>/`. */
  readonly url: string;
  /** Paths requested so far, in order. */
  readonly requests: string[];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  private constructor(
    server: Deno.HttpServer<Deno.NetAddr>,
    requests: string[],
  ) {
    this.#server = server;
    this.requests = requests;
    this.url = `http://127.0.0.1:${server.addr.port}/`;
  }

  /**
   * Serves `pkg` on a free loopback port.
   *
   * @param pkg The package.
   * @returns The running registry.
   */
  static async start(pkg: PackageInfo): Promise<LocalJsr> {
    const base = `/@${pkg.scope}/${pkg.name}`;
    const manifest: Record<string, { size: number; checksum: string }> = {};
    for (const [path, bytes] of pkg.files) {
      manifest[path] = {
        size: bytes.length,
        checksum: `sha256-${await _sha256(bytes)}`,
      };
    }
    const routes = new Map<
      string,
      { type: string; body: Uint8Array<ArrayBuffer> }
    >();
    const json = (value: unknown) => ({
      type: "application/json",
      body: new TextEncoder().encode(JSON.stringify(value)),
    });
    routes.set(
      `${base}/meta.json`,
      json({
        scope: pkg.scope,
        name: pkg.name,
        latest: pkg.version,
        versions: { [pkg.version]: {} },
      }),
    );
    routes.set(
      `${base}/${pkg.version}_meta.json`,
      json({ manifest, exports: pkg.exports }),
    );
    for (const [path, body] of pkg.files) {
      routes.set(`${base}/${pkg.version}${path}`, {
        type: _contentType(path),
        body,
      });
    }
    const requests: string[] = [];
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: () => {},
    }, (request) => {
      const path = new URL(request.url).pathname;
      requests.push(path);
      const route = routes.get(path);
      if (route === undefined) {
        return new Response("not found", { status: 404 });
      }
      return new Response(route.body, {
        headers: { "content-type": route.type },
      });
    });
    return new LocalJsr(server, requests);
  }

  /** Stops serving. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }
}
