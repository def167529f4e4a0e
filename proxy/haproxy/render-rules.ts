/**
 * The rules both listeners share, in the order they run: PROXY trust, per-source limits, the
 * source allowlist, route lookup and name checks, the destination guard, session tracking. Each
 * returns configuration lines for `renderConfig` (render.ts) to place.
 */
import { posix } from 'node:path';
import { type Cidr, cidrOf, parseCidr } from '../../lib/allowlist/index.ts';
import {
  BUILT_IN_DENIED_DESTINATIONS,
  type FleetConfig,
  LOOPBACK_DESTINATIONS,
} from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import type { GatewayLayout } from './layout.ts';
import { REFUSAL, RESOLVERS, ROUTE_FILES, SESSION_TABLE, SOURCE_TABLE } from './render-names.ts';
import { hasTerminateRoutes, terminateRouteRules } from './render-terminate.ts';
/** Whether any per-source limit applies (else no source table is rendered or tracked). */
export function perSourceLimited(config: FleetConfig): boolean {
  const limits = config.limits.perSource;
  return limits.maxConnections !== null || limits.maxConnectionRate !== null;
}

/**
 * Per-source limits: every connection is tracked by its client address (after the PROXY header,
 * before any content rule, so a slow hello counts from its first moment) in `SOURCE_TABLE`, shared
 * by both listeners; a source over a limit is refused with its reason. A PROXY `LOCAL` connection
 * (an NLB health check) carries no client and is never limited.
 */
export function sourceTracking(config: FleetConfig): string[] {
  if (!perSourceLimited(config)) return [];
  return [`  tcp-request session track-sc1 src table ${SOURCE_TABLE}`];
}

export function sourceLimitRules(config: FleetConfig, rule: string): string[] {
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

export interface Paths {
  allowlist: string;
  trusted: string;
  denied: string;
  state: string;
  exact: string;
  wildcard: string;
  routeAcl: (index: number) => string;
  connectionErrors: string;
}

export function paths(layout: GatewayLayout): Paths {
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
export function proxyProtocolLines(config: FleetConfig, p: Paths): string[] {
  if (!config.proxyProtocol.enabled) return [];
  return [
    '  # PROXY protocol: from trusted peers only; after the header `src` is the client, `fc_src` the peer',
    `  tcp-request connection expect-proxy layer4 if { src -f ${p.trusted} }`,
  ];
}

export function untrustedPeerRule(config: FleetConfig, rule: string): string[] {
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
export function localAcl(config: FleetConfig, p: Paths, http: boolean): string[] {
  if (!config.proxyProtocol.enabled) return [];
  const rule = http ? 'http-request' : 'tcp-request content';
  return [
    '  acl pp_local src,strcmp(txn.peer) eq 0',
    `  acl trusted_peer fc_src -f ${p.trusted}`,
    `  ${rule} set-var-fmt(txn.peer) "%[fc_src]"`,
  ];
}

export function routeAcls(config: FleetConfig): string[] {
  return config.routes.map(
    (route, index) => `  acl route_${index} var(txn.route) -m str ${route.serverName}`,
  );
}

/** Rules shared by both listeners after the name is known: route → resolve → guard → set-dst. */
export function routingRules(config: FleetConfig, p: Paths, rule: string, kind: 'tls' | 'http'): string[] {
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

export function normaliseAll(texts: readonly string[], what: string): string[] {
  const out = new Set<string>();
  for (const text of texts) {
    const parsed = parseCidr(text);
    if (parsed.kind === 'invalid') throw new ValidationError(`${what}: ${parsed.reason}`);
    out.add(parsed.cidr.text);
  }
  return [...out];
}

/** NAT64 well-known prefix (RFC 6052): `64:ff9b::a.b.c.d` reaches `a.b.c.d` through a NAT64 gateway. */
export const NAT64_PREFIX = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

/** The `64:ff9b::/96` form of an IPv4 network (HAProxy does not match these against IPv4 entries). */
export function nat64Form(cidr: Cidr): string {
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

/** Name sanity shared by both listeners: IP literals in any spelling, then DNS syntax. */
export function nameRules(rule: string, missing: string): string[] {
  return [
    `  ${rule} set-var(txn.refusal) str(${missing}) if !refused !has_name`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.ipLiteral}) if !refused ip_literal`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.invalidServerName}) if !refused !name_valid`,
    `  ${rule} set-var(txn.refusal) str(${REFUSAL.invalidServerName}) if !refused !name_valid_length`,
  ];
}

export const NAME_ACLS = [
  // `:`/`[` (IPv6, host:port) or a numeric last label: 10.0.0.1, 127.1, 0x7f.1, 0177.0.0.1, 2130706433
  '  acl ip_literal var(txn.name) -m sub : [ ]',
  '  acl ip_literal var(txn.name) -m reg (^|[.])(0x[0-9a-f]*|[0-9]+)$',
  // Labels of 1–63 characters, at most 253 in all (longer names fail in the resolver, or worse).
  '  acl name_valid var(txn.name) -m reg ^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?[.])+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$',
  '  acl name_valid_length var(txn.name) -m len 1:253',
  '  acl refused var(txn.refusal) -m found',
  '  acl has_name var(txn.name) -m len 1:',
];

export function sessionTracking(rule: string): string[] {
  return [
    `  ${rule} set-var-fmt(txn.session_key) "%[src]@%[fc_src]:%[fc_src_port]"`,
    `  ${rule} track-sc0 var(txn.session_key) table ${SESSION_TABLE}`,
  ];
}
