/**
 * The names the rendered configuration shares with the code that reads it: proxy sections (the
 * runtime API's `show sess`, stats, metric labels), stick tables, the state map key, the refusal
 * reasons its log lines carry, the log ring and the route files' names.
 */
import { VERIFY_FRONTEND } from './render-verify.ts';

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

/** The ring HAProxy logs into; its one server is the sidecar's log socket. */
export const LOG_RING = 'access_log';

/**
 * Longest log line HAProxy writes (`log … len`, ring `maxlen`); longer lines would be cut and no
 * longer parse. Lines stay far below it: names are at most 255 bytes before JSON escaping.
 */
export const LOG_LINE_MAX = 8192;

/** Stick table of client addresses for the per-source limits (`limits.perSource`). */
export const SOURCE_TABLE = 'st_sources';

/** Relative file names of per-route and routing files inside the layout. */
export const ROUTE_FILES = {
  exactMap: 'routes-exact.map',
  wildcardMap: 'routes-wildcard.map',
  allowedAcl: (index: number) => `route-${index}-destinations.acl`,
} as const;
