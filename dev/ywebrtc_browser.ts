/**
 * The entry of the browser build of y-webrtc 10.3.0 and yjs that the
 * end-to-end tests serve to Chromium (`tests/e2e/_ywebrtc.ts` bundles it
 * with `deno bundle --platform browser`): the unmodified client, exposed on
 * `globalThis` as `Y` and `WebrtcProvider`. Dev-only: the runtime never
 * loads it.
 *
 * @module
 */

import * as Y from "npm:yjs@13.6.33";
import { WebrtcProvider } from "npm:y-webrtc@10.3.0";

Object.assign(globalThis, { Y, WebrtcProvider });
