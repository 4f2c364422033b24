/**
 * The command line (`server.ts`) as a subprocess, for the tests that run it:
 * its arguments, and {@linkcode Cli}, a running server whose output is read
 * all along. Processes go through `dev/process.ts`; {@linkcode command} stays
 * for the tests that drive a raw `Deno.ChildProcess` (its pipes) themselves.
 */

import { WAIT_TIMEOUT } from "./_helpers.ts";
import { type ChildProcess, spawn } from "../dev/process.ts";

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
 * A running CLI server (a {@linkcode ChildProcess} of `dev/process.ts`): its
 * stdout and stderr are read all along, so it never blocks on a full pipe;
 * {@linkcode Cli.line} waits for a log line. Disposing of it kills it.
 */
export class Cli implements AsyncDisposable {
  /** The child process. */
  readonly child: ChildProcess;

  constructor(args: string[]) {
    this.child = spawn(Deno.execPath(), {
      name: "server.ts",
      args: denoArgs(args),
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    });
  }

  /** The process, to signal it. */
  get process(): Deno.ChildProcess {
    return this.child.process;
  }

  /** What it wrote to stdout so far. */
  get stdout(): string {
    return this.child.stdout;
  }

  /** What it wrote to stderr so far. */
  get stderr(): string {
    return this.child.stderr;
  }

  /**
   * Waits until stderr matches `pattern` (a line's pattern: `.` stays on
   * one line) and returns the match.
   *
   * @throws {Error} When the process ends, or `WAIT_TIMEOUT` passes, first.
   */
  async line(pattern: RegExp): Promise<RegExpMatchArray> {
    return await this.child.waitFor(pattern, {
      what: `a stderr line matching ${pattern}`,
      stream: "stderr",
      timeout: WAIT_TIMEOUT,
    });
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
    return (await this.child.exited).code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.child.kill();
  }
}

/** Arguments of a server on a free loopback port. */
export function cliArgs(...more: string[]): string[] {
  return ["--host", "127.0.0.1", "--port", "0", ...more];
}
