/**
 * The command line's help texts: the server's, and the `token` and `secret`
 * commands'.
 *
 * @module
 */

import { VERSION } from "../deno/version.ts";

export const USAGE: string =
  `sigver ${VERSION}: WebRTC signaling server for Netflux

Usage: sigver [options]
       sigver token --secret <secret> [--prefix <prefix>] [--ttl <s>]
       sigver secret

Server:
  -h, --host <host>              interface to listen on (default 0.0.0.0)
  -p, --port <port>              port to listen on (default 8000)
  -k, --key <file>               TLS private key (PEM); with --cert: wss/https
  -c, --cert <file>              TLS certificate chain (PEM)
  -a, --ca <file>                CA certificates (PEM), appended to the chain
  -V, --version                  print the version and exit
      --help                     print this help and exit

Limits (0 turns a limit off):
      --max-message-size <bytes> largest frame; larger closes with 1009 (default 65536)
      --max-peers <n>            peers at once; more get HTTP 503
                                 (default: open-file limit less 256)
      --max-peers-per-address <n> peers per client address; more get HTTP 429
                                 (default 256; loopback not counted without --trust-proxy)
      --trust-proxy              client address from X-Forwarded-For / Forwarded
      --message-rate <n>         messages per second per peer; over it closes with 1008 (default 2000)
      --message-burst <n>        messages a peer may send at once over its rate (default 4000)
      --max-buffered <bytes>     unsent bytes per peer; a slower reader closes with 1008
                                 (default 1048576)
      --upgrade-timeout <s>      seconds an upgrade may take to open (default 10)
      --allow-origin <origin>    allowed Origin (repeatable); others get HTTP 403
      --require-origin           refuse upgrades without an Origin header (HTTP 403)

Operations:
      --health-path <path>       liveness endpoint, "off" to disable (default /healthz)
      --ready-path <path>        readiness endpoint, 503 while draining (default /readyz)
      --metrics-path <path>      Prometheus metrics, "off" to disable (default /metrics)
      --admin-port <port>        serve health, readiness, metrics and the cluster view on
                                 a listener of their own; the client port then keeps
                                 no metrics (without it, no cluster view is served)
      --admin-host <host>        interface of the admin listener (default 127.0.0.1)
      --no-demo                  do not serve the demo page at / (served by default)
      --log-level <level>        error, warn, info or debug (default info)
      --log-format <format>      text or json (default text)
      --drain-timeout <s>        seconds a shutdown waits for sockets to close (default 10)
      --heartbeat-interval <s>   seconds between heartbeats, 0.1 or more (default 5)

Cluster (peers of one key meet on the node that owns it, wherever they connect):
      --redis <url>              redis://host:port[/db]: run as a cluster node
      --cluster-url <url>        ws://address:port where other nodes reach this one
      --cluster-secret <secret>  secret that signs node-to-node pipes, 16 bytes or more
                                 (or the SIGVER_CLUSTER_SECRET environment variable)
      --cluster-prefix <prefix>  prefix of the cluster's Redis keys (default sigver:)
      --cluster-lease-ttl <s>    seconds a group's lease lives unrenewed (default 30)
      --redis-timeout <s>        seconds a Redis command may take before Redis counts as
                                 unreachable (default 1)
      --cluster-path <path>      this node's view as JSON on the admin listener, "off" to
                                 disable (default /cluster)

Access tokens and TURN credentials (secrets: 16 bytes or more; sigver secret makes one):
      --auth-secret <secret>     peers need an access token: ws[s]://HOST/t/<token>/<key>
                                 (repeatable: any one validates, the first signs; or
                                 SIGVER_AUTH_SECRETS=s1,s2, read with --allow-env)
      --turn-secret <secret>     coturn's static-auth-secret: GET /ice-servers hands out
                                 TURN credentials (or SIGVER_TURN_SECRET, read with --allow-env);
                                 needs --auth-secret, or --ice-servers-public
      --ice-servers-public       hand TURN credentials to anyone, without a token: an open
                                 relay for whoever finds the URL (logs a warning)
      --turn-url <url>           turn: or turns: URL of the TURN server (repeatable)
      --stun-url <url>           stun: URL handed out beside it (repeatable)
      --turn-ttl <s>             seconds TURN credentials are valid for (default 3600)
      --ice-servers-path <path>  the TURN credentials endpoint, "off" to disable
                                 (default /ice-servers)

y-webrtc clients (Yjs's WebrtcProvider, signaling: ["wss://HOST/y-webrtc"]):
      --y-webrtc-path <path>     where they connect (never a Netflux group), "off" to
                                 disable (default /y-webrtc)
      --y-webrtc-max-topics <n>  topics (rooms) per connection; more close with 4751
                                 (default 64)
      --y-webrtc-max-subscribers <n>
                                 subscribers per topic; more close with 4752 (default 256)
      --y-webrtc-max-topic-length <n>
                                 longest topic; longer closes with 4750 (default 512)
      --y-webrtc-idle-timeout <s>
                                 seconds a client may send nothing (it pings every 15 s),
                                 then closed with 4742; 0 never (default 60)

PeerJS clients (new Peer({ host, port, path: "/peerjs" }); with tokens "/t/<token>/peerjs"):
      --peerjs-path <path>       where they are served (socket <path>/peerjs, routes
                                 <path>/<key>/id and /peers), "off" to disable (default /peerjs)
      --peerjs-key <key>         API key served, repeatable, an id namespace each (default peerjs)
      --peerjs-discovery         let <path>/<key>/peers list the ids held (else 401)
      --peerjs-alive-timeout <s> seconds a client may be silent (it beats every 5 s),
                                 then closed with 4742 (default 60)
      --peerjs-expire-timeout <s>
                                 seconds messages wait for an absent id before EXPIRE (default 5)
      --peerjs-max-ids <n>       ids held at once; more get ERROR (default 0: no limit)
      --peerjs-max-queued <n>    messages waiting per absent id; more get ERROR (default 64)

Commands:
  token                          print an access token for --auth-secret (sigver token --help)
  secret                         print a new random secret (32 bytes, base64url)

Peers connect to ws[s]://HOST:PORT/<key>; peers with the same key form a group.
`;

export const TOKEN_USAGE: string = `sigver ${VERSION}: mint an access token

Usage: sigver token --secret <secret> [--prefix <prefix>] [--ttl <s>]

Prints a token alone on the first line of stdout. Peers connect to
ws[s]://HOST/t/<token>/<key> with it, for keys that start with the prefix,
until it expires (30 s of clock skew allowed).

      --secret <secret>  one of the server's --auth-secret (default: the first of
                         SIGVER_AUTH_SECRETS, read with --allow-env)
      --prefix <prefix>  keys granted start with it, as the server reads them
                         (percent-encoding kept); end it with / for a namespace
                         (default: every key)
      --ttl <s>          seconds the token is valid for (default 3600)
      --help             print this help and exit
`;

export const SECRET_USAGE: string = `sigver ${VERSION}: make a secret

Usage: sigver secret

Prints 32 random bytes, base64url without padding, alone on the first line
of stdout: a secret for --auth-secret, --turn-secret (and coturn's
static-auth-secret) or --cluster-secret. Make one per use.
`;
