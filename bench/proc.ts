/**
 * Processes of the benchmark: the servers under test started as children
 * (pinned with `taskset` where it can) through `dev/process.ts`, `/proc`
 * sampling, and the cleanup that stops every child on the way out, whatever
 * happens (SIGTERM, then SIGKILL after 5 s).
 *
 * @module
 */

import { freePort, run as runProcess, spawn } from "../dev/process.ts";
import { parseProcStat, type ProcStat } from "./stats.ts";

/** Where the repository root is (this file is in `bench/`). */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/**
 * Reads `/proc/PID/stat`.
 *
 * @param pid The process, or `"self"`.
 * @returns The parsed sample.
 */
export function readStat(pid: number | "self"): ProcStat {
  return parseProcStat(Deno.readTextFileSync(`/proc/${pid}/stat`));
}

/** Runs a command and returns its trimmed stdout, or `undefined` on failure. */
export async function run(
  cmd: string,
  args: string[],
): Promise<string | undefined> {
  try {
    const out = await runProcess(cmd, { args });
    return out.success ? out.stdout.trim() : undefined;
  } catch {
    return undefined;
  }
}

/** Facts about the machine that go into every result. */
export interface Machine {
  /** Online CPUs. */
  cpus: number;
  /** CPU model name. */
  model: string;
  /** Clock ticks per second of `/proc/PID/stat`. */
  hz: number;
  /** Page size, for RSS. */
  pageSize: number;
  /** `taskset` is there and there are 2 or more CPUs. */
  pinning: boolean;
  /** Deno version. */
  deno: string;
  /** Kernel release. */
  kernel: string;
  /** 1-minute load average when the run started. */
  load: number;
}

/**
 * Gathers the machine facts.
 *
 * @returns The facts.
 */
export async function machine(): Promise<Machine> {
  const cpus = navigator.hardwareConcurrency;
  const info = Deno.readTextFileSync("/proc/cpuinfo");
  const model = /model name\s*:\s*(.+)/.exec(info)?.[1] ?? "unknown";
  const hz = Number(await run("getconf", ["CLK_TCK"])) || 100;
  const pageSize = Number(await run("getconf", ["PAGESIZE"])) || 4096;
  const pinning = cpus >= 2 &&
    (await run("taskset", ["-p", String(Deno.pid)])) !== undefined;
  const load = Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  return {
    cpus,
    model,
    hz,
    pageSize,
    pinning,
    deno: Deno.version.deno,
    kernel: Deno.osRelease(),
    load,
  };
}

/** Pins every thread of this process to one CPU (`taskset -a -p`). */
export async function pinSelf(cpu: number): Promise<boolean> {
  return (await run("taskset", [
    "-a",
    "-p",
    "-c",
    String(cpu),
    String(Deno.pid),
  ])) !== undefined;
}

/** A server started for a run. */
export interface ServerProcess {
  /** `sigver` or `bare`. */
  readonly kind: string;
  /** Its process id (the `deno` process itself: `taskset` execs it). */
  readonly pid: number;
  /** The port it listens on. */
  readonly port: number;
  /** Lines of stderr it wrote. */
  readonly logLines: () => number;
  /** The last lines of its stderr, for error reports. */
  readonly tail: () => string;
  /** Whether it is still running. */
  readonly alive: () => boolean;
  /** Stops it (SIGTERM, then SIGKILL after a grace period). Idempotent. */
  readonly stop: () => Promise<void>;
}

/** Something started for a run that must be stopped on the way out. */
export interface Stoppable {
  /** Stops it. Idempotent. */
  stop(): Promise<void>;
}

const _children = new Set<Stoppable>();

/**
 * Has {@linkcode stopAll} stop something (a process started another way,
 * such as Redis) unless it was stopped before.
 *
 * @param child What to stop.
 * @returns A function that forgets it (once it is stopped).
 */
export function track(child: Stoppable): () => void {
  _children.add(child);
  return () => _children.delete(child);
}

/** Kills every child still running. Safe to call more than once. */
export async function stopAll(): Promise<void> {
  await Promise.all([..._children].map((c) => c.stop()));
}

/** Picks a free port on 127.0.0.1 (closed again before returning). */
export { freePort };

/**
 * `taskset -c cpus deno ...args` when pinned (taskset execs deno, so the
 * process id is deno's), else `deno ...args`.
 */
function _deno(
  args: string[],
  cpus: string | undefined,
): { command: string; args: string[] } {
  return cpus === undefined
    ? { command: Deno.execPath(), args }
    : { command: "taskset", args: ["-c", cpus, Deno.execPath(), ...args] };
}

/** Options of {@linkcode startServer}. */
export interface StartOptions {
  /** `sigver` (the server under test) or `bare` (the bare relay). */
  kind: "sigver" | "bare";
  /** CPU to pin it to, or `undefined` for no pinning. */
  cpu?: number;
  /** More flags for the server. */
  flags?: string[];
  /** More `deno run` flags (V8 flags, `--cpu-prof`...). */
  denoFlags?: string[];
  /** The sigver entry point to run instead of `server.ts`. */
  script?: string;
  /**
   * The port, when the flags need it (a cluster node's `--cluster-url`).
   * @default {a free port}
   */
  port?: number;
}

/**
 * Starts a server on a free port of 127.0.0.1 and waits until it accepts
 * connections. Its stderr is read continuously (a full pipe would block it)
 * and only the last lines are kept.
 *
 * @param options Which server, where to pin it, more flags.
 * @returns The running server.
 */
export async function startServer(
  options: StartOptions,
): Promise<ServerProcess> {
  const port = options.port ?? freePort();
  const script = options.kind === "sigver"
    ? options.script ?? `${ROOT}server.ts`
    : `${ROOT}bench/bare_relay.ts`;
  const denoArgs = [
    "run",
    // -A as the issue runs it: with only --allow-read, Deno 2.9.6 refuses
    // /proc/self/limits and sigver's default --max-peers falls to 10000.
    "-A",
    ...(options.denoFlags ?? []),
    script,
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    ...(options.flags ?? []),
  ];
  const cpus = options.cpu === undefined ? undefined : String(options.cpu);
  const { command, args } = _deno(denoArgs, cpus);
  // Only the last lines of stderr are kept; a line counter sees them all.
  let lines = 0;
  const child = spawn(command, {
    name: options.kind,
    args,
    cwd: ROOT,
    stdout: "null",
    outputLimit: 16_384,
    echo: () => lines++,
  });
  let stopping: Promise<void> | undefined;
  const proc: ServerProcess = {
    kind: options.kind,
    pid: child.pid,
    port,
    logLines: () => lines,
    tail: () => child.stderr.split("\n").slice(-40).join("\n"),
    alive: () => child.running,
    stop: () =>
      stopping ??= (async () => {
        await child.stop();
        _children.delete(proc);
      })(),
  };
  _children.add(proc);
  try {
    await child.waitForPort(port, 15_000);
  } catch {
    await proc.stop();
    throw new Error(
      `Cannot start ${options.kind}: not listening on ${port}\n${proc.tail()}`,
    );
  }
  return proc;
}

/** A load-generating child process, driven one JSON line at a time. */
export interface HolderProcess extends Stoppable {
  /** Its process id. */
  readonly pid: number;
  /**
   * Sends one command and waits for its answer.
   *
   * @param command The command, as JSON.
   * @param ms Milliseconds the answer may take.
   * @returns The answer.
   */
  request(command: Record<string, unknown>, ms?: number): Promise<unknown>;
}

/**
 * Starts `bench/holder.ts` (a process that holds peers under its own
 * open-file limit) with a plan, and waits until it says it is ready.
 *
 * @param plan The plan, passed as JSON.
 * @param cpuList The CPUs it may run on (`taskset -c`), when not ours.
 * @returns The running process.
 */
export async function startHolder(
  plan: unknown,
  cpuList?: string,
): Promise<HolderProcess> {
  const args = [
    "run",
    "-A",
    `${ROOT}bench/holder.ts`,
    JSON.stringify(plan),
  ];
  const command = _deno(args, cpuList);
  const child = spawn(command.command, {
    name: "holder",
    args: command.args,
    cwd: ROOT,
    stdin: "piped",
    outputLimit: 1 << 20,
  });
  // Answers are stdout lines, read in order from this mark on.
  let read = 0;
  const next = async (ms: number): Promise<unknown> => {
    const match = await child.waitFor(/^.*\n/, {
      what: "an answer of the holder",
      stream: "stdout",
      from: read,
      timeout: ms,
    });
    read += match[0].length;
    return JSON.parse(match[0]);
  };
  let stopping: Promise<void> | undefined;
  const holder: HolderProcess = {
    pid: child.pid,
    request: async (command, ms = 120_000) => {
      await child.write(JSON.stringify(command) + "\n");
      return await next(ms);
    },
    stop: () =>
      stopping ??= (async () => {
        await child.stop();
        forget();
      })(),
  };
  const forget = track(holder);
  try {
    await next(30_000);
  } catch (error) {
    await holder.stop();
    throw error;
  }
  return holder;
}
