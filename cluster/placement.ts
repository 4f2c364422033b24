/**
 * A cluster as the server's placement (`deno/placement.ts`): the server
 * plugs it in and never reaches into `cluster/` otherwise. Pipes from other
 * nodes are told from clients by their signature; a client's peer is served
 * here under a lease, or linked by a signed pipe to the node that owns its
 * group, before the peer's answer: an owner that cannot be reached is taken
 * over, one that refuses has its status mirrored. Pipes are watched both
 * ways: the edge pings them (`pipe_watch.ts`), and the owner has its side
 * of each pinged by the server (the lease's `silenceTimeout`), so that a
 * silent pipe closes its peer with 1012 at the edge and frees the owner.
 *
 * @module
 */

import type { Refusal } from "../lib/admission.ts";
import type { MetricFamily } from "../lib/metrics.ts";
import type {
  Inbound,
  Lease,
  Placed,
  Placement,
  PlacementHost,
  PlaceRequest,
} from "../deno/placement.ts";
import { sessionForwarder } from "./forward.ts";
import { openLink } from "./link.ts";
import { ClusterNode, type ClusterOptions, type Route } from "./node.ts";
import { PipeWatch } from "./pipe_watch.ts";

/** How long a pipe to an owner may take to open before it is unreachable. */
const PIPE_CONNECT_TIMEOUT_MS = 1500;
/** Frames a pipe may queue while it opens. */
const PIPE_MAX_QUEUED = 256;
/** Owners tried for one peer (an owner that moved, then the next one). */
const PIPE_ATTEMPTS = 3;

/**
 * A claim on a group for one local peer: the node counts it until the peer
 * leaves; a piped peer is counted as piped in meanwhile.
 */
class _Lease implements Lease {
  readonly #node: ClusterNode;
  readonly #key: string;
  #held = true;
  #piped: boolean;
  readonly silenceTimeout: number | undefined;

  constructor(node: ClusterNode, key: string, piped: boolean) {
    this.#node = node;
    this.#key = key;
    this.#piped = piped;
    if (piped) {
      node.pipedIn(1);
      this.silenceTimeout = node.pipeTimeout;
    }
  }

  release(): void {
    if (this.#piped) {
      this.#piped = false;
      this.#node.pipedIn(-1);
    }
    if (this.#held) {
      this.#held = false;
      this.#node.release(this.#key);
    }
  }

  moved(): void {
    this.#held = false;
  }
}

/**
 * The cluster, as the server's placement.
 *
 * @example
 * ```ts ignore
 * import { serve } from "@coast/sigver";
 * import { ClusterPlacement } from "@coast/sigver/cluster";
 * serve({
 *   placement: new ClusterPlacement({
 *     redis: "redis://127.0.0.1:6379",
 *     url: "ws://10.0.0.1:8000",
 *     secret: Deno.env.get("SIGVER_CLUSTER_SECRET")!,
 *   }),
 * });
 * ```
 */
export class ClusterPlacement implements Placement {
  /** The cluster node. */
  readonly node: ClusterNode;
  #forward: ReturnType<typeof sessionForwarder>;
  readonly #watch: PipeWatch;

  /**
   * Makes this server a node of a cluster on Redis.
   *
   * @param options Redis, this node's URL, the secret, prefix and TTLs.
   */
  constructor(options: ClusterOptions) {
    this.node = new ClusterNode(options);
    this.#forward = sessionForwarder(this.node);
    this.#watch = new PipeWatch(this.node.clock, this.node.pipeTimeout);
  }

  /** This node's id. */
  get id(): string {
    return this.node.id;
  }

  attach(host: PlacementHost): void {
    this.node.useLog(host.log);
    this.node.onLost = (keys) => host.moved(keys);
  }

  start(): Promise<void> {
    return this.node.start();
  }

  close(): Promise<void> {
    return this.node.close();
  }

  async inbound(headers: Headers): Promise<Inbound> {
    const node = this.node;
    const check = await node.auth.check(headers, Date.now());
    if (check.kind === "refused") {
      return _forbidden(`Forbidden: ${check.reason}`);
    }
    if (check.kind === "client") return { kind: "client" };
    // Signed for another node: replayed, or sent to the wrong address.
    if (check.claims.owner !== node.url) {
      return _forbidden("Forbidden: the pipe is signed for another node");
    }
    const { key, favored, client, origin } = check.claims;
    return { kind: "pipe", peer: { key, favored, client, origin } };
  }

  async accept(key: string): Promise<Lease | undefined> {
    return await this.node.accept(key)
      ? new _Lease(this.node, key, true)
      : undefined;
  }

  async place(request: PlaceRequest): Promise<Placed> {
    const node = this.node;
    const key = request.key;
    const target = request.favored ? `/${key}?favored` : `/${key}`;
    let route: Route = await node.route(key);
    for (let attempt = 0; !route.local && attempt < PIPE_ATTEMPTS; attempt++) {
      const owner = route;
      if (owner.node === undefined) break;
      const headers = await node.auth.sign({
        node: node.id,
        key,
        favored: request.favored,
        client: request.client,
        origin: request.origin,
        owner: owner.url,
      }, Date.now());
      const opened = await openLink(_pipeUrl(owner.url, target), headers, {
        connectTimeout: PIPE_CONNECT_TIMEOUT_MS,
        maxBufferedAmount: request.maxBufferedAmount,
        maxQueued: PIPE_MAX_QUEUED,
        watch: this.#watch,
      }, () => node.pipeClosed(key, owner.node));
      if ("link" in opened) {
        node.pipeOpened(key, owner);
        return { kind: "remote", remote: opened.link };
      }
      const end = opened.end;
      if (end.kind === "unreachable") {
        route = await node.unreachable(key, owner.node);
      } else if (end.kind === "refused" && end.status === 409) {
        route = await node.refused(key, owner.node);
      } else {
        const status = end.kind === "refused" ? end.status : 503;
        return _refused({
          status,
          reason: "owner_refused",
          message: status === 503
            ? "Service Unavailable: the server node of this group is full or shutting down"
            : `Cannot join: the server node of this group answered ${status}`,
        });
      }
    }
    if (!route.local && route.node === undefined) {
      return _refused({
        status: 503,
        reason: "owner_unknown",
        message: `Service Unavailable: ${route.reason}; try again`,
      });
    }
    if (!route.local) {
      return _refused({
        status: 503,
        reason: "owner_unreachable",
        message:
          "Service Unavailable: the server node of this group cannot be reached",
      });
    }
    return { kind: "local", lease: new _Lease(node, key, false) };
  }

  forward(
    request: Request,
    id: string,
    maxBody: number,
  ): Promise<Response> | undefined {
    return this.#forward(request, id, maxBody);
  }

  metrics(): MetricFamily[] {
    return this.node.metrics();
  }

  view(): unknown {
    return this.node.view();
  }
}

function _forbidden(message: string): Inbound {
  return {
    kind: "refused",
    refusal: { status: 403, reason: "pipe_signature", message },
  };
}

function _refused(refusal: Refusal): Placed {
  return { kind: "refused", refusal };
}

/**
 * The URL of a pipe: the owner's address and the peer's own path. The path
 * is informative (the key travels signed in a header): one that is no URL
 * path goes percent-encoded.
 */
function _pipeUrl(base: string, target: string): string {
  try {
    return new URL(base + target).href;
  } catch {
    return `${base}/${encodeURIComponent(target.slice(1))}`;
  }
}
