/**
 * Node records of a sigver cluster, authenticated with the cluster secret.
 * Each node says where it is reached by writing a record under its id to
 * the shared store (Redis); the other nodes pipe peers and pass fallback
 * requests on to that URL. Whoever can write to the store could otherwise
 * name any URL (an internal service, or a server of theirs that then gets
 * the signed pipes), so the record carries an HMAC-SHA256 over the node id
 * and the URL, and a record is used only when it checks out:
 *
 * ```
 * <node URL>|<base64url(HMAC-SHA256(secret, "sigver-node-v1\n" id "\n" URL))>
 * ```
 *
 * The URL is a node URL (`lib/node_url.ts`): it holds no `|`. A record is
 * bound to its node id, so it cannot be moved to another id; it carries no
 * time, so the record of a dead node, written back under its own id, names
 * that node's own address again (which a pipe then cannot reach).
 *
 * @module
 */

import { isNodeUrl } from "./node_url.ts";
import { hmacKey } from "./secret.ts";

const _encoder = new TextEncoder();

/** Verified records kept, by node id and record: most a cluster has. */
const _VERIFIED_MAX = 1024;

function _message(node: string, url: string): Uint8Array<ArrayBuffer> {
  // The URL holds no line feed: the split is unambiguous.
  return _encoder.encode(`sigver-node-v1\n${node}\n${url}`);
}

function _base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function _unbase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return undefined;
  const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/**
 * Signs and reads node records with one cluster secret.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NodeRecords } from "./node_record.ts";
 * const records = new NodeRecords("a cluster secret of 32 bytes....");
 * const record = await records.sign("n1", "ws://10.0.0.1:8000");
 * assert.equal(await records.read("n1", record), "ws://10.0.0.1:8000");
 * assert.equal(await records.read("n2", record), undefined);
 * assert.equal(await records.read("n1", "ws://10.0.0.9:8000"), undefined);
 * ```
 */
export class NodeRecords {
  #key: Promise<CryptoKey>;
  /** Records that checked out, by `<node>\n<record>`: the URL. */
  #verified = new Map<string, string>();

  /**
   * Creates the signer.
   *
   * @param secret The cluster secret, the same on every node.
   * @throws {TypeError} When the secret is empty.
   */
  constructor(secret: string) {
    if (secret === "") {
      throw new TypeError(
        "Cannot sign node records: the cluster secret is empty",
      );
    }
    this.#key = hmacKey(secret);
  }

  /**
   * The record that says where a node is reached.
   *
   * @param node The node's id.
   * @param url Its cluster URL, as `parseNodeUrl` (`lib/node_url.ts`) writes it.
   * @returns The record to store under the node's id.
   * @throws {TypeError} When the URL is no node URL.
   */
  async sign(node: string, url: string): Promise<string> {
    if (!isNodeUrl(url)) {
      throw new TypeError(
        `Cannot sign a node record: '${url}' is no node URL (ws[s]://host:port)`,
      );
    }
    const mac = await crypto.subtle.sign(
      "HMAC",
      await this.#key,
      _message(node, url),
    );
    return `${url}|${_base64url(new Uint8Array(mac))}`;
  }

  /**
   * Reads a record found under a node's id: its URL, when the record was
   * signed for that id with the secret and names a node URL.
   *
   * @param node The node's id, as the store names it.
   * @param record The record.
   * @returns The node's URL, or `undefined` when the record is not to be
   * trusted.
   */
  async read(node: string, record: string): Promise<string | undefined> {
    const cached = this.#verified.get(`${node}\n${record}`);
    if (cached !== undefined) return cached;
    const bar = record.lastIndexOf("|");
    if (bar === -1) return undefined;
    const url = record.slice(0, bar);
    const mac = _unbase64url(record.slice(bar + 1));
    if (mac === undefined || !isNodeUrl(url)) return undefined;
    const ok = await crypto.subtle.verify(
      "HMAC",
      await this.#key,
      mac,
      _message(node, url),
    );
    if (!ok) return undefined;
    // Only signed records get here: the cache grows with the cluster, not
    // with what a writer to the store invents.
    if (this.#verified.size >= _VERIFIED_MAX) this.#verified.clear();
    this.#verified.set(`${node}\n${record}`, url);
    return url;
  }
}
