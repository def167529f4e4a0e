/**
 * The terminate half of the gateway (HAProxy 2.6 syntax): TLS ended on the gateway for the
 * routes with `mode: terminate`, sharing the TLS port with passthrough routes.
 *
 *   fe_tls (SNI read, allowlist, PROXY trust) ── terminate SNI ──▶ be_terminate
 *     ──unix socket, send-proxy-v2 (the client address survives)──▶ fe_terminate
 *        `ssl crt-list`: one line per route (certificate, client verification, CA file, CRL, SNI)
 *        per-route client-certificate checks and counters ──▶ be_term_<i>: app on loopback in
 *        clear, or re-encrypted with a client certificate (origination)
 *
 * Client verification. Every line asks with `verify optional` (or `none`) and the bind ignores
 * verification errors (`ca-ignore-err all crt-ignore-err all`); the decision is then taken by
 * `tcp-request content` rules on `ssl_c_used`, `ssl_c_verify`, `ssl_c_ca_err` and `ssl_c_err`.
 * With `verify required` OpenSSL would refuse inside the handshake, before any rule runs, and
 * HAProxy 2.6 has no way to count why (no per-reason handshake error fetches or logs before
 * 3.0); deciding in rules makes every refusal countable and logged. A refused client sees the
 * handshake complete and the connection closed, exactly what a TLS 1.3 client sees for a
 * `verify required` refusal too (the server's alert arrives after the client's Finished).
 *
 * SANs. HAProxy 2.6 has no fetch for a client certificate's subjectAltName (only `ssl_c_s_dn`
 * and `ssl_c_der`). A trusted SAN is therefore matched as its DER encoding inside the verified
 * certificate: `ssl_c_der,hex -m sub` with the hex of the GeneralName (`[2] dNSName` = 0x82 or
 * `[6] uniformResourceIdentifier` = 0x86, then the DER length, then the name). The tag and length
 * prefix keep it from matching the same text in the subject; the check runs only on
 * certificates that verified against the trust bundle, so the bytes were signed by a trusted CA.
 * Subjects are compared exactly with `ssl_c_s_dn` (OpenSSL's one-line form, `/CN=x/O=y`).
 *
 * Counters. `st_terminate` is a stick table keyed by route name that stores `gpc(5)`; each
 * connection to fe_terminate tracks its route (`track-sc0`) and increments one general-purpose
 * counter per event (`sc-inc-gpc(<idx>,0)`, HAProxy ≥ 2.5). The sidecar reads the table with
 * `show table st_terminate` and exposes the counters on its `/metrics` in the spirit of Envoy's
 * `ssl.handshake`, `ssl.no_certificate`, `ssl.fail_verify_no_cert`, `ssl.fail_verify_san`
 * (plus `fail_verify_error` for a certificate that does not verify). The table has no expiry
 * (one entry per route), so the counters live as long as the worker: they restart at 0 after a
 * reload or restart, like any Prometheus counter of a restarted process.
 */
import { posix } from 'node:path';
import type { FleetConfig, TerminateRoute } from '../../lib/config/index.ts';
import { isIpLiteral } from '../../lib/config/index.ts';
import type { GatewayLayout } from './layout.ts';
import type { RenderedFile } from './render.ts';
import { errorLogFormat } from './render-log.ts';

/** Section names of the terminate half (runtime API `show table`, `show sess`, metrics labels). */
export const TERMINATE = {
  /** fe_tls sends terminate SNIs here; its one server is the internal TLS frontend's socket. */
  backend: 'be_terminate',
  frontend: 'fe_terminate',
  /** Stick table of per-route TLS counters. */
  table: 'st_terminate',
  routeBackend: (index: number) => `be_term_${index}`,
} as const;

/** Index of each counter in `st_terminate`'s `gpc` array (`gpc<idx>` in `show table`). */
export const TLS_COUNTER = {
  /** A TLS handshake completed with the gateway for the route. */
  handshake: 0,
  /** The client presented no certificate (counted for every client auth mode). */
  noCertificate: 1,
  /** Refused: no client certificate on a `strict` route. */
  failVerifyNoCert: 2,
  /** Refused: the client certificate did not verify (wrong CA, expired, revoked). */
  failVerifyError: 3,
  /** Refused: the certificate verified but carries none of the trusted SANs/subjects. */
  failVerifySan: 4,
} as const;
export type TlsCounter = keyof typeof TLS_COUNTER;

/** Values of `txn.refusal` set by fe_terminate (logged in its access log). */
export const TERMINATE_REFUSAL = {
  noClientCertificate: 'no-client-certificate',
  clientCertificateInvalid: 'client-certificate-invalid',
  clientCertificateUntrusted: 'client-certificate-untrusted',
  notTerminateRoute: 'not-terminate-route',
} as const;

/** What the renderer needs to know beyond the fleet config. */
export interface TerminateRenderOptions {
  /** Whether the trust secret carries a CRL: `crl-file` is referenced only then (HAProxy needs the file to exist). */
  crl?: boolean;
}

/** Files of the terminate half. Certificates, keys, CA bundle and CRL are written by the sidecar (0600). */
export interface TerminatePaths {
  socket: string;
  crtList: string;
  trust: string;
  crl: string;
  certificate: (name: string) => string;
  sans: (index: number) => string;
  subjects: (index: number) => string;
}

export function terminatePaths(layout: GatewayLayout): TerminatePaths {
  return {
    socket: posix.join(posix.dirname(layout.adminSocket), 'terminate.sock'),
    crtList: posix.join(layout.certsDir, 'terminate.crtlist'),
    trust: posix.join(layout.certsDir, 'trust.pem'),
    crl: posix.join(layout.certsDir, 'crl.pem'),
    certificate: (name) => posix.join(layout.certsDir, `${name}.pem`),
    sans: (index) => posix.join(layout.aclDir, `terminate-${index}-sans.lst`),
    subjects: (index) => posix.join(layout.aclDir, `terminate-${index}-subjects.lst`),
  };
}

/** The terminate routes with their index in `config.routes` (rules and files are keyed by it). */
export function terminateRoutes(config: FleetConfig): { route: TerminateRoute; index: number }[] {
  const out: { route: TerminateRoute; index: number }[] = [];
  config.routes.forEach((route, index) => {
    if (route.mode === 'terminate') out.push({ route, index });
  });
  return out;
}

export function hasTerminateRoutes(config: FleetConfig): boolean {
  return config.routes.some((route) => route.mode === 'terminate');
}

/** Whether HAProxy loads the trust bundle (`ca-file`) at all: a client-verifying route or an originating one. */
export function trustReferenced(config: FleetConfig): boolean {
  return terminateRoutes(config).some(
    ({ route }) => route.clientAuth !== 'none' || route.upstream.kind === 'originate',
  );
}

/** fe_tls: the ACL that says "this connection goes to the internal TLS frontend". */
export const TERMINATE_ACL = '  acl terminate var(txn.mode) -m str terminate';

/**
 * fe_tls / fe_http rules for one terminate route: on the TLS listener it is marked for
 * be_terminate (no resolution, no destination guard: the upstream is configured, not named by
 * the client); the HTTP listener has no TLS to end, so the name has no route there.
 */
export function terminateRouteRules(
  route: TerminateRoute,
  index: number,
  rule: string,
  kind: 'tls' | 'http',
  noRoute: string,
): string[] {
  if (kind === 'http') {
    return [
      `  # route ${index}: ${route.serverName} → TLS only (terminate)`,
      `  ${rule} set-var(txn.refusal) str(${noRoute}) if !refused route_${index}`,
    ];
  }
  return [
    `  # route ${index}: ${route.serverName} → ${TERMINATE.frontend} (terminate)`,
    `  ${rule} set-var(txn.mode) str(terminate) if !refused route_${index}`,
  ];
}

/** DER length octets (short form below 128, long form above). */
function derLength(length: number): string {
  if (length < 0x80) return length.toString(16).padStart(2, '0');
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return [0x80 | bytes.length, ...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The hex HAProxy's `ssl_c_der,hex` shows for one SAN: a URI (`scheme:…`) as
 * `[6] uniformResourceIdentifier`, anything else as `[2] dNSName` (lower-cased, as issued).
 */
export function sanDerPattern(san: string): string {
  const uri = /^[a-z][a-z0-9+.-]*:/i.test(san);
  const text = uri ? san : san.toLowerCase();
  const bytes = Buffer.from(text, 'ascii');
  return `${uri ? '86' : '82'}${derLength(bytes.length)}${bytes.toString('hex')}`.toUpperCase();
}

function verifyOption(route: TerminateRoute): string {
  return route.clientAuth === 'none' ? 'none' : 'optional';
}

/** One crt-list line per terminate route (the first line is also the default certificate). */
export function renderCrtList(
  config: FleetConfig,
  layout: GatewayLayout,
  options: TerminateRenderOptions = {},
): string {
  const p = terminatePaths(layout);
  return terminateRoutes(config)
    .map(({ route }) => {
      const ssl =
        route.clientAuth === 'none'
          ? ['verify none']
          : [
              `verify ${verifyOption(route)}`,
              `ca-file ${p.trust}`,
              ...(options.crl ? [`crl-file ${p.crl}`] : []),
            ];
      return `${p.certificate(route.certificate)} [${ssl.join(' ')}] ${route.serverName}\n`;
    })
    .join('');
}

function logFormat(): string {
  const fields = [
    '"time":%Ts.%ms',
    '"frontend":"%f"',
    '"client":"%ci"',
    '"client_port":%cp',
    '"sni":"%[ssl_fc_sni,json(utf8s)]"',
    '"route":"%[var(txn.route)]"',
    '"mode":"terminate"',
    '"tls_version":"%[ssl_fc_protocol]"',
    '"client_cert":%[ssl_c_used]',
    '"client_subject":"%[ssl_c_s_dn,json(utf8s)]"',
    '"client_verify":%[ssl_c_verify]',
    '"upstream":"%si"',
    '"upstream_port":"%sp"',
    '"bytes_in":%U',
    '"bytes_out":%B',
    '"duration_ms":%Tt',
    '"termination":"%ts"',
    '"refusal":"%[var(txn.refusal)]"',
  ];
  return `'{${fields.join(',')}}'`;
}

function upstreamServer(route: TerminateRoute, p: TerminatePaths, options: TerminateRenderOptions): string {
  const upstream = route.upstream;
  if (upstream.kind === 'local') {
    const address = upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host;
    return `  server local ${address}:${upstream.port}`;
  }
  const ip = isIpLiteral(upstream.host);
  const address = upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host;
  const name = upstream.serverName ?? (ip ? undefined : upstream.host.toLowerCase());
  const words = [
    `  server upstream ${address}:${upstream.port}`,
    'ssl',
    `crt ${p.certificate(upstream.clientCertificate)}`,
    `ca-file ${p.trust}`,
    ...(options.crl ? [`crl-file ${p.crl}`] : []),
    'verify required',
    ...(name === undefined ? [] : [`sni str(${name})`, `verifyhost ${name}`]),
    // A name is resolved when HAProxy starts (libc) and kept; it is configured, not client input.
    ...(ip ? [] : ['init-addr last,libc,none']),
  ];
  return words.join(' ');
}

/**
 * The TLS words of every bind that serves the terminate certificates (fe_terminate and
 * fe_verify): one crt-list file, so both present the same certificates with the same versions.
 */
export function terminateBindSsl(p: TerminatePaths): string {
  return `ssl crt-list ${p.crtList} ssl-min-ver TLSv1.2 ca-ignore-err all crt-ignore-err all`;
}

/** `be_terminate`, `fe_terminate`, one backend per route and the counter table. Empty without terminate routes. */
export function renderTerminateSections(
  config: FleetConfig,
  layout: GatewayLayout,
  maps: { exact: string; wildcard: string },
  options: TerminateRenderOptions = {},
): string[] {
  const routes = terminateRoutes(config);
  if (routes.length === 0) return [];
  const p = terminatePaths(layout);
  const c = TLS_COUNTER;
  const r = TERMINATE_REFUSAL;
  const lines: string[] = [
    `backend ${TERMINATE.backend}`,
    '  mode tcp',
    // PROXY v2 carries the client address (and port) into the internal frontend's logs and rules.
    `  server terminate unix@${p.socket} send-proxy-v2`,
    '',
    `backend ${TERMINATE.table}`,
    `  stick-table type string len 256 size ${Math.max(16, routes.length * 2)} store gpc(5)`,
    '',
    `frontend ${TERMINATE.frontend}`,
    '  mode tcp',
    `  bind unix@${p.socket} mode 600 accept-proxy ${terminateBindSsl(p)}`,
    `  maxconn ${config.limits.maxconn}`,
    // A handshake that fails is logged in JSON too (refusal tls-handshake-failed, HAProxy's error).
    ...(config.accessLog.enabled
      ? [
          `  log-format ${logFormat()}`,
          `  error-log-format ${errorLogFormat('terminate', layout.connectionErrorsMap)}`,
        ]
      : ['  no log']),
    '  acl refused var(txn.refusal) -m found',
    '  acl cert_used ssl_c_used',
    // All three: ssl_c_verify is OpenSSL's last error; ssl_c_ca_err/ssl_c_err the first ignored ones.
    '  acl cert_valid ssl_c_verify eq 0',
    '  acl cert_ca_ok ssl_c_ca_err eq 0',
    '  acl cert_leaf_ok ssl_c_err eq 0',
    ...routes.map(({ route, index }) => `  acl t_route_${index} var(txn.route) -m str ${route.serverName}`),
    '  tcp-request content set-var(txn.name) ssl_fc_sni,lower,regsub([.]$,)',
    `  tcp-request content set-var(txn.route) var(txn.name),map_str(${maps.exact})`,
    `  tcp-request content set-var(txn.route) var(txn.name),field(2,.,0),map_str(${maps.wildcard}) if !{ var(txn.route) -m found }`,
    `  tcp-request content set-var(txn.refusal) str(${r.notTerminateRoute}) if ${routes.map(({ index }) => `!t_route_${index}`).join(' ')}`,
    '  tcp-request content reject if refused',
    `  tcp-request content track-sc0 var(txn.route) table ${TERMINATE.table}`,
    `  tcp-request content sc-inc-gpc(${c.handshake},0)`,
    `  tcp-request content sc-inc-gpc(${c.noCertificate},0) if !cert_used`,
  ];
  for (const { route, index } of routes) {
    lines.push(`  # route ${index}: ${route.serverName}, client certificate ${route.clientAuth}`);
    if (route.clientAuth === 'none') continue;
    if (route.clientAuth === 'strict') {
      lines.push(
        `  tcp-request content set-var(txn.refusal) str(${r.noClientCertificate}) if !refused t_route_${index} !cert_used`,
      );
    }
    for (const check of ['!cert_valid', '!cert_ca_ok', '!cert_leaf_ok']) {
      lines.push(
        `  tcp-request content set-var(txn.refusal) str(${r.clientCertificateInvalid}) if !refused t_route_${index} cert_used ${check}`,
      );
    }
    const trusted = route.trustedClients;
    if (trusted !== undefined && (trusted.sans.length > 0 || trusted.subjects.length > 0)) {
      const conditions = [
        ...(trusted.sans.length > 0 ? [`!{ ssl_c_der,hex -m sub -f ${p.sans(index)} }`] : []),
        ...(trusted.subjects.length > 0 ? [`!{ ssl_c_s_dn -m str -f ${p.subjects(index)} }`] : []),
      ];
      lines.push(
        `  tcp-request content set-var(txn.refusal) str(${r.clientCertificateUntrusted}) if !refused t_route_${index} cert_used ${conditions.join(' ')}`,
      );
    }
  }
  lines.push(
    `  tcp-request content sc-inc-gpc(${c.failVerifyNoCert},0) if { var(txn.refusal) -m str ${r.noClientCertificate} }`,
    `  tcp-request content sc-inc-gpc(${c.failVerifyError},0) if { var(txn.refusal) -m str ${r.clientCertificateInvalid} }`,
    `  tcp-request content sc-inc-gpc(${c.failVerifySan},0) if { var(txn.refusal) -m str ${r.clientCertificateUntrusted} }`,
    '  tcp-request content reject if refused',
    ...routes.map(({ index }) => `  use_backend ${TERMINATE.routeBackend(index)} if t_route_${index}`),
    '',
  );
  for (const { route, index } of routes) {
    lines.push(
      `backend ${TERMINATE.routeBackend(index)}`,
      '  mode tcp',
      upstreamServer(route, p, options),
      '',
    );
  }
  return lines;
}

/** The crt-list and the trusted SAN/subject pattern files, keyed by absolute path. */
export function renderTerminateFiles(
  config: FleetConfig,
  layout: GatewayLayout,
  options: TerminateRenderOptions = {},
): Record<string, RenderedFile> {
  const routes = terminateRoutes(config);
  if (routes.length === 0) return {};
  const p = terminatePaths(layout);
  const files: Record<string, RenderedFile> = {
    [p.crtList]: { content: renderCrtList(config, layout, options), mode: 0o644 },
  };
  for (const { route, index } of routes) {
    const sans = route.trustedClients?.sans ?? [];
    const subjects = route.trustedClients?.subjects ?? [];
    if (sans.length > 0)
      files[p.sans(index)] = { content: sans.map((s) => `${sanDerPattern(s)}\n`).join(''), mode: 0o644 };
    if (subjects.length > 0)
      files[p.subjects(index)] = { content: subjects.map((s) => `${s}\n`).join(''), mode: 0o644 };
  }
  return files;
}
