/**
 * Renders one gateway task's HAProxy configuration (HAProxy 2.6 syntax) and the map/ACL files it
 * loads, from a validated fleet configuration. Pure: it returns file contents; `writeGateway`
 * (render-write.ts) puts them on disk.
 *
 * The TLS listener decides everything in `tcp-request content` rules before a backend is chosen,
 * so a refused connection never causes an upstream connection attempt:
 *   PROXY trust → source allowlist → complete ClientHello → SNI sanity → route → one DNS
 *   resolution → destination guard → `set-dst` to exactly the checked address → accept.
 * Terminate routes continue in render-terminate.ts; the control plane's verification listener,
 * which shows their certificates and forwards nothing, is in render-verify.ts.
 */
import { posix } from 'node:path';
import { type Cidr, normaliseAllowlist } from '../../lib/allowlist/index.ts';
import type { FleetConfig, Route } from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import type { GatewayLayout } from './layout.ts';
import { accessLogLines, renderConnectionErrorsMap } from './render-log.ts';
import { CLIENT_HELLO_LUA, CLIENT_HELLO_LUA_FILE } from './render-lua.ts';
import {
  BACKEND,
  CONNECTION_REFUSAL,
  FRONTEND,
  HTTP_REFUSAL,
  LOG_LINE_MAX,
  LOG_RING,
  READY_KEY,
  REFUSAL,
  RESOLVERS,
  SESSION_TABLE,
  SOURCE_TABLE,
} from './render-names.ts';
import { renderResolutionKeepAlive } from './render-resolution.ts';
import {
  deniedDestinations,
  localAcl,
  NAME_ACLS,
  nameRules,
  type Paths,
  paths,
  perSourceLimited,
  proxyProtocolLines,
  routeAcls,
  routingRules,
  sessionTracking,
  sourceLimitRules,
  sourceTracking,
  untrustedPeerRule,
} from './render-rules.ts';
import {
  hasTerminateRoutes,
  renderTerminateFiles,
  renderTerminateSections,
  TERMINATE,
  TERMINATE_ACL,
  type TerminateRenderOptions,
} from './render-terminate.ts';
import { renderVerifySection } from './render-verify.ts';

export { errorLogFormat, renderConnectionErrorsMap } from './render-log.ts';
export {
  BACKEND,
  CONNECTION_REFUSAL,
  FRONTEND,
  HTTP_REFUSAL,
  LOG_LINE_MAX,
  LOG_RING,
  parseSessionKey,
  READY_KEY,
  REFUSAL,
  RESOLVERS,
  type Refusal,
  ROUTE_FILES,
  SESSION_TABLE,
  SOURCE_TABLE,
} from './render-names.ts';
export { deniedDestinations } from './render-rules.ts';

/** One rendered file: text content and the file mode it must be written with. */
export interface RenderedFile {
  content: string;
  mode: number;
}

export interface RenderedGateway {
  /** Keyed by path relative to `layout.root` (`haproxy.cfg`, `acl/allowlist.acl`, …). */
  files: Record<string, RenderedFile>;
  /** Directories (relative to `layout.root`) that must exist, mode 0700: the sockets' and certificates'. */
  directories?: string[];
}

export interface RenderOptions {
  layout: GatewayLayout;
  /** The task's own addresses: always denied as destinations (a route must not loop back into the gateway). */
  ownAddresses?: readonly string[];
  /** Source CIDRs allowed to connect; absent or empty denies everyone. Validated against the fleet's policy. */
  allowlistCidrs?: readonly string[];
  /** Terminate routes: what the trust secret provides (see render-terminate.ts). */
  terminate?: TerminateRenderOptions;
}

const FILE_MODE = 0o644;

/** Milliseconds as an HAProxy time value. */
function ms(value: number): string {
  return `${value}ms`;
}

function rel(layout: GatewayLayout, path: string): string {
  const relative = posix.relative(layout.root, path);
  if (relative.startsWith('..') || posix.isAbsolute(relative)) {
    throw new ValidationError(`layout path ${path} is outside the gateway root ${layout.root}`);
  }
  return relative;
}

function cidrLines(cidrs: readonly string[]): string {
  return cidrs.length === 0 ? '' : `${cidrs.join('\n')}\n`;
}

function bindLines(config: FleetConfig, port: number): string[] {
  return config.listeners.bind.map((address) =>
    address.includes(':') ? `  bind [${address}]:${port} v6only` : `  bind ${address}:${port}`,
  );
}

function tlsFrontend(config: FleetConfig, p: Paths): string[] {
  const pp = config.proxyProtocol.enabled;
  const terminate = hasTerminateRoutes(config);
  const passthrough = terminate ? ' if !terminate' : '';
  const sourceCheck = pp ? `!{ src -f ${p.allowlist} } !pp_local` : `!{ src -f ${p.allowlist} }`;
  return [
    `frontend ${FRONTEND.tls}`,
    '  mode tcp',
    ...bindLines(config, config.listeners.tls),
    `  maxconn ${config.limits.maxconn}`,
    // Every refusal is logged, even one that arrives before any byte: no `dontlognull` here.
    ...accessLogLines(config, 'tls', p.connectionErrors),
    ...proxyProtocolLines(config, p),
    ...sourceTracking(config),
    `  tcp-request inspect-delay ${ms(config.limits.inspectDelayMs)}`,
    ...NAME_ACLS,
    '  acl hello req.ssl_hello_type 1',
    '  acl hello_full req.len,sub(txn.hello_need) ge 0',
    '  acl has_data req.len gt 0',
    '  acl tls_record req.payload(0,1),hex -m str 16',
    // An SSLv2 CLIENT-HELLO starts with a 2-byte length whose top bit is set, then type 1.
    '  acl sslv2 req.payload(0,1),hex -m reg ^[89A-F]',
    ...routeAcls(config),
    ...(terminate ? [TERMINATE_ACL] : []),
    ...localAcl(config, p, false),
    // Rules may re-run from the top while data arrives; defaults keep logged numbers valid JSON.
    '  tcp-request content set-var(txn.port) int(0)',
    // Health checks send nothing: silent only once no byte came (`has_data` waits for one).
    ...(pp ? ['  tcp-request content set-log-level silent if pp_local trusted_peer !has_data'] : []),
    '  # peer trust, then the source allowlist (the PROXY source), decided before reading anything',
    ...untrustedPeerRule(config, 'tcp-request content'),
    `  tcp-request content set-var(txn.refusal) str(${REFUSAL.sourceNotAllowed}) if !refused ${sourceCheck}`,
    ...sourceLimitRules(config, 'tcp-request content'),
    '  tcp-request content reject if refused',
    '  # wait for a complete ClientHello (the !hello conditions wait until it is complete or the deadline)',
    `  tcp-request content set-var(txn.refusal) str(${REFUSAL.sslv2Hello}) if !hello sslv2`,
    `  tcp-request content set-var(txn.refusal) str(${REFUSAL.clientHelloIncomplete}) if !refused !hello tls_record`,
    `  tcp-request content set-var(txn.refusal) str(${REFUSAL.noClientHello}) if !refused !hello !has_data`,
    `  tcp-request content set-var(txn.refusal) str(${REFUSAL.notTls}) if !refused !hello`,
    '  tcp-request content reject if refused',
    // req.ssl_* read only the first TLS record; a hello fragmented over several records is
    // reassembled in Lua, and `req.len` keeps the rule waiting until all of it arrived.
    '  # the whole hello, across TLS records, strictly parsed (lua/client-hello.lua): "<need>/<name>"',
    '  tcp-request content set-var(txn.hello) req.payload(0,0),hex,lua.portcullis_hello',
    '  tcp-request content set-var(txn.hello_need) var(txn.hello),field(1,/)',
    `  tcp-request content set-var(txn.refusal) str(${REFUSAL.clientHelloIncomplete}) if !hello_full`,
    '  tcp-request content reject if refused',
    '  # server name: lower-cased, one trailing dot dropped',
    '  tcp-request content set-var(txn.name) var(txn.hello),field(2,/),lower,regsub([.]$,)',
    ...nameRules('tcp-request content', REFUSAL.noServerName),
    ...routingRules(config, p, 'tcp-request content', 'tls'),
    '  tcp-request content reject if refused',
    `  tcp-request content set-dst var(txn.dst)${passthrough}`,
    `  tcp-request content set-dst-port var(txn.port)${passthrough}`,
    ...sessionTracking('tcp-request content'),
    // `accept` ends rule evaluation: it comes after every set-var/do-resolve/set-dst rule.
    '  tcp-request content accept if hello',
    '  tcp-request content reject',
    ...(terminate ? [`  use_backend ${TERMINATE.backend} if terminate`] : []),
    `  default_backend ${BACKEND.tls}`,
  ];
}

function httpFrontend(config: FleetConfig, p: Paths, port: number): string[] {
  const pp = config.proxyProtocol.enabled;
  const sourceCheck = pp ? `!{ src -f ${p.allowlist} } !pp_local` : `!{ src -f ${p.allowlist} }`;
  const deny = (status: number, reasons: readonly string[]) =>
    `  http-request deny deny_status ${status} if { var(txn.refusal) -m str ${reasons.join(' ')} }`;
  return [
    `frontend ${FRONTEND.http}`,
    '  mode http',
    ...bindLines(config, port),
    `  maxconn ${config.limits.maxconn}`,
    `  timeout http-request ${ms(config.limits.httpRequestTimeoutMs)}`,
    ...accessLogLines(config, 'http', p.connectionErrors),
    ...proxyProtocolLines(config, p),
    ...sourceTracking(config),
    ...NAME_ACLS,
    ...routeAcls(config),
    ...localAcl(config, p, true),
    // txn variables live for one request, so keep-alive requests are each decided afresh.
    '  http-request set-var(txn.port) int(0)',
    ...untrustedPeerRule(config, 'http-request'),
    `  http-request set-var(txn.refusal) str(${REFUSAL.sourceNotAllowed}) if !refused ${sourceCheck}`,
    ...sourceLimitRules(config, 'http-request'),
    // A tunnel to whatever the upstream would CONNECT to: never forwarded.
    `  http-request set-var(txn.refusal) str(${HTTP_REFUSAL.methodNotAllowed}) if !refused METH_CONNECT`,
    // `req.hdr` would read the last item of a comma list while the upstream gets the whole value.
    // HTTP/2's `:authority` arrives here as the Host header, so it is held to the same rule.
    '  # Host: exactly one header line holding one value',
    `  http-request set-var(txn.refusal) str(${HTTP_REFUSAL.invalidHost}) if !refused { req.fhdr_cnt(host) gt 1 }`,
    `  http-request set-var(txn.refusal) str(${HTTP_REFUSAL.invalidHost}) if !refused { req.hdr_cnt(host) gt 1 }`,
    `  http-request set-var(txn.refusal) str(${HTTP_REFUSAL.invalidHost}) if !refused { req.fhdr(host) -m sub , }`,
    '  # the one name: lower-cased, a port of up to five digits and one trailing dot dropped',
    '  http-request set-var(txn.name) req.fhdr(host),lower,regsub(:[0-9][0-9]?[0-9]?[0-9]?[0-9]?$,),regsub([.]$,)',
    ...nameRules('http-request', REFUSAL.noServerName),
    ...routingRules(config, p, 'http-request', 'http'),
    deny(403, [REFUSAL.untrustedPeer, REFUSAL.proxyLocal, REFUSAL.sourceNotAllowed]),
    deny(429, [REFUSAL.sourceConnectionLimit, REFUSAL.sourceRateLimit]),
    deny(405, [HTTP_REFUSAL.methodNotAllowed]),
    deny(400, [HTTP_REFUSAL.invalidHost]),
    deny(421, [REFUSAL.noServerName, REFUSAL.ipLiteral, REFUSAL.invalidServerName, REFUSAL.noRoute]),
    '  http-request deny deny_status 502 if refused',
    '  http-request set-dst var(txn.dst)',
    '  http-request set-dst-port var(txn.port)',
    ...sessionTracking('http-request'),
    // A request HAProxy's parser refused on its own after the stream began (HTTP/2 on 2.6) skips
    // every rule above; its 400 still passes here, so its line carries a reason too.
    `  http-after-response set-var(txn.refusal) str(${CONNECTION_REFUSAL.badHttpRequest}) if !refused !{ var(txn.dst) -m found }`,
    // The upstream sees the PROXY source, never a client-supplied chain or a spelling of one
    // (servers that map `_` to `-`, CGI-style, read `x_forwarded_for` as `x-forwarded-for`).
    '  http-request del-header ^(x[-_]forwarded[-_]for|forwarded|x[-_]real[-_]ip)$ -m reg',
    `  default_backend ${BACKEND.http}`,
  ];
}

/**
 * PROXY trust on the health listener (`healthCheck.proxyProtocol`): the NLB opens its health
 * checks with a v2 `LOCAL` header, so its subnets must send one (as on the TLS listener, the
 * decision depends on the peer, hence `expect-proxy` instead of `accept-proxy` on the bind).
 * After a `LOCAL` header `src` stays the peer. `healthCheck.headerlessPeers` (the task's own
 * loopback by default: container health checks, the sidecar) ask without a header; anyone else
 * is closed before a byte is read. `tcp-request connection` rules see the direct peer.
 */
function healthProxyLines(config: FleetConfig, p: Paths): string[] {
  if (!config.healthCheck.proxyProtocol) return [];
  const headerless = config.healthCheck.headerlessPeers;
  const others = headerless.length === 0 ? '' : ` !{ src ${headerless.join(' ')} }`;
  return [
    '  # PROXY header from trusted peers (NLB health checks: v2 LOCAL), none from in-task probes',
    `  tcp-request connection reject if !{ src -f ${p.trusted} }${others}`,
    `  tcp-request connection expect-proxy layer4 if { src -f ${p.trusted} }`,
  ];
}

function renderConfig(config: FleetConfig, layout: GatewayLayout, terminate: TerminateRenderOptions): string {
  const p = paths(layout);
  const limits = config.limits;
  const listeners = config.listeners;
  const r = config.resolvers;
  const lines: string[] = [
    `# Rendered by portcullis for fleet ${config.fleet}. Do not edit: the sidecar rewrites it.`,
    'global',
    '  master-worker',
    // No global maxconn: HAProxy sizes it from the file-descriptor limit; each listener has its own.
    // Logs go to a ring the sidecar drains (its stdout), never to HAProxy's own stdout: a
    // non-blocking write to a full pipe drops the line, a ring keeps it until the sidecar reads it.
    `  log ring@${LOG_RING} len ${LOG_LINE_MAX} local0 info`,
    `  stats socket ${layout.adminSocket} mode 600 level admin expose-fd listeners`,
    '  stats timeout 30s',
    `  pidfile ${layout.pidFile}`,
    // Absent: HAProxy runs one thread per CPU it may use (limits.threads sizes it explicitly).
    ...(limits.threads === undefined ? [] : [`  nbthread ${limits.threads}`]),
    // 3.1 added this tunable (2.6 and 3.0 refuse it) and 3.2 warns on every config without it.
    // "normal": the converter returns strings only, so the pre-3.1 boolean quirk never applies.
    '.if version_atleast(3.1)',
    '  tune.lua.bool-sample-conversion normal',
    '.endif',
    `  lua-load-per-thread ${posix.join(layout.root, CLIENT_HELLO_LUA_FILE)}`,
    ...(limits.hardStopAfterMs === null ? [] : [`  hard-stop-after ${ms(limits.hardStopAfterMs)}`]),
    '',
    `ring ${LOG_RING}`,
    '  description "access log, written to stdout by the sidecar"',
    '  format raw',
    `  maxlen ${LOG_LINE_MAX}`,
    `  size ${config.accessLog.bufferBytes}`,
    '  timeout connect 1s',
    // An idle forwarding connection is closed and opened again; unread lines wait in the ring.
    '  timeout server 1h',
    // Only this one reader: unread lines stay in the ring until it has them (RFC 6587 framing).
    `  server sidecar unix@${layout.logSocket} log-proto octet-count`,
    '',
    `resolvers ${RESOLVERS}`,
    ...(r.nameservers.length === 0
      ? ['  parse-resolv-conf']
      : r.nameservers.map((ns, i) => `  nameserver ns${i} ${ns}`)),
    `  accepted_payload_size ${r.acceptedPayloadSize}`,
    `  resolve_retries ${r.retries}`,
    // Also the refresh period of the resolutions render-resolution.ts keeps alive.
    `  timeout resolve ${ms(r.timeoutMs)}`,
    `  timeout retry ${ms(r.timeoutMs)}`,
    `  hold valid ${ms(r.holdValidMs)}`,
    `  hold obsolete ${ms(r.holdValidMs)}`,
    `  hold nx ${ms(r.holdNxMs)}`,
    `  hold other ${ms(r.holdNxMs)}`,
    `  hold refused ${ms(r.holdNxMs)}`,
    `  hold timeout ${ms(r.holdNxMs)}`,
    '',
    'defaults',
    '  log global',
    '  mode tcp',
    `  timeout connect ${ms(limits.connectTimeoutMs)}`,
    `  timeout client ${ms(limits.clientTimeoutMs)}`,
    `  timeout server ${ms(limits.serverTimeoutMs)}`,
    `  timeout tunnel ${ms(limits.tunnelTimeoutMs)}`,
    '',
    ...tlsFrontend(config, p),
    '',
    `backend ${BACKEND.tls}`,
    '  mode tcp',
    // 0.0.0.0:0 connects to the stream's destination, which `set-dst` made the checked address.
    '  server upstream 0.0.0.0:0',
    '',
    ...renderResolutionKeepAlive(config, RESOLVERS),
    ...renderTerminateSections(config, layout, { exact: p.exact, wildcard: p.wildcard }, terminate),
    ...(listeners.verify === null
      ? []
      : renderVerifySection(config, layout, bindLines(config, listeners.verify))),
  ];
  lines.push(
    `backend ${SESSION_TABLE}`,
    // Keys are "<client>@<peer>:<port>" (IPv6 text is at most 45 characters).
    `  stick-table type string len 100 size ${Math.max(1000, config.limits.maxconn * 2)} expire ${ms(limits.tunnelTimeoutMs)} store conn_cur`,
    '',
  );
  if (perSourceLimited(config)) {
    const period = ms(limits.perSource.ratePeriodMs);
    lines.push(
      `backend ${SOURCE_TABLE}`,
      // IPv4 sources are stored IPv4-mapped. An entry in use is never purged, and both listeners
      // together hold at most 2 × maxconn sources, so the table never runs out of room for one.
      `  stick-table type ipv6 size ${Math.max(1000, config.limits.maxconn * 4)} expire ${period} store conn_cur,conn_rate(${period})`,
      '',
    );
  }
  if (listeners.http !== null) {
    lines.push(
      ...httpFrontend(config, p, listeners.http),
      '',
      `backend ${BACKEND.http}`,
      '  mode http',
      '  option forwardfor',
      // Every request connects to its own checked destination; never reuse a server connection.
      '  option http-server-close',
      '  http-reuse never',
      '  server upstream 0.0.0.0:0',
      '',
    );
  }
  lines.push(
    `frontend ${FRONTEND.health}`,
    '  mode http',
    ...bindLines(config, listeners.health),
    '  maxconn 100',
    // Health checks are not logged (each NLB node asks every few seconds); `no log` also keeps
    // out the lines of refused connections and of broken PROXY headers.
    '  no log',
    ...healthProxyLines(config, p),
    `  http-request return status 200 content-type text/plain string ready if { path /healthz } { str(${READY_KEY}),map_str(${p.state},0) -m str 1 }`,
    '  http-request return status 503 content-type text/plain string not-ready if { path /healthz }',
    '  http-request deny deny_status 404',
    '',
  );
  if (listeners.metrics !== null) {
    lines.push(
      `frontend ${FRONTEND.metrics}`,
      '  mode http',
      ...bindLines(config, listeners.metrics),
      '  maxconn 100',
      '  no log',
      '  http-request use-service prometheus-exporter if { path /metrics }',
      '  http-request deny deny_status 404',
      '',
    );
  }
  return lines.join('\n');
}

function routeMaps(routes: readonly Route[]): { exact: string; wildcard: string } {
  const exact: string[] = [];
  const wildcard: string[] = [];
  for (const route of routes) {
    if (route.serverName.startsWith('*.')) wildcard.push(`${route.serverName.slice(2)} ${route.serverName}`);
    else exact.push(`${route.serverName} ${route.serverName}`);
  }
  return { exact: cidrLines(exact), wildcard: cidrLines(wildcard) };
}

/** Renders the allowlist file content (one canonical CIDR per line; empty denies everyone). */
export function renderAllowlist(config: FleetConfig, cidrs: readonly string[]): string {
  const result = normaliseAllowlist(cidrs, config.allowlist);
  if (result.kind === 'invalid') {
    throw new ValidationError(`invalid allowlist:\n  ${result.issues.join('\n  ')}`, { path: 'allowlist' });
  }
  return cidrLines(result.cidrs.map((c: Cidr) => c.text));
}

/**
 * Renders `haproxy.cfg` and every map/ACL file it loads, keyed by path relative to `layout.root`.
 * @throws ValidationError when the allowlist or `ownAddresses` are not valid CIDRs.
 * @example
 *   const { files } = renderGateway(config, { layout: gatewayLayout('/var/run/portcullis'), allowlistCidrs: ['10.0.0.0/8'] });
 */
export function renderGateway(config: FleetConfig, options: RenderOptions): RenderedGateway {
  const { layout } = options;
  const p = paths(layout);
  const maps = routeMaps(config.routes);
  const files: Record<string, RenderedFile> = {
    [rel(layout, layout.config)]: {
      content: renderConfig(config, layout, options.terminate ?? {}),
      mode: FILE_MODE,
    },
    [rel(layout, p.allowlist)]: {
      content: renderAllowlist(config, options.allowlistCidrs ?? []),
      mode: FILE_MODE,
    },
    [rel(layout, p.trusted)]: { content: cidrLines(config.proxyProtocol.trustedPeers), mode: FILE_MODE },
    [rel(layout, layout.verifyPeers)]: { content: cidrLines(config.verify.trustedPeers), mode: FILE_MODE },
    [rel(layout, p.denied)]: {
      content: cidrLines(deniedDestinations(config, options.ownAddresses)),
      mode: FILE_MODE,
    },
    [rel(layout, p.state)]: { content: `${READY_KEY} 0\n`, mode: FILE_MODE },
    [rel(layout, p.connectionErrors)]: { content: renderConnectionErrorsMap(), mode: FILE_MODE },
    [CLIENT_HELLO_LUA_FILE]: { content: CLIENT_HELLO_LUA, mode: FILE_MODE },
    [rel(layout, p.exact)]: { content: maps.exact, mode: FILE_MODE },
    [rel(layout, p.wildcard)]: { content: maps.wildcard, mode: FILE_MODE },
  };
  config.routes.forEach((route, index) => {
    if (route.mode === 'terminate') return;
    files[rel(layout, p.routeAcl(index))] = {
      content: cidrLines(route.allowedDestinations),
      mode: FILE_MODE,
    };
  });
  for (const [path, file] of Object.entries(renderTerminateFiles(config, layout, options.terminate))) {
    files[rel(layout, path)] = file;
  }
  const socketDir = posix.dirname(rel(layout, layout.adminSocket));
  return { files, directories: [...new Set([socketDir, rel(layout, layout.certsDir)])] };
}
