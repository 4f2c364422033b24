/**
 * The balancer of a local cluster: Debian's `nginx` (or `$NGINX`) on
 * 127.0.0.1 and a free port, in front of the nodes, configured as the docs
 * say ({@linkcode upstreamConfig}, {@linkcode serverConfig}), reloaded when
 * a node joins, and stopped by its PID with its workers.
 *
 * @module
 */

import { type ChildProcess, freePort, run, spawn } from "../process.ts";
import {
  type BalancerMode,
  nginxConf,
  serverConfig,
  upstreamConfig,
} from "./nginx_config.ts";

const ROOT = new URL("../../", import.meta.url);
const SCALING_DOC = new URL("docs/scaling.md", ROOT);
const DEPLOY_DOC = new URL("docs/deploy.md", ROOT);

/** Milliseconds nginx may take to start listening. */
const START_TIMEOUT = 30_000;
/** Milliseconds a SIGTERM may take before SIGKILL. */
const STOP_TIMEOUT = 5_000;
/** Milliseconds nginx may take to reload. */
const RELOAD_TIMEOUT = 10_000;
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

/** nginx's arguments: its prefix and configuration in `dir`, logs to stderr. */
function _argsOf(dir: string): string[] {
  return ["-p", `${dir}/`, "-c", `${dir}/nginx.conf`, "-e", "stderr"];
}

function _randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
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
  readonly process: ChildProcess;
  readonly #scaling: string;

  private constructor(
    mode: BalancerMode,
    port: number,
    dir: string,
    process: ChildProcess,
    scaling: string,
  ) {
    this.mode = mode;
    this.port = port;
    this.dir = dir;
    this.process = process;
    this.#scaling = scaling;
  }

  /** `ws://127.0.0.1:<port>`: append a path for a peer's URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** `http://127.0.0.1:<port>`. */
  get http(): string {
    return `http://127.0.0.1:${this.port}`;
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
        const port = freePort();
        await Deno.writeTextFile(`${dir}/upstream.conf`, upstream);
        await Deno.writeTextFile(
          `${dir}/server.conf`,
          serverConfig(deploy, port),
        );
        await Deno.writeTextFile(`${dir}/nginx.conf`, nginxConf(dir));
        await _check(dir);
        const process = spawn(_nginx(), {
          name: "nginx",
          args: _argsOf(dir),
          cwd: dir,
          echo: echo && ((line) => echo(line)),
        });
        try {
          await process.waitFor(/start worker process \d+/, {
            what: "nginx to start its worker",
          });
          await process.waitForPort(port, START_TIMEOUT);
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
    const mark = this.process.mark();
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
      await new Promise((resolve) => setTimeout(resolve, 10));
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
      const { signal } = await this.process.stop({ timeout: STOP_TIMEOUT });
      // SIGKILL of the master leaves its workers running: kill them too.
      if (signal === "SIGKILL") {
        for (const pid of [...workers, ...await _children(this.process.pid)]) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Gone already.
          }
        }
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

/** `nginx -t`: fails with nginx's message when the configuration is bad. */
async function _check(dir: string): Promise<void> {
  const out = await run(_nginx(), {
    args: ["-t", "-q", ..._argsOf(dir)],
    cwd: dir,
  });
  if (!out.success) {
    throw new Error(
      `Cannot run nginx: its configuration does not pass nginx -t\n${out.stderr}\n${await Deno
        .readTextFile(`${dir}/upstream.conf`)}`,
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
