/**
 * The verification listener (HAProxy 2.6 syntax): where the control plane's VerifyTask reads,
 * with a real TLS handshake, the certificate each terminate route serves.
 *
 * Why a listener of its own. fe_tls admits only `proxyProtocol.trustedPeers` (the NLB subnets),
 * and those must send a PROXY header carrying an allowlisted client. The control plane's
 * functions run in other subnets and are nobody's client; routing them through fe_tls would mean
 * trusting their subnets to claim any client address, or allowlisting them for all traffic.
 *
 *   control plane ──TLS, no PROXY header──▶ fe_verify (`listeners.verify`)
 *     peer outside verify-peers.acl: refused before a byte of TLS (`tcp-request connection`)
 *     handshake with the terminate crt-list ──▶ session closed (`tcp-request session reject`)
 *
 * What it serves. The bind loads the very crt-list file fe_terminate loads. HAProxy keeps one
 * certificate store per file, and every bind line that references it holds an instance of it:
 * `set/commit ssl cert` (and `add ssl crt-list`) update them all in one commit, so a handshake
 * here shows exactly what clients get, with nothing more for the sidecar to apply. The crt-list
 * lines ask for client certificates with `verify optional` (strict routes too, see
 * render-terminate.ts), and the bind ignores verification errors: a verifier completes the
 * handshake with or without a client certificate of its own.
 *
 * What it does not do. `tcp-request session` rules run once the handshake has completed; the one
 * rule here rejects every session, so no stream is ever created: no backend, no upstream
 * connection, no route counters (st_terminate), no access-log line (a verification is not
 * traffic, and the control plane logs its own verdict). HAProxy's per-frontend counters still
 * count refused peers and closed sessions (`haproxy_frontend_denied_connections_total`,
 * `haproxy_frontend_denied_sessions_total` on the metrics listener).
 */
import type { FleetConfig } from '../../lib/config/index.ts';
import type { GatewayLayout } from './layout.ts';
import { hasTerminateRoutes, terminateBindSsl, terminatePaths } from './render-terminate.ts';

/** The verification frontend's name (stats, metrics labels). */
export const VERIFY_FRONTEND = 'fe_verify';

/** Connections a verification listener holds at once: a few per control-plane run, never traffic. */
const VERIFY_MAXCONN = 100;

/**
 * Whether `fe_verify` is rendered: a port is set, some peer may use it, and there is a terminate
 * route whose certificate it could show (passthrough routes have none on the gateway).
 */
export function verifyListenerEnabled(config: FleetConfig): boolean {
  return (
    config.listeners.verify !== null && config.verify.trustedPeers.length > 0 && hasTerminateRoutes(config)
  );
}

/**
 * `frontend fe_verify`, or nothing when {@link verifyListenerEnabled} is false.
 * @param binds the `bind` lines of the verify port (addresses as every listener binds them).
 */
export function renderVerifySection(
  config: FleetConfig,
  layout: GatewayLayout,
  binds: readonly string[],
): string[] {
  if (!verifyListenerEnabled(config)) return [];
  const ssl = terminateBindSsl(terminatePaths(layout));
  return [
    `frontend ${VERIFY_FRONTEND}`,
    '  mode tcp',
    ...binds.map((bind) => `${bind} ${ssl}`),
    `  maxconn ${VERIFY_MAXCONN}`,
    // A verifier's handshake is as prompt as a client's ClientHello; a stalled one frees its slot.
    `  timeout client ${config.limits.inspectDelayMs}ms`,
    '  no log',
    '  # control-plane peers only, straight from the peer address (no PROXY header on this port)',
    `  tcp-request connection reject if !{ src -f ${layout.verifyPeers} }`,
    '  # the handshake showed the certificate; nothing is ever forwarded',
    '  tcp-request session reject',
    '',
  ];
}
