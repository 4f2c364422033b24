/**
 * The command line (`server.ts`) as a subprocess, for the tests that run it:
 * its arguments, and {@linkcode Cli}, a running server whose output is read
 * all along.
 */

import { WAIT_TIMEOUT } from "./_helpers.ts";
import { deadline, DeadlineError } from "../lib/deadline.ts";

/** The checkout's root. */
export const ROOT = new URL("..", import.meta.url);
/** The path of `server.ts`. */
export const SERVER = decodeURIComponent(new URL("server.ts", ROOT).pathname);

/** The arguments that run server.ts with the permissions it documents. */
export function denoArgs(args: string[]): string[] {
  return ["run", "--quiet", "--allow-net", "--allow-read", SERVER, ...args];
}

/** The CLI as a command, its stdout and stderr piped. */
export function command(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: denoArgs(args),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * A running CLI server. Its stdout and stderr are read all along, so it
 * never blocks on a full pipe; {@linkcode Cli.line} waits for a log line.
 */
export class Cli implements AsyncDisposable {
  readonly process: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #done: Promise<[void, void]>;
  /** Whether both streams have ended (no more output will come). */
  #ended = false;
  /** Who waits for more output. */
  #waiters: (() => void)[] = [];

  constructor(args: string[]) {
    this.process = command(args).spawn();
    const drain = async (
      stream: ReadableStream<Uint8Array>,
      into: "stdout" | "stderr",
    ) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this[into] += chunk;
        this.#wake();
      }
    };
    this.#done = Promise.all([
      drain(this.process.stdout, "stdout"),
      drain(this.process.stderr, "stderr"),
    ]);
    const end = () => {
      this.#ended = true;
      this.#wake();
    };
    this.#done.then(end, end);
  }

  /**
   * Waits for a stderr line matching `pattern` and returns the match.
   *
   * @throws {Error} When the process ends, or `WAIT_TIMEOUT` passes, first.
   */
  async line(pattern: RegExp): Promise<RegExpMatchArray> {
    try {
      return await deadline(this.#line(pattern), WAIT_TIMEOUT);
    } catch (error) {
      if (!(error instanceof DeadlineError)) throw error;
      throw new Error(
        `No stderr line matches ${pattern} after ${WAIT_TIMEOUT} ms:\n${this.stderr}`,
      );
    }
  }

  async #line(pattern: RegExp): Promise<RegExpMatchArray> {
    for (;;) {
      for (const line of this.stderr.split("\n")) {
        const match = line.match(pattern);
        if (match !== null) return match;
      }
      if (this.#ended) {
        throw new Error(
          `No stderr line matches ${pattern}, and the process ended:\n${this.stderr}`,
        );
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Waits for the listen line and returns the port it gives. */
  async port(scheme = "ws"): Promise<number> {
    const match = await this.line(
      new RegExp(`INFO listen url=${scheme}://127\\.0\\.0\\.1:(\\d+)/`),
    );
    return Number(match[1]);
  }

  /** Waits for the process to exit and its output to be read. */
  async exit(): Promise<number> {
    const { code } = await this.process.status;
    await this.#done;
    return code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.exit();
  }
}

/** Arguments of a server on a free loopback port. */
export function cliArgs(...more: string[]): string[] {
  return ["--host", "127.0.0.1", "--port", "0", ...more];
}
