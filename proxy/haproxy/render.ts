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
import { type Cidr, cidrOf, normaliseAllowlist, parseCidr } from '../../lib/allowlist/index.ts';
import {
  BUILT_IN_DENIED_DESTINATIONS,
  type FleetConfig,
  LOOPBACK_DESTINATIONS,
  type Route,
} from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import type { GatewayLayout } from './layout.ts';
import { CLIENT_HELLO_LUA, CLIENT_HELLO_LUA_FILE } from './render-lua.ts';
import { renderResolutionKeepAlive } from './render-resolution.ts';
import {
  hasTerminateRoutes,
  renderTerminateFiles,
  renderTerminateSections,
  TERMINATE,
  TERMINATE_ACL,
  type TerminateRenderOptions,
  terminateRouteRules,
} from './render-terminate.ts';
import { renderVerifySection, VERIFY_FRONTEND } from './render-verify.ts';

/** Proxy section names other parts refer to (runtime API `show sess`, stats, metrics labels). */
export const FRONTEND = {
  tls: 'fe_tls',
  http: 'fe_http',
  health: 'fe_health',
  metrics: 'fe_metrics',
  /** Verification handshakes of the control plane (render-verify.ts); present with terminate routes and verify peers. */
  verify: VERIFY_FRONTEND,
} as const;

export const BACKEND = {
  tls: 'be_tls_passthrough',
  http: 'be_http',
} as const;

/**
 * Stick table that maps each live client session to its PROXY source. HAProxy 2.6's `show sess`
 * prints the direct peer (the NLB), not the address a PROXY header carried, so the sidecar finds
 * sessions of a removed source with `show table <SESSION_TABLE>` (keys `"<client>@<peer>:<port>"`,
 * see `parseSessionKey`) and cuts the matching `show sess` entries (`src=<peer>:<port>`).
 */
export const SESSION_TABLE = 'st_client_sessions';

/** Splits a `SESSION_TABLE` key into the client address and the direct peer endpoint. */
export function parseSessionKey(key: string): { client: string; peer: string; peerPort: number } | undefined {
  const match = /^([^@\s]+)@([^@\s]+):(\d{1,5})$/.exec(key);
  if (!match) return undefined;
  return { client: match[1]!, peer: match[2]!, peerPort: Number(match[3]) };
}

/** The `resolvers` section used by `do-resolve`. */
export const RESOLVERS = 'dns';

/** Key of the state map entry the sidecar flips with `set map <stateMap> ready 1`. */
export const READY_KEY = 'ready';

/** Reasons logged in the `refusal` field of the access log (value of `txn.refusal`). */
export const REFUSAL = {
  untrustedPeer: 'untrusted-peer',
  /** PROXY `LOCAL` (or a header naming the peer itself as the client) followed by traffic. */
  proxyLocal: 'proxy-local',
  sourceNotAllowed: 'source-not-allowed',
  noClientHello: 'no-client-hello',
  clientHelloIncomplete: 'client-hello-incomplete',
  sslv2Hello: 'sslv2-hello',
  notTls: 'not-tls',
  noServerName: 'no-server-name',
  ipLiteral: 'ip-literal',
  invalidServerName: 'invalid-server-name',
  noRoute: 'no-route',
  resolutionFailed: 'resolution-failed',
  destinationDenied: 'destination-denied',
  destinationNotAllowed: 'destination-not-allowed',
  /** The source already holds `limits.perSource.maxConnections` connections. */
  sourceConnectionLimit: 'source-connection-limit',
  /** The source opened more than `limits.perSource.maxConnectionRate` connections in the period. */
  sourceRateLimit: 'source-rate-limit',
} as const;
export type Refusal = (typeof REFUSAL)[keyof typeof REFUSAL];

/** Refusals of the HTTP listener only (logged in `refusal` like those of `REFUSAL`). */
export const HTTP_REFUSAL = {
  /** Methods the gateway never forwards: `CONNECT` (a tunnel to wherever the upstream connects). */
  methodNotAllowed: 'method-not-allowed',
  /** More than one Host value: a comma list, a repeated header (HTTP/2: `:authority` with a comma). */
  invalidHost: 'invalid-host',
} as const;

/**
 * Reasons of the lines HAProxy logs for a connection refused before any rule ran (error-log-format),
 * by its connection error code (`fc_err`, the same numbers on 2.6 and 3.2): a PROXY header that is
 * missing, cut short or malformed, or (code 0 on the HTTP listener) a request HAProxy's own parser
 * refused (`status` 400) or that did not arrive within `timeout http-request` (`status` 408).
 */
export const CONNECTION_REFUSAL = {
  badHttpRequest: 'bad-http-request',
  proxyHeaderClosed: 'proxy-header-closed',
  proxyHeaderTimeout: 'proxy-header-timeout',
  proxyHeaderTruncated: 'proxy-header-truncated',
  proxyHeaderMissing: 'proxy-header-missing',
  proxyHeaderInvalid: 'proxy-header-invalid',
  proxyHeaderUnsupported: 'proxy-header-unsupported',
  /** Any other connection error (the listeners have no other handshake). */
  connectionError: 'connection-error',
} as const;

/** `fc_err` codes (HAProxy's `CO_ER_*`) → reason; unlisted codes log `connection-error`. */
const CONNECTION_ERROR_CODES: ReadonlyArray<readonly [number, string]> = [
  [0, CONNECTION_REFUSAL.badHttpRequest],
  [11, CONNECTION_REFUSAL.proxyHeaderClosed], // CO_ER_PRX_EMPTY: closed before a header
  [12, CONNECTION_REFUSAL.proxyHeaderClosed], // CO_ER_PRX_ABORT: error before a header
  [13, CONNECTION_REFUSAL.proxyHeaderTimeout], // CO_ER_PRX_TIMEOUT
  [14, CONNECTION_REFUSAL.proxyHeaderTruncated], // CO_ER_PRX_TRUNCATED
  [15, CONNECTION_REFUSAL.proxyHeaderMissing], // CO_ER_PRX_NOT_HDR: data that is no PROXY header
  [16, CONNECTION_REFUSAL.proxyHeaderInvalid], // CO_ER_PRX_BAD_HDR: e.g. v2 AF_UNIX/UNSPEC with PROXY
  [17, CONNECTION_REFUSAL.proxyHeaderUnsupported], // CO_ER_PRX_BAD_PROTO
];

/** The ring HAProxy logs into; its one server is the sidecar's log socket. */
export const LOG_RING = 'access_log';

/**
 * Longest log line HAProxy writes (`log … len`, ring `maxlen`); longer lines would be cut and no
 * longer parse. Lines stay far below it: names are at most 255 bytes before JSON escaping.
 */
export const LOG_LINE_MAX = 8192;

/** Stick table of client addresses for the per-source limits (`limits.perSource`). */
export const SOURCE_TABLE = 'st_sources';

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

/** Relative file names of per-route and routing files inside the layout. */
export const ROUTE_FILES = {
  exactMap: 'routes-exact.map',
  wildcardMap: 'routes-wildcard.map',
  allowedAcl: (index: number) => `route-${index}-destinations.acl`,
} as const;

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

function normaliseAll(texts: readonly string[], what: string): string[] {
  const out = new Set<string>();
  for (const text of texts) {
    const parsed = parseCidr(text);
    if (parsed.kind === 'invalid') throw new ValidationError(`${what}: ${parsed.reason}`);
    out.add(parsed.cidr.text);
  }
  return [...out];
}

/** NAT64 well-known prefix (RFC 6052): `64:ff9b::a.b.c.d` reaches `a.b.c.d` through a NAT64 gateway. */
const NAT64_PREFIX = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

/** The `64:ff9b::/96` form of an IPv4 network (HAProxy does not match these against IPv4 entries). */
function nat64Form(cidr: Cidr): string {
  return cidrOf(new Uint8Array([...NAT64_PREFIX, ...cidr.bytes]), 96 + cidr.prefix).text;
}

/** The destinations no route may reach, for this fleet and task (IPv4 ones also in their NAT64 form). */
export function deniedDestinations(config: FleetConfig, ownAddresses: readonly string[] = []): string[] {
  const loopback = new Set<string>(LOOPBACK_DESTINATIONS);
  const builtIns = BUILT_IN_DENIED_DESTINATIONS.filter(
    (c) => !(config.allowLoopbackDestinations && loopback.has(c)),
  );
  const denied = normaliseAll([...builtIns, ...config.deniedDestinations, ...ownAddresses], 'ownAddresses');
  const nat64 = denied.flatMap((text) => {
    const parsed = parseCidr(text);
    return parsed.kind === 'ok' && parsed.cidr.family === 4 ? [nat64Form(parsed.cidr)] : [];
  });
  return [...new Set([...denied, ...nat64])];
}

function bindLines(config: FleetConfig, port: number): string[] {
  return config.listeners.bind.map((address) =>
    address.includes(':') ? `  bind [${address}]:${port} v6only` : `  bind ${address}:${port}`,
  );
}

/**
 * JSON access-log line. HAProxy 2.6 has no JSON encoder for log-format (`%{+json}o` came in
 * 3.0, capabilities.ts `logFormatJsonEncoding`), so the object is spelled out; client-controlled strings go through the `json` converter
 * (at most 255 bytes of them), absent strings print as `-`. Numbers come only from fields that
 * are always set or from variables read with a numeric default.
 */
function logFormat(kind: 'tls' | 'http'): string {
  const fields = [
    '"time":%Ts.%ms',
    '"frontend":"%f"',
    '"client":"%ci"',
    '"client_port":%cp',
    '"peer":"%[fc_src]"',
    '"peer_port":%[fc_src_port]',
    `"${kind === 'tls' ? 'sni' : 'host'}":"%[var(txn.name),bytes(0,255),json(utf8s)]"`,
    '"route":"%[var(txn.route)]"',
    '"mode":"%[var(txn.mode)]"',
    '"upstream":"%[var(txn.dst)]"',
    '"upstream_port":%[var(txn.port,0)]',
    '"bytes_in":%U',
    '"bytes_out":%B',
    '"duration_ms":%Tt',
    '"connect_ms":%Tc',
    '"termination":"%ts"',
    ...(kind === 'http' ? ['"method":"%HM"', '"status":%ST'] : []),
    '"refusal":"%[var(txn.refusal)]"',
  ];
  return `'{${fields.join(',')}}'`;
}

/**
 * JSON line of a connection refused before any rule ran: HAProxy logs these (a PROXY header that
 * is missing or broken; on the HTTP listener a request its parser refused or a request head that
 * timed out) with `error-log-format`, in the same JSON as every other line. `refusal` comes from
 * the connection error code through `connectionErrorsMap`, `error` is HAProxy's own text.
 */
export function errorLogFormat(kind: 'tls' | 'http' | 'terminate', connectionErrorsMap: string): string {
  const fallback = kind === 'terminate' ? 'tls-handshake-failed' : CONNECTION_REFUSAL.connectionError;
  const fields = [
    '"time":%Ts.%ms',
    '"frontend":"%f"',
    '"client":"%ci"',
    '"client_port":%cp',
    // fe_terminate's peer is fe_tls over a unix socket: no address, no port.
    ...(kind === 'terminate' ? [] : ['"peer":"%[fc_src]"', '"peer_port":%[fc_src_port]']),
    '"bytes_in":%U',
    '"duration_ms":%Tt',
    '"termination":"%ts"',
    ...(kind === 'http' ? ['"method":"%HM"', '"status":%ST'] : []),
    `"refusal":"%[fc_err,map_int(${connectionErrorsMap},${fallback})]"`,
    '"error":"%[fc_err_str,json(utf8s)]"',
  ];
  return `'{${fields.join(',')}}'`;
}

/** `fc_err` → reason map file content. */
export function renderConnectionErrorsMap(): string {
  return CONNECTION_ERROR_CODES.map(([code, reason]) => `${code} ${reason}\n`).join('');
}

function accessLogLines(config: FleetConfig, kind: 'tls' | 'http', p: Paths): string[] {
  if (!config.accessLog.enabled) return ['  no log'];
  return [
    `  log-format ${logFormat(kind)}`,
    `  error-log-format ${errorLogFormat(kind, p.connectionErrors)}`,
  ];
}

/** Whether any per-source limit applies (else no source table is rendered or tracked). */
function perSourceLimited(config: FleetConfig): boolean {
  const limits = config.limits.perSource;
  return limits.maxConnections !== null || limits.maxConnectionRate !== null;
}

/**
 * Per-source limits: every connection is tracked by its client address (after the PROXY header,
 * before any content rule, so a slow hello counts from its first moment) in `SOURCE_TABLE`, shared
 * by both listeners; a source over a limit is refused with its reason. A PROXY `LOCAL` connection
 * (an NLB health check) carries no client and is never limited.
 */
function sourceTracking(config: FleetConfig): string[] {
  if (!perSourceLimited(config)) return [];
  return [`  tcp-request session track-sc1 src table ${SOURCE_TABLE}`];
}

function sourceLimitRules(config: FleetConfig, rule: string): string[] {
  const limits = config.limits.perSource;
  const local = config.proxyProtocol.enabled ? ' !pp_local' : '';
  return [
    ...(limits.maxConnections === null
      ? []
      : [
          `  ${rule} set-var(txn.refusal) str(${REFUSAL.sourceConnectionLimit}) if !refused${local} { sc1_conn_cur gt ${limits.maxConnections} }`,
        ]),
    ...(limits.maxConnectionRate === null
      ? []
      : [
          `  ${rule} set-var(txn.refusal) str(${REFUSAL.sourceRateLimit}) if !refused${local} { sc1_conn_rate gt ${limits.maxConnectionRate} }`,
        ]),
  ];
}

interface Paths {
  allowlist: string;
  trusted: string;
  denied: string;
  state: string;
  exact: string;
  wildcard: string;
  routeAcl: (index: number) => string;
  connectionErrors: string;
}

function paths(layout: GatewayLayout): Paths {
  return {
    allowlist: layout.allowlist,
    trusted: layout.trustedProxies,
    denied: layout.deniedDestinations,
    state: layout.stateMap,
    exact: posix.join(layout.mapsDir, ROUTE_FILES.exactMap),
    wildcard: posix.join(layout.mapsDir, ROUTE_FILES.wildcardMap),
    routeAcl: (index) => posix.join(layout.aclDir, ROUTE_FILES.allowedAcl(index)),
    connectionErrors: layout.connectionErrorsMap,
  };
}

/**
 * PROXY trust: only the configured peers (the NLB subnets) must and may send a PROXY header. The
 * bind has no `accept-proxy` so the decision can depend on the peer; after `expect-proxy`, `src`
 * is the carried client address and `fc_src` the direct peer. Other peers are refused by the
 * first content rule rather than at connection level, so that the refusal is logged.
 */
function proxyProtocolLines(config: FleetConfig, p: Paths): string[] {
  if (!config.proxyProtocol.enabled) return [];
  return [
    '  # PROXY protocol: from trusted peers only; after the header `src` is the client, `fc_src` the peer',
    `  tcp-request connection expect-proxy layer4 if { src -f ${p.trusted} }`,
  ];
}

function untrustedPeerRule(config: FleetConfig, rule: string): string[] {
  if (!config.proxyProtocol.enabled) return [];
  return [
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.untrustedPeer}) if !trusted_peer`,
    // LOCAL carries no client, so nothing to check against the allowlist: it is never routed. A
    // trusted peer claiming its own address as the client looks the same and is refused alike.
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.proxyLocal}) if !refused pp_local`,
  ];
}

/**
 * A PROXY `LOCAL` header (NLB health check) carries no client: `src` stays the peer itself.
 * Detected as src == fc_src (2.6 has no fetch for the header's command; an NLB never claims its
 * own address for a client). Such a connection needs no allowlist entry, and on the TLS listener
 * it is closed unlogged when it sends nothing (a TCP health check); it is never routed.
 */
function localAcl(config: FleetConfig, p: Paths, http: boolean): string[] {
  if (!config.proxyProtocol.enabled) return [];
  const rule = http ? 'http-request' : 'tcp-request content';
  return [
    '  acl pp_local src,strcmp(txn.peer) eq 0',
    `  acl trusted_peer fc_src -f ${p.trusted}`,
    `  ${rule} set-var-fmt(txn.peer) "%[fc_src]"`,
  ];
}

function routeAcls(config: FleetConfig): string[] {
  return config.routes.map(
    (route, index) => `  acl route_${index} var(txn.route) -m str ${route.serverName}`,
  );
}

/** Rules shared by both listeners after the name is known: route → resolve → guard → set-dst. */
function routingRules(config: FleetConfig, p: Paths, rule: string, kind: 'tls' | 'http'): string[] {
  const lines: string[] = [
    '  # route table: exact names first, then *.suffix (one label) through the parent name',
    `  ${rule} set-var(txn.route) var(txn.name),map_str(${p.exact}) if !refused`,
    `  ${rule} set-var(txn.route) var(txn.name),field(2,.,0),map_str(${p.wildcard}) if !refused !{ var(txn.route) -m found }`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.noRoute}) if !refused !{ var(txn.route) -m found }`,
  ];
  config.routes.forEach((route, index) => {
    if (route.mode === 'terminate') {
      lines.push(...terminateRouteRules(route, index, rule, kind, REFUSAL.noRoute));
      return;
    }
    const port = kind === 'tls' ? route.upstream.port : route.upstream.httpPort;
    const host = route.upstream.host === undefined ? 'var(txn.name)' : `str(${route.upstream.host})`;
    lines.push(
      `  # route ${index}: ${route.serverName} → ${route.upstream.host ?? '<name>'}:${port ?? '-'} (${route.mode})`,
    );
    if (port === null) {
      lines.push(`  ${rule} set-var(txn.refusal) str(${REFUSAL.noRoute}) if !refused route_${index}`);
      return;
    }
    lines.push(
      `  ${rule} set-var(txn.mode) str(${route.mode}) if !refused route_${index}`,
      `  ${rule} set-var(txn.port) int(${port}) if !refused route_${index}`,
      `  ${rule} do-resolve(txn.dst,${RESOLVERS},${route.addressFamily}) ${host} if !refused route_${index}`,
    );
  });
  // Terminate routes connect to a configured upstream: nothing resolved, nothing to guard.
  const passthrough = kind === 'tls' && hasTerminateRoutes(config) ? ' !terminate' : '';
  lines.push(
    // Exact names answer from the resolution render-resolution.ts keeps alive; every answer,
    // cached or not, goes through the guard below.
    '  # one resolved address per connection; the checked address is the one connected to',
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.resolutionFailed}) if !refused${passthrough} !{ var(txn.dst) -m found }`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.destinationDenied}) if !refused${passthrough} { var(txn.dst) -m ip -f ${p.denied} }`,
  );
  config.routes.forEach((route, index) => {
    if (route.mode === 'terminate') return;
    lines.push(
      `  ${rule} set-var(txn.refusal) str(${REFUSAL.destinationNotAllowed}) if !refused route_${index} !{ var(txn.dst) -m ip -f ${p.routeAcl(index)} }`,
    );
  });
  return lines;
}

/** Name sanity shared by both listeners: IP literals in any spelling, then DNS syntax. */
function nameRules(rule: string, missing: string): string[] {
  return [
    `  ${rule} set-var(txn.refusal) str(${missing}) if !refused !has_name`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.ipLiteral}) if !refused ip_literal`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.invalidServerName}) if !refused !name_valid`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.invalidServerName}) if !refused !name_valid_length`,
  ];
}

const NAME_ACLS = [
  // `:`/`[` (IPv6, host:port) or a numeric last label: 10.0.0.1, 127.1, 0x7f.1, 0177.0.0.1, 2130706433
  '  acl ip_literal var(txn.name) -m sub : [ ]',
  '  acl ip_literal var(txn.name) -m reg (^|[.])(0x[0-9a-f]*|[0-9]+)$',
  // Labels of 1–63 characters, at most 253 in all (longer names fail in the resolver, or worse).
  '  acl name_valid var(txn.name) -m reg ^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?[.])+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$',
  '  acl name_valid_length var(txn.name) -m len 1:253',
  '  acl refused var(txn.refusal) -m found',
  '  acl has_name var(txn.name) -m len 1:',
];

function sessionTracking(rule: string): string[] {
  return [
    `  ${rule} set-var-fmt(txn.session_key) "%[src]@%[fc_src]:%[fc_src_port]"`,
    `  ${rule} track-sc0 var(txn.session_key) table ${SESSION_TABLE}`,
  ];
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
    ...accessLogLines(config, 'tls', p),
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
    ...accessLogLines(config, 'http', p),
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
