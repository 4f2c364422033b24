/**
 * ICE servers with short-lived TURN credentials from a sigver server's
 * `/ice-servers` endpoint: {@linkcode fetchIceServers}.
 *
 * @module
 */

import type { IceServer } from "../lib/turn.ts";

/** Options of {@linkcode fetchIceServers}. */
export interface FetchIceServersOptions {
  /**
   * An access token, for a server that needs one: sent as
   * `Authorization: Bearer <token>`.
   */
  token?: string;
  /**
   * The endpoint's path on the server (its `--ice-servers-path`), appended
   * to the path of `url`.
   * @default {"/ice-servers"}
   */
  path?: string;
  /** Aborts the request. */
  signal?: AbortSignal;
}

/**
 * The error of a {@linkcode fetchIceServers} that the server refused: 401
 * (no valid token), 403 (a token or an origin refused), or another status.
 *
 * @example Ask the backend for a new token when the old one expired
 * ```ts ignore
 * import { fetchIceServers, IceServersError } from "@coast/sigver/client";
 * try {
 *   await fetchIceServers("https://signal.example", { token: "v1...." });
 * } catch (error) {
 *   if (error instanceof IceServersError && error.status === 403) {
 *     // renew the token
 *   }
 * }
 * ```
 */
export class IceServersError extends Error {
  /** The HTTP status of the answer. */
  readonly status: number;

  /**
   * Creates the error of a refused request.
   *
   * @param status The HTTP status.
   * @param text The answer's text (the server's short explanation).
   */
  constructor(status: number, text: string) {
    super(
      `Cannot get the ICE servers: the server answered ${status}${
        text ? ` (${text})` : ""
      }`,
    );
    this.name = "IceServersError";
    this.status = status;
  }
}

function _iceServer(entry: unknown): IceServer {
  const e = entry as Record<string, unknown> | null;
  const urls = typeof e?.urls === "string" ? [e.urls] : e?.urls;
  if (
    !Array.isArray(urls) || !urls.every((u) => typeof u === "string") ||
    (e!.username !== undefined && typeof e!.username !== "string") ||
    (e!.credential !== undefined && typeof e!.credential !== "string")
  ) {
    throw new SyntaxError(
      "Cannot read the ICE servers: an entry is not {urls, username?, credential?}",
    );
  }
  const server: IceServer = { urls };
  if (e!.username !== undefined) server.username = e!.username as string;
  if (e!.credential !== undefined) server.credential = e!.credential as string;
  return server;
}

/**
 * Gets ICE servers with short-lived TURN credentials from a sigver server's
 * `/ice-servers` endpoint, for `new RTCPeerConnection({ iceServers })`.
 * Credentials expire (one hour by default): get fresh ones for each new
 * peer connection, or at least every few minutes.
 *
 * @param url The server's address: `https://host`, `wss://host` (ws and wss
 * become http and https), with the path it is mounted on if any.
 * @param options The token, the endpoint's path and an `AbortSignal`.
 * @returns The ICE servers, or `undefined` when the server hands out none
 * (404: no TURN server configured; 426: no such endpoint).
 * @throws {IceServersError} When the server refuses (401, 403...).
 * @throws {SyntaxError} When the answer is not the expected JSON.
 * @throws {TypeError} When `url` is not a ws, wss, http or https URL, or the
 * network fails (a cross-origin answer without CORS headers fails so too).
 *
 * @example Relay through TURN only, with a token
 * ```ts ignore
 * import { fetchIceServers } from "@coast/sigver/client";
 * const iceServers = await fetchIceServers("https://signal.example", {
 *   token: "v1....",
 * });
 * const pc = new RTCPeerConnection({
 *   iceServers: iceServers ?? [],
 *   iceTransportPolicy: "relay",
 * });
 * ```
 */
export async function fetchIceServers(
  url: string | URL,
  options: FetchIceServersOptions = {},
): Promise<IceServer[] | undefined> {
  const { token, path = "/ice-servers", signal } = options;
  const u = new URL(url);
  const scheme = { "ws:": "http:", "wss:": "https:" }[u.protocol] ??
    u.protocol;
  if (scheme !== "http:" && scheme !== "https:") {
    throw new TypeError(
      `Cannot get the ICE servers: ${u.protocol} is not a ws, wss, http or https URL`,
    );
  }
  const endpoint = new URL(
    u.pathname.replace(/\/$/, "") + (path.startsWith("/") ? path : `/${path}`),
    `${scheme}//${u.host}`,
  );
  const headers: Record<string, string> = { accept: "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const response = await fetch(endpoint, { headers, signal });
  if (response.status === 404 || response.status === 426) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.ok) {
    const text = (await response.text()).trim().slice(0, 200);
    throw new IceServersError(response.status, text);
  }
  const body = await response.json();
  if (!Array.isArray(body?.iceServers)) {
    throw new SyntaxError(
      "Cannot read the ICE servers: the answer has no iceServers list",
    );
  }
  return body.iceServers.map(_iceServer);
}
