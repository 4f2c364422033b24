/**
 * A small command-line flag parser: the subset of `node:util`'s `parseArgs`
 * (strict, no positionals) that the sigver CLI uses, without pulling a
 * `node:` module into the graph of every app that imports sigver.
 *
 * - `--name value` and `--name=value` for a string flag; a value that starts
 *   with `-` must use `=` (`--name=-x`), so that a forgotten value is not
 *   silently filled with the next flag;
 * - `--name` for a boolean flag, which takes no value;
 * - `-x value`, `-xvalue` and groups of one-letter booleans (`-Vh host`) for
 *   flags with a `short` letter;
 * - a string flag given twice keeps the last value, unless it is `multiple`:
 *   then every value, in order;
 * - `--` ends the flags; anything that is not a flag is an error, and so is
 *   an unknown flag.
 *
 * @module
 */

/** How one flag is read. */
export interface FlagSpec {
  /** `string` takes a value; `boolean` takes none. */
  type: "string" | "boolean";
  /** A one-letter alias, used as `-x`. */
  short?: string;
  /**
   * Keep every value of a string flag given several times, in order.
   * @default {false}
   */
  multiple?: boolean;
}

/** The flags a command takes, by long name (without the leading `--`). */
export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** The value of one flag: `true`, a string, or the strings of a `multiple`. */
export type FlagValue<S extends FlagSpec> = S["type"] extends "boolean"
  ? boolean
  : S["multiple"] extends true ? string[]
  : string;

/** The flags given, by long name; a flag not given is absent. */
export type FlagValues<S extends FlagSpecs> = {
  [K in keyof S]?: FlagValue<S[K]>;
};

function _error(state: string): TypeError {
  return new TypeError(`Cannot parse the command line: ${state}`);
}

/**
 * Parses command-line arguments against the flags a command takes.
 *
 * @param args The arguments, without the program name.
 * @param specs The flags, by long name.
 * @returns The flags given, by long name.
 * @throws {TypeError} For an unknown flag, a missing value, a value given
 * to a boolean flag, or an argument that is not a flag.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFlags } from "./flags.ts";
 * const specs = {
 *   port: { type: "string", short: "p" },
 *   "allow-origin": { type: "string", multiple: true },
 *   help: { type: "boolean" },
 * } as const;
 * assert.deepEqual(
 *   parseFlags(["-p", "80", "--allow-origin=a", "--allow-origin", "b"], specs),
 *   { port: "80", "allow-origin": ["a", "b"] },
 * );
 * assert.throws(() => parseFlags(["--nope"], specs), TypeError);
 * ```
 */
export function parseFlags<const S extends FlagSpecs>(
  args: readonly string[],
  specs: S,
): FlagValues<S> {
  const shorts = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.short !== undefined) shorts.set(spec.short, name);
  }
  const values: Record<string, boolean | string | string[]> = {};
  const set = (name: string, value: string | true) => {
    if (value !== true && specs[name].multiple) {
      const list = values[name];
      if (Array.isArray(list)) list.push(value);
      else values[name] = [value];
    } else {
      values[name] = value;
    }
  };
  // The value of a string flag written as `--name value` or `-x value`.
  const next = (i: number, flag: string): string => {
    const value = args[i];
    if (value === undefined) throw _error(`${flag} needs a value`);
    if (value.startsWith("-")) {
      throw _error(
        `${flag} needs a value, got '${value}' (write ${flag}=${value} for a value that starts with -)`,
      );
    }
    return value;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      if (i + 1 < args.length) {
        throw _error(`unexpected argument '${args[i + 1]}'`);
      }
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq === -1 ? undefined : eq);
      const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
      if (spec === undefined) {
        throw _error(`unknown option '--${name}'`);
      }
      if (spec.type === "boolean") {
        if (eq !== -1) throw _error(`--${name} takes no value`);
        set(name, true);
      } else {
        set(name, eq === -1 ? next(++i, `--${name}`) : arg.slice(eq + 1));
      }
      continue;
    }
    if (arg.startsWith("-") && arg.length > 1) {
      // A group of one-letter flags: booleans, then at most one string flag
      // that takes the rest of the group, or the next argument, as its value.
      for (let j = 1; j < arg.length; j++) {
        const name = shorts.get(arg[j]);
        if (name === undefined) throw _error(`unknown option '-${arg[j]}'`);
        if (specs[name].type === "boolean") {
          set(name, true);
          continue;
        }
        set(
          name,
          j + 1 < arg.length ? arg.slice(j + 1) : next(++i, `-${arg[j]}`),
        );
        break;
      }
      continue;
    }
    throw _error(`unexpected argument '${arg}'`);
  }
  return values as FlagValues<S>;
}
