/**
 * The one child-process helper of the tests, the benchmark and
 * `deno task cluster`. {@linkcode spawn} starts a command whose stdout and
 * stderr are read all along (a full pipe never blocks it) and kept;
 * {@linkcode ChildProcess.waitFor} waits for a line, {@linkcode
 * ChildProcess.waitForPort} for a listening port, each with a deadline;
 * {@linkcode ChildProcess.stop} ends it by its PID, SIGTERM then SIGKILL
 * after a bound, and is idempotent. Disposing of it (`await using`) stops it
 * and waits until its output is read, so that nothing is left for Deno's
 * test sanitizers. {@linkcode run} runs a command to completion.
 *
 * ```ts ignore
 * await using server = spawn(Deno.execPath(), {
 *   args: ["run", "-A", "server.ts", "--port", "0"],
 * });
 * const [, port] = await server.waitFor(/listen url=ws:\S+:(\d+)\//, {
 *   what: "the listen line",
 * });
 * const { code } = await server.stop();
 * ```
 *
 * @module
 */

/** Milliseconds a wait may take by default. */
export const WAIT_TIMEOUT = 30_000;
/** Milliseconds a SIGTERM may take by default before SIGKILL. */
export const STOP_TIMEOUT = 5_000;
/** Characters of each stream kept by default (the oldest are dropped). */
export const OUTPUT_LIMIT = 4 << 20;

/** Which output a wait looks at: a stream, or both as they came. */
export type Stream = "stdout" | "stderr" | "output";

/** How a process ended, with what it wrote (as much as was kept). */
export interface ProcessResult {
  /** The exit code (128 + n when signal n ended it). */
  code: number;
  /** The signal that ended it, if one did. */
  signal: Deno.Signal | null;
  /** Whether it exited with code 0. */
  success: boolean;
  /** What it wrote to stdout. */
  stdout: string;
  /** What it wrote to stderr. */
  stderr: string;
}

/** Options of {@linkcode spawn}. */
export interface SpawnOptions {
  /** The arguments. */
  args?: readonly string[];
  /** The working directory. */
  cwd?: string | URL;
  /** Environment variables added to the inherited ones. */
  env?: Record<string, string>;
  /**
   * A name for messages (`node 2`, `nginx`).
   * @default {the command line}
   */
  name?: string;
  /**
   * `"piped"` to {@linkcode ChildProcess.write} to it.
   * @default {"null"}
   */
  stdin?: "null" | "piped";
  /**
   * `"null"` to discard stdout (a chatty child whose stdout is not read).
   * @default {"piped"}
   */
  stdout?: "piped" | "null";
  /** Called with every complete line of output, and the stream it came on. */
  echo?: (line: string, stream: "stdout" | "stderr") => void;
  /**
   * Characters of each stream kept.
   * @default {OUTPUT_LIMIT}
   */
  outputLimit?: number;
}

/** Options of {@linkcode ChildProcess.waitFor}. */
export interface WaitForOptions {
  /** What is awaited, said in the error. */
  what: string;
  /**
   * Milliseconds to wait.
   * @default {WAIT_TIMEOUT}
   */
  timeout?: number;
  /**
   * The output looked at.
   * @default {"output"}
   */
  stream?: Stream;
  /**
   * A {@linkcode ChildProcess.mark} of that stream: look only after it.
   * @default {0}
   */
  from?: number;
}

/** Options of {@linkcode ChildProcess.stop}. */
export interface StopOptions {
  /**
   * The first signal.
   * @default {"SIGTERM"}
   */
  signal?: Deno.Signal;
  /**
   * Milliseconds it may take to exit before SIGKILL.
   * @default {STOP_TIMEOUT}
   */
  timeout?: number;
}

/** Text that keeps its last `limit` characters and counts the dropped. */
class _Text {
  text = "";
  dropped = 0;
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get mark(): number {
    return this.dropped + this.text.length;
  }

  append(chunk: string): void {
    this.text += chunk;
    if (this.text.length > this.#limit) {
      const cut = this.text.length - Math.ceil(this.#limit / 2);
      this.text = this.text.slice(cut);
      this.dropped += cut;
    }
  }

  after(mark: number): string {
    return this.text.slice(Math.max(0, mark - this.dropped));
  }
}

/** A timer that callers can race against, cleared by `clear`. */
function _timer(ms: number): { done: Promise<void>; clear: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => id = setTimeout(resolve, ms));
  return { done, clear: () => clearTimeout(id) };
}

/**
 * A running child process; see the module doc. Build it with
 * {@linkcode spawn}.
 */
export class ChildProcess implements AsyncDisposable {
  /** A name for messages. */
  readonly name: string;
  /** The process. */
  readonly process: Deno.ChildProcess;
  /** Set once it exited. */
  status: Deno.CommandStatus | undefined;
  /** Settles once it exited and its output was read. */
  readonly exited: Promise<ProcessResult>;
  readonly #stdout: _Text;
  readonly #stderr: _Text;
  readonly #output: _Text;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  readonly #echo: SpawnOptions["echo"];
  #waiters: (() => void)[] = [];
  #stopping: Promise<ProcessResult> | undefined;

  /**
   * Starts a command; {@linkcode spawn} is the same.
   *
   * @param command The program.
   * @param options Its arguments, environment, pipes.
   */
  constructor(command: string, options: SpawnOptions = {}) {
    const args = [...options.args ?? []];
    this.name = options.name ?? [command, ...args].join(" ");
    const limit = options.outputLimit ?? OUTPUT_LIMIT;
    this.#stdout = new _Text(limit);
    this.#stderr = new _Text(limit);
    this.#output = new _Text(limit);
    this.#echo = options.echo;
    this.process = new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: options.stdin ?? "null",
      stdout: options.stdout ?? "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = options.stdin === "piped"
      ? this.process.stdin.getWriter()
      : undefined;
    const drained = Promise.all([
      options.stdout === "null"
        ? undefined
        : this.#pump(this.process.stdout, "stdout"),
      this.#pump(this.process.stderr, "stderr"),
    ]);
    this.exited = this.process.status.then(async (status) => {
      this.status = status;
      this.#wake();
      await drained;
      await this.#writer?.close().catch(() => {});
      this.#wake();
      return {
        ...status,
        stdout: this.#stdout.text,
        stderr: this.#stderr.text,
      };
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

  /** What it wrote to stdout (the last `outputLimit` characters). */
  get stdout(): string {
    return this.#stdout.text;
  }

  /** What it wrote to stderr (the last `outputLimit` characters). */
  get stderr(): string {
    return this.#stderr.text;
  }

  /** Both, in the order they came. */
  get output(): string {
    return this.#output.text;
  }

  /**
   * How much of a stream came so far: a mark for `waitFor`'s `from`.
   *
   * @param stream The stream.
   * @returns Characters so far, dropped ones included.
   */
  mark(stream: Stream = "output"): number {
    return this.#text(stream).mark;
  }

  /**
   * Waits until the output matches `pattern`.
   *
   * @param pattern What to look for (with `m` for `^`/`$` per line).
   * @param options What it is, where to look, how long to wait.
   * @returns The match.
   * @throws {Error} When it exits, or the time runs out, first; the message
   * carries its output.
   */
  async waitFor(
    pattern: RegExp,
    options: WaitForOptions,
  ): Promise<RegExpMatchArray> {
    const { what, timeout = WAIT_TIMEOUT, stream = "output", from = 0 } =
      options;
    const text = this.#text(stream);
    const end = performance.now() + timeout;
    let exited = false;
    for (;;) {
      const match = text.after(from).match(pattern);
      if (match !== null) return match;
      if (exited) {
        throw new Error(
          `Cannot see ${what}: ${this.name} exited with ${
            this.status!.code
          }\n${this.#tail()}`,
        );
      }
      // Once it exited, look once more after the output is all read.
      if (this.status !== undefined) {
        await this.exited;
        exited = true;
        continue;
      }
      const left = end - performance.now();
      if (left <= 0) {
        throw new Error(
          `Cannot see ${what}: ${this.name} wrote nothing of it in ${timeout} ms\n${this.#tail()}`,
        );
      }
      const timer = _timer(left);
      await Promise.race([
        timer.done,
        new Promise<void>((resolve) => this.#waiters.push(resolve)),
      ]);
      timer.clear();
    }
  }

  /**
   * Waits until something accepts TCP connections on a loopback port,
   * trying every 20 ms while the process runs.
   *
   * @param port The port on 127.0.0.1.
   * @param timeout Milliseconds to wait.
   * @throws {Error} When it exits, or the time runs out, first.
   */
  async waitForPort(port: number, timeout = WAIT_TIMEOUT): Promise<void> {
    const end = performance.now() + timeout;
    while (this.running && performance.now() < end) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        conn.close();
        return;
      } catch {
        const timer = _timer(20);
        await Promise.race([timer.done, this.process.status]);
        timer.clear();
      }
    }
    throw new Error(
      `Cannot reach ${this.name} on port ${port}: ${
        this.running ? `nothing listens after ${timeout} ms` : "it exited"
      }\n${this.#tail()}`,
    );
  }

  /**
   * Writes to its stdin (spawned with `stdin: "piped"`).
   *
   * @param text What to write.
   */
  async write(text: string): Promise<void> {
    if (this.#writer === undefined) {
      throw new TypeError(`Cannot write to ${this.name}: stdin is not piped`);
    }
    await this.#writer.write(new TextEncoder().encode(text));
  }

  /**
   * Sends a signal, unless it has exited.
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
   * Kills it with SIGKILL and waits until it is gone.
   *
   * @returns How it ended.
   */
  kill(): Promise<ProcessResult> {
    this.signal("SIGKILL");
    return this.exited;
  }

  /**
   * Sends SIGTERM (or `signal`), then SIGKILL when it still runs after
   * `timeout`, and waits until it is gone and its output read. Calling it
   * again returns the same result.
   *
   * @param options The first signal, and how long it may take.
   * @returns How it ended.
   */
  stop(options: StopOptions = {}): Promise<ProcessResult> {
    return this.#stopping ??= (async () => {
      const { signal = "SIGTERM", timeout = STOP_TIMEOUT } = options;
      this.signal(signal);
      const timer = _timer(timeout);
      const late = await Promise.race([
        this.exited.then(() => false),
        timer.done.then(() => true),
      ]);
      timer.clear();
      return late ? await this.kill() : await this.exited;
    })();
  }

  /** Stops it (see {@linkcode ChildProcess.stop}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #text(stream: Stream): _Text {
    return stream === "stdout"
      ? this.#stdout
      : stream === "stderr"
      ? this.#stderr
      : this.#output;
  }

  /** The last output, for error messages. */
  #tail(): string {
    return `--- ${this.name} (pid ${this.pid}), last output:\n${
      this.#output.text.slice(-8000)
    }`;
  }

  async #pump(
    stream: ReadableStream<Uint8Array>,
    into: "stdout" | "stderr",
  ): Promise<void> {
    const text = into === "stdout" ? this.#stdout : this.#stderr;
    let partial = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text.append(chunk);
      this.#output.append(chunk);
      if (this.#echo !== undefined) {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop()!;
        for (const line of lines) this.#echo(line, into);
      }
      this.#wake();
    }
    if (partial !== "") this.#echo?.(partial, into);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * Starts a command; see {@linkcode ChildProcess}.
 *
 * @param command The program.
 * @param options Its arguments, environment, pipes.
 * @returns The running process.
 */
export function spawn(
  command: string,
  options: SpawnOptions = {},
): ChildProcess {
  return new ChildProcess(command, options);
}

/** Options of {@linkcode run}. */
export interface RunOptions extends SpawnOptions {
  /**
   * Milliseconds it may run before it is killed and `run` throws.
   * @default {WAIT_TIMEOUT}
   */
  timeout?: number;
}

/**
 * Runs a command to completion, its output collected.
 *
 * @param command The program.
 * @param options Its arguments, environment, and how long it may run.
 * @returns How it ended and what it wrote.
 * @throws {Error} When it runs past `timeout` (it is killed then).
 */
export async function run(
  command: string,
  options: RunOptions = {},
): Promise<ProcessResult> {
  const child = spawn(command, options);
  const timeout = options.timeout ?? WAIT_TIMEOUT;
  const timer = _timer(timeout);
  const late = await Promise.race([
    child.exited.then(() => false),
    timer.done.then(() => true),
  ]);
  timer.clear();
  if (!late) return await child.exited;
  await child.kill();
  throw new Error(
    `Cannot run ${child.name}: still running after ${timeout} ms, killed\n${child.output}`,
  );
}

/**
 * A port on 127.0.0.1 that was free a moment ago, for a program that must be
 * told its port (another process may take it in between: callers that can,
 * retry on another).
 *
 * @returns The port.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}
