/**
 * The nginx configuration of a local cluster, as text: the upstream blocks
 * of `docs/scaling.md` as they are written there (only the addresses of
 * their `server` lines change; parameters such as `max_fails=0` stay) inside
 * the server block of `docs/deploy.md` (its `proxy_pass` pointed at the
 * upstream, as scaling.md says), so that the cluster runs the documented
 * configuration. Pure: the documents come in as strings.
 *
 * @module
 */

/** The modes of the balancer in front: the two upstreams of scaling.md. */
export type BalancerMode = "hash" | "round-robin";

/** The balancer modes, in the order `--help` lists them. */
export const BALANCER_MODES: readonly BalancerMode[] = ["hash", "round-robin"];

/** The text between the fence after `marker` in `doc`. */
function _fencedAfter(
  doc: string,
  name: string,
  marker: string,
  lang: string,
): string {
  const at = doc.indexOf(marker);
  if (at === -1) throw new Error(`${name}: marker '${marker}' not found`);
  const open = doc.indexOf("```" + lang + "\n", at);
  if (open === -1) {
    throw new Error(`${name}: no \`\`\`${lang} block after '${marker}'`);
  }
  const start = open + lang.length + 4;
  return doc.slice(start, doc.indexOf("\n```", start) + 1);
}

/** Replaces `from` by `to`, which must occur exactly once. */
function _replaceOnce(
  name: string,
  text: string,
  from: string,
  to: string,
): string {
  const found = text.split(from).length - 1;
  if (found !== 1) {
    throw new Error(
      `${name}: expected '${from}' once, found it ${found} times`,
    );
  }
  return text.replace(from, () => to);
}

/** The first `opening ... \n<indent>}\n` block of `text`. */
function _block(name: string, text: string, opening: string): string {
  const start = text.indexOf(opening);
  if (start === -1) throw new Error(`${name}: no '${opening}' block`);
  const indent = opening.match(/^ */)![0];
  const close = `\n${indent}}\n`;
  const end = text.indexOf(close, start);
  if (end === -1) throw new Error(`${name}: '${opening}' is not closed`);
  return text.slice(start, end + close.length);
}

/**
 * The upstream block of `docs/scaling.md` for a mode, with its three example
 * `server` lines replaced by one line per node, each with the parameters
 * the documented lines have (the three must have the same ones).
 *
 * @param doc The text of `docs/scaling.md`.
 * @param mode The balancer mode.
 * @param ports The nodes' ports on 127.0.0.1.
 * @returns An http-context configuration that defines upstream `sigver`.
 * @throws {Error} When the document no longer has the block as expected.
 */
export function upstreamConfig(
  doc: string,
  mode: BalancerMode,
  ports: readonly number[],
): string {
  const name = `docs/scaling.md (${mode})`;
  const block = _fencedAfter(
    doc,
    name,
    `<!-- tested by dev/cluster.ts (balancer "${mode}")`,
    "nginx",
  );
  const lines =
    /^( *)server 10\.0\.0\.\d+:8000((?: [a-z_]+=[^\s;]+)*);\n(?: *server 10\.0\.0\.\d+:8000\2;\n){2}/m
      .exec(block);
  if (lines === null || block.split("server 10.0.0.").length !== 4) {
    throw new Error(
      `${name}: expected three 'server 10.0.0.N:8000 <parameters>;' lines, with the same parameters`,
    );
  }
  if (!block.includes("upstream sigver {")) {
    throw new Error(`${name}: no 'upstream sigver' block`);
  }
  const servers = ports.map((port) =>
    `${lines[1]}server 127.0.0.1:${port}${lines[2]};\n`
  ).join("");
  return block.replace(lines[0], () => servers);
}

/**
 * The server block of `docs/deploy.md` for a cluster, as scaling.md says:
 * its `proxy_pass` pointed at upstream `sigver` and `/cluster` kept off the
 * proxy. TLS is left out (the balancer listens on plain HTTP on 127.0.0.1),
 * and so is the redirect server.
 *
 * @param doc The text of `docs/deploy.md`.
 * @param port The port to listen on, on 127.0.0.1.
 * @returns An http-context configuration: the upgrade map and the server.
 * @throws {Error} When the document no longer has the blocks as expected.
 */
export function serverConfig(doc: string, port: number): string {
  const name = "docs/deploy.md";
  const block = _fencedAfter(
    doc,
    name,
    "<!-- tested by tests/nginx/proxy.ts",
    "nginx",
  );
  const map = _block(name, block, "map $http_upgrade $connection_upgrade {");
  const metrics = _block(name, block, "    location = /metrics {");
  const root = _replaceOnce(
    name,
    _block(name, block, "    location / {"),
    "proxy_pass http://127.0.0.1:8000;",
    "proxy_pass http://sigver;",
  );
  return `${map}
server {
    listen 127.0.0.1:${port};

    location = /cluster {
        deny all;
    }

${metrics}
${root}}
`;
}

/**
 * The main configuration: nginx in the foreground with one worker, its
 * files under `dir`, logging to stderr, the upstream and server blocks
 * included from `dir/upstream.conf` and `dir/server.conf`.
 *
 * @param dir nginx's directory.
 * @returns The text of `nginx.conf`.
 */
export function nginxConf(dir: string): string {
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr notice;
events {
    worker_connections 4096;
}
http {
    log_format sigver_upstream '$request_uri $upstream_addr $status';
    access_log ${dir}/access.log sigver_upstream;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${dir}/upstream.conf;
    include ${dir}/server.conf;
}
`;
}
