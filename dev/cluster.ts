/**
 * A sigver cluster on this machine, for the cluster tests and for
 * `deno task cluster`: Debian's `redis-server`, N sigver nodes run as real
 * `deno run server.ts` processes, and Debian's `nginx` in front of them, all
 * on 127.0.0.1 and free ports. nginx runs with the upstream blocks of
 * `docs/scaling.md` as they are written there (only their `server` lines
 * change) inside the server block of `docs/deploy.md` (its `proxy_pass`
 * pointed at the upstream, as scaling.md says), so that the tests run the
 * documented configuration.
 *
 * ```ts ignore
 * await using cluster = await startCluster({ nodes: 3, balancer: "hash" });
 * await using peer = await TestPeer.open(`${cluster.balancer!.url}/room`);
 * await cluster.killNode(0); // SIGKILL
 * await cluster.addNode(); // and nginx reloaded with it
 * ```
 *
 * Every process is stopped by its PID: SIGTERM, then SIGKILL when it
 * lingers. Every wait has a deadline.
 *
 * ```sh
 * deno task cluster [--nodes N] [--balancer hash|round-robin]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { ClusterView } from "../cluster/node.ts";
import { type RedisServer, startRedis } from "./redis_server.ts";

/** The modes of the balancer in front: the two upstreams of scaling.md. */
export type BalancerMode = "hash" | "round-robin";

/** The balancer modes, in the order `--help` lists them. */
export const BALANCER_MODES: readonly BalancerMode[] = ["hash", "round-robin"];

const ROOT = new URL("../", import.meta.url);
const SERVER = decodeURIComponent(new URL("server.ts", ROOT).pathname);
const SCALING_DOC = new URL("docs/scaling.md", ROOT);
const DEPLOY_DOC = new URL("docs/deploy.md", ROOT);

/** Milliseconds a node or nginx may take to start listening. */
const START_TIMEOUT = 30_000;
/** Milliseconds a SIGTERM may take before SIGKILL. */
const STOP_TIMEOUT = 5_000;
/** Milliseconds nginx may take to reload. */
const RELOAD_TIMEOUT = 10_000;
/** Characters of a process's output kept (the oldest are dropped). */
const OUTPUT_LIMIT = 4 << 20;
/** Attempts at a free port that another process may take first. */
const PORT_ATTEMPTS = 3;

/** The nginx binary: `$NGINX`, else Debian's `/usr/sbin/nginx`. */
function _nginx(): string {
  try {
    const given = Deno.env.get("NGINX");
    if (given) return given;
  } catch {
    // No env permission: Debian's path.
  }
  return "/usr/sbin/nginx";
}

/** A port on 127.0.0.1 that was free a moment ago. */
function _freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function _randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Options of {@linkcode ManagedProcess}. */
export interface ManagedProcessOptions {
  /** Environment variables added to the inherited ones. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Called with every complete line of output (stdout and stderr). */
  echo?: (line: string) => void;
}

/** Options of {@linkcode ManagedProcess.waitFor}. */
export interface WaitForOptions {
  /** What is awaited, said in the error. */
  what: string;
  /**
   * Milliseconds to wait.
   * @default {30000}
   */
  timeout?: number;
  /**
   * A {@linkcode ManagedProcess.mark}: look only at the output after it.
   * @default {0}
   */
  from?: number;
}

/**
 * A child process whose output is read all along (so it never blocks on a
 * full pipe), kept (the last {@linkcode OUTPUT_LIMIT} characters) for
 * {@linkcode ManagedProcess.waitFor}, and stopped by its PID.
 */
export class ManagedProcess {
  /** A name for messages (`node 2`, `nginx`). */
  readonly name: string;
  /** The process. */
  readonly process: Deno.ChildProcess;
  /** Set once it exited. */
  status: Deno.CommandStatus | undefined;
  /** Resolves when it exited and its output was read. */
  readonly exited: Promise<Deno.CommandStatus>;
  #output = "";
  /** Characters dropped from the front of `#output`. */
  #dropped = 0;
  #waiters: (() => void)[] = [];
  readonly #echo: ((line: string) => void) | undefined;
  #partial = "";

  /**
   * Starts a command.
   *
   * @param name A name for messages.
   * @param command The program.
   * @param args Its arguments.
   * @param options Environment, working directory, echo.
   */
  constructor(
    name: string,
    command: string,
    args: readonly string[],
    options: ManagedProcessOptions = {},
  ) {
    this.name = name;
    this.#echo = options.echo;
    this.process = new Deno.Command(command, {
      args: [...args],
      env: options.env,
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const drained = Promise.all([
      this.#pump(this.process.stdout),
      this.#pump(this.process.stderr),
    ]);
    this.exited = this.process.status.then(async (status) => {
      this.status = status;
      await drained;
      if (this.#partial !== "") this.#echo?.(this.#partial);
      this.#partial = "";
      this.#wake();
      return status;
    });
  }

  /** The process id. */
  get pid(): number {
    return this.process.pid;
  }

  /** Whether it still runs. */
  get running(): boolean {
    return this.status === undefined;
  }

  /** The output kept so far. */
  get output(): string {
    return this.#output;
  }

  /** How many characters of output came so far: a mark for `waitFor`. */
  get mark(): number {
    return this.#dropped + this.#output.length;
  }

  /**
   * Waits until the output matches `pattern`.
   *
   * @param pattern What to look for.
   * @param options What it is, how long to wait, where to start looking.
   * @returns The match.
   * @throws {Error} When the process exits or the time runs out first; the
   * message carries the output.
   */
  async waitFor(
    pattern: RegExp,
    options: WaitForOptions,
  ): Promise<RegExpMatchArray> {
    const { what, timeout = START_TIMEOUT, from = 0 } = options;
    const end = performance.now() + timeout;
    for (;;) {
      const text = this.#output.slice(Math.max(0, from - this.#dropped));
      const match = text.match(pattern);
      if (match !== null) return match;
      if (this.status !== undefined) {
        throw new Error(
          `Cannot see ${what}: ${this.name} exited with ${this.status.code}\n${this.#tail()}`,
        );
      }
      const left = end - performance.now();
      if (left <= 0) {
        throw new Error(
          `Cannot see ${what}: ${this.name} said nothing of it in ${timeout} ms\n${this.#tail()}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /**
   * Sends a signal, unless the process has exited.
   *
   * @param signal The signal.
   */
  signal(signal: Deno.Signal): void {
    if (this.status !== undefined) return;
    try {
      this.process.kill(signal);
    } catch {
      // It exited meanwhile.
    }
  }

  /**
   * Kills the process with SIGKILL and waits until it is gone.
   *
   * @returns How it ended.
   */
  kill(): Promise<Deno.CommandStatus> {
    this.signal("SIGKILL");
    return this.exited;
  }

  /**
   * Sends SIGTERM, and SIGKILL when it is still running after `timeout`.
   *
   * @param timeout Milliseconds to wait for SIGTERM.
   * @returns How it ended.
   */
  async stop(timeout: number = STOP_TIMEOUT): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeout);
    });
    const status = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    return status ?? await this.kill();
  }

  /** The last lines of output, for error messages. */
  #tail(): string {
    const text = this.#output.slice(-8000);
    return `--- ${this.name} (pid ${this.pid}), last output:\n${text}`;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      this.#output += text;
      if (this.#output.length > OUTPUT_LIMIT) {
        const cut = this.#output.length - OUTPUT_LIMIT / 2;
        this.#output = this.#output.slice(cut);
        this.#dropped += cut;
      }
      if (this.#echo !== undefined) {
        const lines = (this.#partial + text).split("\n");
        this.#partial = lines.pop()!;
        for (const line of lines) this.#echo(line);
      }
      this.#wake();
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** One sigver node of a {@linkcode LocalCluster}. */
export class SigverNode {
  /** Its index in the cluster (0 for the first). */
  readonly index: number;
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Its process. */
  readonly process: ManagedProcess;
  /** The arguments it was added with, beyond the cluster's own. */
  readonly args: readonly string[];

  /**
   * Wraps a started node.
   *
   * @param index Its index in the cluster.
   * @param port Its port.
   * @param process Its process.
   * @param args The arguments it was added with.
   */
  constructor(
    index: number,
    port: number,
    process: ManagedProcess,
    args: readonly string[] = [],
  ) {
    this.index = index;
    this.port = port;
    this.process = process;
    this.args = args;
  }

  /** `ws://127.0.0.1:<port>`: append a path (`/room`) for a peer's URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** `http://127.0.0.1:<port>`. */
  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Whether its process runs. */
  get running(): boolean {
    return this.process.running;
  }

  /**
   * The node's `/cluster` view.
   *
   * @returns The view.
   */
  async view(): Promise<ClusterView> {
    const response = await fetch(`${this.http}/cluster`, {
      signal: AbortSignal.timeout(STOP_TIMEOUT),
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(
        `Cannot read /cluster of node ${this.index}: ${response.status}`,
      );
    }
    return await response.json();
  }

  /**
   * The node's Prometheus text.
   *
   * @returns The text of `/metrics`.
   */
  async metrics(): Promise<string> {
    const response = await fetch(`${this.http}/metrics`, {
      signal: AbortSignal.timeout(STOP_TIMEOUT),
    });
    return await response.text();
  }

  /**
   * One sample of a metric without labels (or with exactly `labels`).
   *
   * @param name The metric's name.
   * @param labels Its labels as they are written (`direction="out"`).
   * @returns Its value.
   * @throws {Error} When the node does not report it.
   */
  async metric(name: string, labels = ""): Promise<number> {
    const text = await this.metrics();
    const series = labels === "" ? name : `${name}{${labels}}`;
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    if (line === undefined) {
      throw new Error(`Node ${this.index} reports no ${series}`);
    }
    return Number(line.slice(series.length + 1));
  }
}

/** The text between the fence after `marker` in `doc`. */
function _fencedAfter(
  doc: string,
  name: string,
  marker: string,
  lang: string,
): string {
  const at = doc.indexOf(marker);
  if (at === -1) throw new Error(`${name}: marker '${marker}' not found`);
  const open = doc.indexOf("```" + lang + "\n", at);
  if (open === -1) {
    throw new Error(`${name}: no \`\`\`${lang} block after '${marker}'`);
  }
  const start = open + lang.length + 4;
  return doc.slice(start, doc.indexOf("\n```", start) + 1);
}

/** Replaces `from` by `to`, which must occur exactly once. */
function _replaceOnce(
  name: string,
  text: string,
  from: string,
  to: string,
): string {
  const found = text.split(from).length - 1;
  if (found !== 1) {
    throw new Error(
      `${name}: expected '${from}' once, found it ${found} times`,
    );
  }
  return text.replace(from, () => to);
}

/** The first `opening ... \n<indent>}\n` block of `text`. */
function _block(name: string, text: string, opening: string): string {
  const start = text.indexOf(opening);
  if (start === -1) throw new Error(`${name}: no '${opening}' block`);
  const indent = opening.match(/^ */)![0];
  const close = `\n${indent}}\n`;
  const end = text.indexOf(close, start);
  if (end === -1) throw new Error(`${name}: '${opening}' is not closed`);
  return text.slice(start, end + close.length);
}

/**
 * The upstream block of `docs/scaling.md` for a mode, with its three example
 * `server` lines replaced by one line per node.
 *
 * @param doc The text of `docs/scaling.md`.
 * @param mode The balancer mode.
 * @param ports The nodes' ports on 127.0.0.1.
 * @returns An http-context configuration that defines upstream `sigver`.
 * @throws {Error} When the document no longer has the block as expected.
 */
export function upstreamConfig(
  doc: string,
  mode: BalancerMode,
  ports: readonly number[],
): string {
  const name = `docs/scaling.md (${mode})`;
  const block = _fencedAfter(
    doc,
    name,
    `<!-- tested by dev/cluster.ts (balancer "${mode}")`,
    "nginx",
  );
  const lines =
    /^( *)server 10\.0\.0\.\d+:8000;\n(?: *server 10\.0\.0\.\d+:8000;\n){2}/m
      .exec(block);
  if (lines === null || block.split("server 10.0.0.").length !== 4) {
    throw new Error(`${name}: expected three 'server 10.0.0.N:8000;' lines`);
  }
  if (!block.includes("upstream sigver {")) {
    throw new Error(`${name}: no 'upstream sigver' block`);
  }
  const servers = ports.map((port) => `${lines[1]}server 127.0.0.1:${port};\n`)
    .join("");
  return block.replace(lines[0], () => servers);
}

/**
 * The server block of `docs/deploy.md` for a cluster, as scaling.md says:
 * its `proxy_pass` pointed at upstream `sigver` and `/cluster` kept off the
 * proxy. TLS is left out (the balancer listens on plain HTTP on 127.0.0.1),
 * and so is the redirect server.
 *
 * @param doc The text of `docs/deploy.md`.
 * @param port The port to listen on, on 127.0.0.1.
 * @returns An http-context configuration: the upgrade map and the server.
 * @throws {Error} When the document no longer has the blocks as expected.
 */
export function serverConfig(doc: string, port: number): string {
  const name = "docs/deploy.md";
  const block = _fencedAfter(
    doc,
    name,
    "<!-- tested by tests/nginx/proxy.ts",
    "nginx",
  );
  const map = _block(name, block, "map $http_upgrade $connection_upgrade {");
  const metrics = _block(name, block, "    location = /metrics {");
  const root = _replaceOnce(
    name,
    _block(name, block, "    location / {"),
    "proxy_pass http://127.0.0.1:8000;",
    "proxy_pass http://sigver;",
  );
  return `${map}
server {
    listen 127.0.0.1:${port};

    location = /cluster {
        deny all;
    }

${metrics}
${root}}
`;
}

/** Where nginx runs: its files, its port, its workers. */
export class Balancer {
  /** The upstream in use. */
  readonly mode: BalancerMode;
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** Its directory: configuration, pid, logs. */
  readonly dir: string;
  /** The nginx master process. */
  readonly process: ManagedProcess;
  readonly #scaling: string;
  readonly #args: string[];

  private constructor(
    mode: BalancerMode,
    port: number,
    dir: string,
    process: ManagedProcess,
    scaling: string,
  ) {
    this.mode = mode;
    this.port = port;
    this.dir = dir;
    this.process = process;
    this.#scaling = scaling;
    this.#args = Balancer.#argsOf(dir);
  }

  /** `ws://127.0.0.1:<port>`: append a path for a peer's URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** `http://127.0.0.1:<port>`. */
  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static #argsOf(dir: string): string[] {
    return ["-p", `${dir}/`, "-c", `${dir}/nginx.conf`, "-e", "stderr"];
  }

  /**
   * Writes the configuration and starts nginx (in the foreground, with a
   * master process so that it can reload).
   *
   * @param mode The upstream.
   * @param ports The nodes' ports.
   * @param echo Called with every line nginx writes.
   * @returns The running balancer.
   */
  static async start(
    mode: BalancerMode,
    ports: readonly number[],
    echo?: (line: string) => void,
  ): Promise<Balancer> {
    const [scaling, deploy] = await Promise.all([
      Deno.readTextFile(SCALING_DOC),
      Deno.readTextFile(DEPLOY_DOC),
    ]);
    const upstream = upstreamConfig(scaling, mode, ports);
    const dir = await Deno.makeTempDir({ prefix: "sigver-cluster-nginx-" });
    try {
      // nginx's workers run as nobody when it runs as root.
      await Deno.chmod(dir, 0o755);
      for (let attempt = 1;; attempt++) {
        const port = _freePort();
        await Deno.writeTextFile(`${dir}/upstream.conf`, upstream);
        await Deno.writeTextFile(
          `${dir}/server.conf`,
          serverConfig(deploy, port),
        );
        await Deno.writeTextFile(`${dir}/nginx.conf`, _nginxConf(dir));
        await _check(dir);
        const process = new ManagedProcess(
          "nginx",
          _nginx(),
          Balancer.#argsOf(dir),
          { cwd: dir, echo },
        );
        try {
          await process.waitFor(/start worker process \d+/, {
            what: "nginx to start its worker",
          });
          await _listening(port, process);
          return new Balancer(mode, port, dir, process, scaling);
        } catch (error) {
          await process.stop();
          if (
            attempt === PORT_ATTEMPTS ||
            !/Address already in use/.test(process.output)
          ) throw error;
        }
      }
    } catch (error) {
      await Deno.remove(dir, { recursive: true });
      throw error;
    }
  }

  /**
   * Points the upstream at these nodes and reloads nginx (SIGHUP). Returns
   * once the new worker runs and the old ones stopped accepting; the old
   * ones keep their open WebSockets until those close.
   *
   * @param ports The nodes' ports.
   */
  async reload(ports: readonly number[]): Promise<void> {
    const old = this.#workers();
    await Deno.writeTextFile(
      `${this.dir}/upstream.conf`,
      upstreamConfig(this.#scaling, this.mode, ports),
    );
    await _check(this.dir);
    const mark = this.process.mark;
    this.process.signal("SIGHUP");
    await this.process.waitFor(/reconfiguring[^]*start worker process \d+/, {
      what: "nginx to start a worker with the new configuration",
      timeout: RELOAD_TIMEOUT,
      from: mark,
    });
    for (const pid of old) {
      await this.process.waitFor(
        new RegExp(`\\b${pid}#\\d+: gracefully shutting down`),
        {
          what: `old nginx worker ${pid} to stop accepting`,
          timeout: RELOAD_TIMEOUT,
          from: mark,
        },
      );
    }
  }

  /**
   * The port of the node that nginx sends a request for `path` to: it
   * makes a plain GET (no upgrade) and reads the access log.
   *
   * @param path The request target (`/room`, `/t/token/room?favored`).
   * @returns The port of the node that answered.
   */
  async upstreamOf(path: string): Promise<number> {
    const probe = `${path}${path.includes("?") ? "&" : "?"}probe=${
      _randomHex(8)
    }`;
    const response = await fetch(`${this.http}${probe}`, {
      signal: AbortSignal.timeout(STOP_TIMEOUT),
    });
    await response.body?.cancel();
    const prefix = `${probe} `;
    // nginx writes the line once the response is out: poll for it, briefly.
    for (let i = 0; i < 200; i++) {
      const log = await Deno.readTextFile(`${this.dir}/access.log`);
      const line = log.split("\n").find((l) => l.startsWith(prefix));
      if (line !== undefined) {
        // "a:1, b:2" when nginx tried several: the last one answered.
        const ports = [...line.matchAll(/127\.0\.0\.1:(\d+)/g)];
        if (ports.length === 0) {
          throw new Error(`Cannot tell where nginx sent ${path}: ${line}`);
        }
        return Number(ports[ports.length - 1][1]);
      }
      await _sleep(10);
    }
    throw new Error(`Cannot find ${probe} in nginx's access log`);
  }

  /**
   * Stops nginx by its PID: SIGTERM, then SIGKILL of the master and its
   * workers. Removes its directory.
   */
  async stop(): Promise<void> {
    try {
      // The workers, read while the master lives: SIGKILL would orphan them.
      const workers = await _children(this.process.pid);
      this.process.signal("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), STOP_TIMEOUT);
      });
      const status = await Promise.race([this.process.exited, late]);
      clearTimeout(timer);
      if (status === undefined) {
        for (const pid of [...workers, ...await _children(this.process.pid)]) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Gone already.
          }
        }
        await this.process.kill();
      }
    } finally {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
  }

  /** The workers started since the last (re)configuration. */
  #workers(): number[] {
    const text = this.process.output;
    const last = text.lastIndexOf("start worker processes");
    return [...text.slice(last).matchAll(/start worker process (\d+)/g)]
      .map((m) => Number(m[1]));
  }
}

function _nginxConf(dir: string): string {
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr notice;
events {
    worker_connections 4096;
}
http {
    log_format sigver_upstream '$request_uri $upstream_addr $status';
    access_log ${dir}/access.log sigver_upstream;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${dir}/upstream.conf;
    include ${dir}/server.conf;
}
`;
}

/** `nginx -t`: fails with nginx's message when the configuration is bad. */
async function _check(dir: string): Promise<void> {
  const out = await new Deno.Command(_nginx(), {
    args: ["-t", "-q", ...[
      "-p",
      `${dir}/`,
      "-c",
      `${dir}/nginx.conf`,
      "-e",
      "stderr",
    ]],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `Cannot run nginx: its configuration does not pass nginx -t\n${
        new TextDecoder().decode(out.stderr)
      }\n${await Deno.readTextFile(`${dir}/upstream.conf`)}`,
    );
  }
}

/** The children of a process (Linux `/proc`), empty when unknown. */
async function _children(pid: number): Promise<number[]> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`);
    return text.split(/\s+/).filter((s) => s !== "").map(Number);
  } catch {
    return [];
  }
}

/** Polls until something accepts TCP connections on the port. */
async function _listening(
  port: number,
  process: ManagedProcess,
): Promise<void> {
  const end = performance.now() + START_TIMEOUT;
  while (process.running && performance.now() < end) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await _sleep(20);
    }
  }
  throw new Error(
    `Cannot reach ${process.name} on port ${port}\n${process.output}`,
  );
}

/** Options of {@linkcode startCluster}. */
export interface LocalClusterOptions {
  /**
   * Nodes to start.
   * @default {3}
   */
  nodes?: number;
  /**
   * The balancer in front, or `"none"` for none (peers connect to the nodes).
   * @default {"hash"}
   */
  balancer?: BalancerMode | "none";
  /**
   * More arguments for the nodes' `server.ts`: the same for every node, or
   * by node index.
   */
  nodeArgs?: readonly string[] | ((index: number) => readonly string[]);
  /**
   * The cluster secret.
   * @default {a random one}
   */
  secret?: string;
  /**
   * A Redis URL to use instead of starting `redis-server` (for example a
   * fake that answers garbage). The nodes do not wait for it to answer.
   */
  redisUrl?: string;
  /** Called with every line the nodes and nginx write, and which wrote it. */
  echo?: (name: string, line: string) => void;
}

/**
 * Redis, the nodes and the balancer. Dispose of it (`await using`) to stop
 * everything.
 */
export class LocalCluster implements AsyncDisposable {
  /** The `redis-server` (absent with `redisUrl`). */
  readonly redis: RedisServer | undefined;
  /** The Redis URL the nodes use. */
  readonly redisUrl: string;
  /** The nodes, by index; killed ones stay, not running. */
  readonly nodes: SigverNode[] = [];
  /** nginx, unless the balancer is `"none"`. */
  balancer: Balancer | undefined;
  /** The cluster secret. */
  readonly secret: string;
  readonly #options: LocalClusterOptions;
  #stopping: Promise<void> | undefined;

  /**
   * Prepares a cluster; {@linkcode startCluster} starts it.
   *
   * @param redis The Redis server, if this cluster runs one.
   * @param options The options.
   */
  constructor(redis: RedisServer | undefined, options: LocalClusterOptions) {
    this.redis = redis;
    this.redisUrl = options.redisUrl ?? redis!.url;
    this.secret = options.secret ?? _randomHex(16);
    this.#options = options;
  }

  /**
   * Starts one more node and, with a balancer, reloads nginx with it.
   *
   * @param args More arguments for this node's `server.ts`.
   * @returns The running node.
   */
  async addNode(args: readonly string[] = []): Promise<SigverNode> {
    const node = await this.#startNode(this.nodes.length, args);
    this.nodes.push(node);
    await this.balancer?.reload(this.nodes.map((n) => n.port));
    return node;
  }

  /** Starts the first nodes, in parallel, then the balancer. */
  async start(): Promise<void> {
    const n = this.#options.nodes ?? 3;
    const started = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => this.#startNode(i, [])),
    );
    for (const result of started) {
      if (result.status === "fulfilled") this.nodes.push(result.value);
    }
    const failed = started.find((r) => r.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    this.nodes.sort((a, b) => a.index - b.index);
    const mode = this.#options.balancer ?? "hash";
    if (mode !== "none") {
      const echo = this.#options.echo;
      this.balancer = await Balancer.start(
        mode,
        this.nodes.map((node) => node.port),
        echo && ((line) => echo("nginx", line)),
      );
    }
  }

  /**
   * Kills a node with SIGKILL and waits until it is gone. nginx keeps it in
   * its upstream (and skips it), as it would a crashed machine.
   *
   * @param index The node's index.
   */
  async killNode(index: number): Promise<void> {
    await this.nodes[index].process.kill();
  }

  /**
   * Starts a node again on its port and cluster URL, as a process manager
   * restarts a crashed one (it kills the running one first). The new process
   * gets a new node id.
   *
   * @param index The node's index.
   * @returns The new node, in the same place in {@linkcode LocalCluster.nodes}.
   */
  async restartNode(index: number): Promise<SigverNode> {
    const old = this.nodes[index];
    await old.process.kill();
    const node = await this.#startNode(index, old.args, old.port);
    this.nodes[index] = node;
    return node;
  }

  /**
   * Stops a node with SIGTERM (it drains), SIGKILL if it lingers.
   *
   * @param index The node's index.
   */
  async stopNode(index: number): Promise<void> {
    await this.nodes[index].process.stop();
  }

  /** Kills Redis with SIGKILL. */
  async killRedis(): Promise<void> {
    await this.#redisServer().kill();
  }

  /** Starts Redis again on its port, empty. */
  async restartRedis(): Promise<void> {
    await this.#redisServer().restart();
  }

  /**
   * The node whose `/cluster` view has this id.
   *
   * @param id A node id, as in the `lease:` keys.
   * @returns The node.
   */
  async nodeWithId(id: string): Promise<SigverNode> {
    for (const node of this.nodes) {
      if (node.running && (await node.view()).node === id) return node;
    }
    throw new Error(`No running node has the id ${id}`);
  }

  /** Stops nginx, then the nodes, then Redis. Idempotent. */
  stop(): Promise<void> {
    return this.#stopping ??= (async () => {
      const errors: unknown[] = [];
      const run = async (step: () => Promise<unknown>) => {
        try {
          await step();
        } catch (error) {
          errors.push(error);
        }
      };
      if (this.balancer !== undefined) await run(() => this.balancer!.stop());
      await Promise.all(
        this.nodes.map((node) => run(() => node.process.stop())),
      );
      if (this.redis !== undefined) {
        await run(() => this.redis![Symbol.asyncDispose]());
      }
      if (errors.length > 0) {
        throw new AggregateError(errors, "Cannot stop the cluster cleanly");
      }
    })();
  }

  /** Stops everything. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #redisServer(): RedisServer {
    if (this.redis === undefined) {
      throw new Error("Cannot control Redis: this cluster uses another one");
    }
    return this.redis;
  }

  async #startNode(
    index: number,
    args: readonly string[],
    fixedPort?: number,
  ): Promise<SigverNode> {
    const more = this.#options.nodeArgs;
    const extra = typeof more === "function" ? more(index) : more ?? [];
    const echo = this.#options.echo;
    for (let attempt = 1;; attempt++) {
      const port = fixedPort ?? _freePort();
      const process = new ManagedProcess(
        `node ${index}`,
        Deno.execPath(),
        [
          "run",
          "--quiet",
          "--allow-net",
          "--allow-read",
          SERVER,
          "--host",
          "127.0.0.1",
          "--port",
          String(port),
          "--redis",
          this.redisUrl,
          "--cluster-url",
          `ws://127.0.0.1:${port}`,
          "--cluster-secret",
          this.secret,
          ...extra,
          ...args,
        ],
        {
          cwd: decodeURIComponent(ROOT.pathname),
          env: { NO_COLOR: "1" },
          echo: echo && ((line) => echo(`node ${index}`, line)),
        },
      );
      try {
        await process.waitFor(
          new RegExp(`INFO listen url=ws://127\\.0\\.0\\.1:${port}/`),
          { what: `node ${index} to listen` },
        );
        if (this.#redisUp()) {
          await process.waitFor(/INFO cluster what="redis up"/, {
            what: `node ${index} to reach Redis`,
          });
        }
        return new SigverNode(index, port, process, args);
      } catch (error) {
        await process.stop();
        if (
          fixedPort !== undefined || attempt === PORT_ATTEMPTS ||
          !/AddrInUse|in use/i.test(process.output)
        ) {
          throw error;
        }
      }
    }
  }

  /** Whether the nodes should find Redis up when they start. */
  #redisUp(): boolean {
    return this.redis !== undefined && this.redis.pid !== undefined;
  }
}

/**
 * Starts Redis, the nodes and the balancer on 127.0.0.1 and free ports.
 * Use it with `await using`. When any part fails to start, what started is
 * stopped.
 *
 * @param options How many nodes, which balancer, more node arguments.
 * @returns The running cluster.
 */
export async function startCluster(
  options: LocalClusterOptions = {},
): Promise<LocalCluster> {
  const redis = options.redisUrl === undefined ? await startRedis() : undefined;
  const cluster = new LocalCluster(redis, options);
  try {
    await cluster.start();
  } catch (error) {
    await cluster.stop().catch(() => {});
    throw error;
  }
  return cluster;
}

const USAGE = `Usage: deno task cluster [options]

Starts redis-server, N sigver nodes and nginx on 127.0.0.1 (free ports),
prints their URLs, and stops them all on Ctrl-C.

Options:
  -n, --nodes <n>          nodes to start (default 3)
  -b, --balancer <mode>    hash (key affinity) or round-robin (default hash)
      --help               print this help and exit

More arguments after -- go to every node's server.ts
(e.g. -- --heartbeat-interval 2 --log-level debug).

Commands, typed while it runs:
  status          each node's /cluster view
  add             start one more node and reload nginx with it
  kill <n>        kill node n with SIGKILL
  restart <n>     kill node n and start it again on its port (a new node id)
  redis kill      kill redis-server with SIGKILL
  redis restart   start it again, empty, on the same port
  quit            stop everything (as Ctrl-C does)
`;

/** Prints the cluster's addresses. */
function _describe(cluster: LocalCluster): string {
  const lines = [`redis    ${cluster.redisUrl}`];
  for (const node of cluster.nodes) {
    lines.push(
      `node ${node.index}   ${node.url}/<key>   ${node.http}/cluster   ${
        node.running ? "" : "(killed)"
      }`.trimEnd(),
    );
  }
  const balancer = cluster.balancer;
  if (balancer !== undefined) {
    lines.push(
      `nginx    ${balancer.url}/<key>   demo: ${balancer.http}/   (${balancer.mode})`,
    );
  }
  return lines.join("\n");
}

/** Runs one typed command; false for `quit`. */
async function _command(cluster: LocalCluster, line: string): Promise<boolean> {
  const words = line.trim().split(/\s+/);
  switch (words.join(" ").replace(/ \d+$/, " N")) {
    case "":
      return true;
    case "quit":
    case "exit":
      return false;
    case "status":
      for (const node of cluster.nodes) {
        const view = node.running
          ? JSON.stringify(await node.view())
          : "killed";
        console.log(`node ${node.index}: ${view}`);
      }
      return true;
    case "add": {
      const node = await cluster.addNode();
      console.log(`node ${node.index} added: ${node.url}`);
      return true;
    }
    case "kill N": {
      const index = Number(words[1]);
      if (!(index in cluster.nodes)) console.log(`No node ${index}`);
      else {
        await cluster.killNode(index);
        console.log(`node ${index} killed`);
      }
      return true;
    }
    case "restart N": {
      const index = Number(words[1]);
      if (!(index in cluster.nodes)) console.log(`No node ${index}`);
      else {
        const node = await cluster.restartNode(index);
        console.log(`node ${index} restarted on ${node.url}`);
      }
      return true;
    }
    case "redis kill":
      await cluster.killRedis();
      console.log("redis killed");
      return true;
    case "redis restart":
      await cluster.restartRedis();
      console.log("redis restarted");
      return true;
    default:
      console.log(
        "Commands: status, add, kill <n>, restart <n>, redis kill, redis restart, quit",
      );
      return true;
  }
}

/**
 * Reads typed lines, each one a command, until EOF or `signal`.
 *
 * @returns True when `quit` was typed.
 */
async function _readCommands(
  cluster: LocalCluster,
  signal: AbortSignal,
): Promise<boolean> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
    .getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          if (!await _command(cluster, line)) return true;
        } catch (error) {
          console.error(
            `error: ${error instanceof Error ? error.message : error}`,
          );
        }
      }
    }
  } catch {
    return false;
  } finally {
    signal.removeEventListener("abort", cancel);
    reader.releaseLock();
  }
}

/**
 * `deno task cluster`: starts a cluster, prints its URLs, runs typed
 * commands, and stops everything on Ctrl-C (SIGINT), SIGTERM or `quit`.
 *
 * @param args The arguments, without the program name.
 * @returns The exit code: 0 after a clean stop, 1 when it cannot start, 2
 * for a bad flag.
 */
export async function main(args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  const own = dash === -1 ? args : args.slice(0, dash);
  const nodeArgs = dash === -1 ? [] : args.slice(dash + 1);
  let values;
  try {
    values = parseArgs({
      args: own,
      strict: true,
      allowPositionals: false,
      options: {
        nodes: { type: "string", short: "n" },
        balancer: { type: "string", short: "b" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (error) {
    console.error(
      `error: ${error instanceof Error ? error.message.split("\n")[0] : error}`,
    );
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const nodes = Number(values.nodes ?? 3);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16) {
    console.error(
      `error: invalid value for --nodes: '${values.nodes}' (1 to 16)`,
    );
    return 2;
  }
  const balancer = values.balancer ?? "hash";
  if (!BALANCER_MODES.includes(balancer as BalancerMode)) {
    console.error(
      `error: invalid value for --balancer: '${balancer}' (hash or round-robin)`,
    );
    return 2;
  }
  const stopped = new AbortController();
  const onSignal = () => stopped.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let cluster: LocalCluster | undefined;
  try {
    const echo = (name: string, line: string) => {
      // nginx's notices (workers starting and stopping) are noise here.
      if (name === "nginx" && line.includes("[notice]")) return;
      console.error(`[${name}] ${line}`);
    };
    const starting = startCluster({
      nodes,
      balancer: balancer as BalancerMode,
      nodeArgs,
      echo,
    });
    // A signal while starting waits for the start, then stops.
    cluster = await starting;
    if (!stopped.signal.aborted) {
      console.log(_describe(cluster));
      console.log(
        "Type 'status', 'add', 'kill <n>', 'restart <n>', 'redis kill', 'redis restart'; Ctrl-C stops.",
      );
      const aborted = new Promise<void>((resolve) =>
        stopped.signal.addEventListener("abort", () => resolve(), {
          once: true,
        })
      );
      const quit = await Promise.race([
        aborted.then(() => false),
        _readCommands(cluster, stopped.signal),
      ]);
      // Without a terminal stdin ends at once: wait for a signal then.
      if (!quit) await aborted;
    }
    console.log("stopping...");
    await cluster.stop();
    return 0;
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    await cluster?.stop().catch(() => {});
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
