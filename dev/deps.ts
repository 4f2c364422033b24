/**
 * The npm packages that tests use, and only tests: playwright-core (drives
 * Debian's Chromium), netflux (the real client, served to Chromium) and
 * protobuf-es (the reference codec). They are pinned in `dev/deno.lock`,
 * which the test tasks pass with `--lock`; the root `deno.lock` is the
 * runtime's and names no package, so `deno task start` installs none.
 *
 * Deno drops from a lockfile the packages a run does not load, so every
 * task that passes `--lock=dev/deno.lock` loads this module too: the lock
 * then always covers all three.
 *
 * @module
 */

export type { Browser, Page } from "npm:playwright-core@1.65.1";
export type { Message } from "npm:@bufbuild/protobuf@2.17.0";
export type { WebGroup } from "npm:netflux@4.3.1";
// y-webrtc 10.3.0 and yjs: bundled for Chromium by tests/e2e/_ywebrtc.ts.
export type { WebrtcProvider } from "npm:y-webrtc@10.3.0";
export type { Doc } from "npm:yjs@13.6.33";
// peerjs 1.5.5: its browser build served to Chromium by tests/e2e/_peerjs.ts.
export type { PeerOptions } from "npm:peerjs@1.5.5";
