/**
 * Subprocesses for distribution tests: {@linkcode Child} collects a child's
 * output, waits for a line with a deadline and always ends the child, and
 * {@linkcode freePort} finds a loopback port for a program that needs one on
 * its command line.
 *
 * ```ts ignore
 * await using child = Child.spawn(Deno.execPath(), ["run", "mod.ts"]);
 * await child.waitFor(/listen url=/, 30_000, "the server to listen");
 * const { code } = await child.stop("SIGTERM");
 * ```
 *
 * @module
 */

/** How a child ended, with everything it wrote. */
export interface ChildResult {
  /** The exit code (128 + n when killed by signal n). */
  code: number;
  /** The signal that ended it, if one did. */
  signal: Deno.Signal | null;
  /** Everything written to stdout. */
  stdout: string;
  /** Everything written to stderr. */
  stderr: string;
}

/** Options of {@linkcode Child.spawn}. */
export interface ChildOptions {
  /** Working directory. */
  cwd?: string;
  /** Environment variables added to (or replacing) the inherited ones. */
  env?: Record<string, string>;
}

/**
 * A running subprocess with piped output. Dispose it (`await using`) to be
 * sure it is gone: a child still running then is killed with SIGKILL.
 */
export class Child implements AsyncDisposable {
  /** The process. */
  readonly process: Deno.ChildProcess;
  /** What the command line was, for messages. */
  readonly label: string;
  /** Everything written to stdout so far. */
  stdout = "";
  /** Everything written to stderr so far. */
  stderr = "";
  /** Set once the process has exited. */
  status: Deno.CommandStatus | undefined = undefined;

  readonly #exited: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<unknown>;
  #wake: (() => void) | undefined;

  private constructor(command: string, args: string[], options: ChildOptions) {
    this.label = [command, ...args].join(" ");
    this.process = new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#exited = this.process.status.then((status) => {
      this.status = status;
      this.#notify();
      return status;
    });
    this.#drained = Promise.all([
      this.#pump(this.process.stdout, "stdout"),
      this.#pump(this.process.stderr, "stderr"),
    ]);
  }

  /**
   * Starts a command.
   *
   * @param command The program.
   * @param args Its arguments.
   * @param options Working directory and environment.
   * @returns The running child.
   */
  static spawn(
    command: string,
    args: string[],
    options: ChildOptions = {},
  ): Child {
    return new Child(command, args, options);
  }

  /**
   * Waits until stdout or stderr matches `pattern`.
   *
   * @param pattern What to look for.
   * @param timeout Milliseconds before giving up.
   * @param what Said in the error.
   * @returns The match.
   * @throws {Error} On timeout or when the child exits first; the message
   * carries the child's output.
   */
  async waitFor(
    pattern: RegExp,
    timeout: number,
    what: string,
  ): Promise<RegExpMatchArray> {
    const deadline = performance.now() + timeout;
    for (;;) {
      const match = this.stdout.match(pattern) ?? this.stderr.match(pattern);
      if (match !== null) return match;
      if (this.status !== undefined) {
        await this.#drained;
        const late = this.stdout.match(pattern) ??
          this.stderr.match(pattern);
        if (late !== null) return late;
        throw new Error(
          `Cannot see ${what}: the child exited with ${this.status.code}\n${this.#output()}`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `Cannot see ${what}: timed out after ${timeout} ms\n${this.#output()}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /**
   * Waits for the child to exit by itself.
   *
   * @param timeout Milliseconds before it is killed and this throws.
   * @returns How it ended.
   * @throws {Error} When it did not exit in time.
   */
  async exited(timeout: number): Promise<ChildResult> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeout);
    });
    const status = await Promise.race([this.#exited, late]);
    clearTimeout(timer);
    if (status === undefined) {
      await this[Symbol.asyncDispose]();
      throw new Error(
        `Cannot stop ${this.label}: still running after ${timeout} ms, killed\n${this.#output()}`,
      );
    }
    await this.#drained;
    return {
      code: status.code,
      signal: status.signal,
      stdout: this.stdout,
      stderr: this.stderr,
    };
  }

  /**
   * Sends a signal and waits for the child to exit.
   *
   * @param signal The signal.
   * @param timeout Milliseconds before it is killed and this throws.
   * @returns How it ended.
   */
  stop(
    signal: Deno.Signal = "SIGTERM",
    timeout = 15_000,
  ): Promise<ChildResult> {
    if (this.status === undefined) {
      try {
        this.process.kill(signal);
      } catch {
        // It exited meanwhile.
      }
    }
    return this.exited(timeout);
  }

  /** Kills the child if it still runs and waits until it is gone. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.status === undefined) {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // It exited meanwhile.
      }
    }
    await this.#exited;
    await this.#drained;
  }

  async #pump(
    stream: ReadableStream<Uint8Array>,
    into: "stdout" | "stderr",
  ): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      this[into] += text;
      this.#notify();
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #output(): string {
    return `--- ${this.label}\n--- stdout:\n${this.stdout}--- stderr:\n${this.stderr}`;
  }
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for programs that must
 * be told their port. (Another process could take it in between; on a test
 * machine that is rare enough, and the failure is loud.)
 *
 * @returns The port.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}
