/**
 * What the end-to-end tests share: Debian's Chromium launched headless
 * through playwright-core, the CLI server on a free port, and a watch on
 * page errors.
 */

import { type Browser, chromium, type Page } from "npm:playwright-core@1.65.1";
import { Cli, cliArgs } from "../_cli.ts";
import { run } from "../../dev/process.ts";

/** Milliseconds any single wait in a page may take. */
export const TIMEOUT = 30_000;

async function _chromiumPath(): Promise<string> {
  const given = Deno.env.get("CHROMIUM");
  if (given) return given;
  const { success, stdout } = await run("sh", {
    args: ["-c", "command -v chromium"],
  });
  const path = stdout.trim();
  if (!success || path === "") {
    throw new Error(
      "Cannot run the e2e tests: chromium is not installed (apt-get install -y chromium)",
    );
  }
  return path;
}

/** The CLI server on a free loopback port; disposing of it stops it. */
export async function startCli(
  ...args: string[]
): Promise<AsyncDisposable & { base: string }> {
  const cli = new Cli(cliArgs(...args));
  try {
    const port = await cli.port();
    return {
      base: `http://127.0.0.1:${port}`,
      [Symbol.asyncDispose]: async () => {
        await cli.child.stop();
      },
    };
  } catch (error) {
    await cli[Symbol.asyncDispose]();
    throw error;
  }
}

/** Page errors and console errors, to report and to assert none. */
export function watch(page: Page, name: string, errors: string[]): void {
  page.on("pageerror", (error) => errors.push(`${name}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`${name}: ${message.text()}`);
  });
}

/**
 * Debian's Chromium (or `CHROMIUM`), headless, with the flags this machine
 * needs: no sandbox as root, no GPU, no background networking.
 */
export async function launchChromium(): Promise<Browser> {
  return await chromium.launch({
    executablePath: await _chromiumPath(),
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
    ],
  });
}
