/**
 * The gateway's log lines: one JSON object per connection or request (`log-format`) and per
 * connection refused before any rule ran (`error-log-format`, its reason from `fc_err` through
 * the connection-errors map). Every line goes into the ring the sidecar's log sink drains.
 */
import type { FleetConfig } from '../../lib/config/index.ts';
import { CONNECTION_REFUSAL } from './render-names.ts';

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

export function accessLogLines(
  config: FleetConfig,
  kind: 'tls' | 'http',
  connectionErrorsMap: string,
): string[] {
  if (!config.accessLog.enabled) return ['  no log'];
  return [
    `  log-format ${logFormat(kind)}`,
    `  error-log-format ${errorLogFormat(kind, connectionErrorsMap)}`,
  ];
}
