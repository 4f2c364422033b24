import assert from "node:assert/strict";
import { parseFlags } from "../../lib/flags.ts";

const SPECS = {
  host: { type: "string", short: "h" },
  port: { type: "string", short: "p" },
  version: { type: "boolean", short: "V" },
  help: { type: "boolean" },
  "no-demo": { type: "boolean" },
  "allow-origin": { type: "string", multiple: true },
} as const;

Deno.test("parseFlags reads a string flag in every spelling", async (t) => {
  const cases: [string, string[], string][] = [
    ["--name value", ["--port", "80"], "80"],
    ["--name=value", ["--port=80"], "80"],
    ["--name= (empty)", ["--port="], ""],
    ["--name= keeps later =", ["--port=a=b"], "a=b"],
    ["--name=-value", ["--port=-5"], "-5"],
    ["--name '' (empty)", ["--port", ""], ""],
    ["-x value", ["-p", "80"], "80"],
    ["-xvalue", ["-p80"], "80"],
    ["-x=value keeps the =", ["-p=80"], "=80"],
    ["the last one given", ["--port", "1", "-p", "2"], "2"],
  ];
  for (const [name, args, port] of cases) {
    await t.step(name, () => {
      assert.deepEqual(parseFlags(args, SPECS), { port });
    });
  }
});

Deno.test("parseFlags sets a boolean flag, long or short", () => {
  assert.deepEqual(parseFlags(["--help", "-V", "--no-demo"], SPECS), {
    help: true,
    version: true,
    "no-demo": true,
  });
  assert.deepEqual(parseFlags(["--help", "--help"], SPECS), { help: true });
});

Deno.test("parseFlags reads a group of short flags", async (t) => {
  const cases: [string, string[], Record<string, unknown>][] = [
    ["booleans, then a string from the next argument", ["-Vh", "x"], {
      version: true,
      host: "x",
    }],
    ["a string takes the rest of the group", ["-hV"], { host: "V" }],
    ["a boolean, then a string with its value attached", ["-Vp80"], {
      version: true,
      port: "80",
    }],
  ];
  for (const [name, args, values] of cases) {
    await t.step(name, () => {
      assert.deepEqual(parseFlags(args, SPECS), values);
    });
  }
});

Deno.test("parseFlags keeps every value of a multiple flag, in order", () => {
  const values = parseFlags(
    ["--allow-origin", "a", "--allow-origin=b", "--allow-origin", "a"],
    SPECS,
  );
  assert.deepEqual(values, { "allow-origin": ["a", "b", "a"] });
});

Deno.test("parseFlags leaves out flags not given", () => {
  assert.deepEqual(parseFlags([], SPECS), {});
  assert.deepEqual(parseFlags(["--"], SPECS), {});
  assert.deepEqual(parseFlags(["--help", "--"], SPECS), { help: true });
  assert.equal(Object.hasOwn(parseFlags(["-V"], SPECS), "help"), false);
});

Deno.test("parseFlags throws a TypeError that names the argument when it cannot parse", async (t) => {
  const cases: [string, string[], string][] = [
    ["an unknown long flag", ["--nope"], "unknown option '--nope'"],
    [
      "an unknown long flag with a value",
      ["--nope=1"],
      "unknown option '--nope'",
    ],
    ["a long flag in another case", ["--Port", "1"], "unknown option '--Port'"],
    ["three dashes", ["---port", "1"], "unknown option '---port'"],
    ["a negation not declared", ["--no-help"], "unknown option '--no-help'"],
    ["an inherited name", ["--constructor"], "unknown option '--constructor'"],
    ["an unknown short flag", ["-x"], "unknown option '-x'"],
    ["an unknown short flag in a group", ["-Vx"], "unknown option '-x'"],
    ["a positional", ["extra"], "unexpected argument 'extra'"],
    ["a lone dash", ["-"], "unexpected argument '-'"],
    ["an argument after --", ["--", "--port"], "unexpected argument '--port'"],
    ["a string flag at the end", ["--port"], "--port needs a value"],
    ["a short string flag at the end", ["-Vp"], "-p needs a value"],
    [
      "a string flag followed by a flag",
      ["--port", "--help"],
      "--port needs a value, got '--help' (write --port=--help for a value that starts with -)",
    ],
    [
      "a string flag followed by a negative number",
      ["-p", "-5"],
      "-p needs a value, got '-5' (write -p=-5 for a value that starts with -)",
    ],
    ["a value given to a boolean", ["--help=1"], "--help takes no value"],
    [
      "an error after a valid flag",
      ["--help", "--nope"],
      "unknown option '--nope'",
    ],
  ];
  for (const [name, args, state] of cases) {
    await t.step(name, () => {
      assert.throws(() => parseFlags(args, SPECS), {
        name: "TypeError",
        message: `Cannot parse the command line: ${state}`,
      });
    });
  }
});

Deno.test("parseFlags types each value after its spec", () => {
  const values = parseFlags(["-p", "1"], SPECS);
  // Compile-time checks: a wrong type here fails `deno check`.
  const port: string | undefined = values.port;
  const origins: string[] | undefined = values["allow-origin"];
  const help: boolean | undefined = values.help;
  assert.deepEqual([port, origins, help], ["1", undefined, undefined]);
});
