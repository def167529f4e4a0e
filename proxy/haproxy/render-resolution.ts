/**
 * Resolution keep-alive: one DNS query per route name and refresh period instead of one per
 * connection.
 *
 * HAProxy 2.6's `do-resolve` answers from its cache only through a resolution that still has a
 * requester, and a `do-resolve` unlinks as soon as it has its answer: `hold valid` then only
 * helps connections that overlap, and every other new connection sends a query (in a VPC, the
 * resolver's 1024 packets/s per interface caps a task at roughly 1000 new connections/s before
 * `resolution-failed` refusals start). A server with `resolvers` stays linked to the resolution
 * of its name and record type for the process' lifetime, and the resolvers task re-runs it every
 * `timeout resolve`; `do-resolve` for the same name and preferred family then answers from it
 * while it is younger than `hold valid`.
 *
 * Nothing else changes: the destination guard still checks the address of every connection, the
 * address a connection goes to is still the one checked (`set-dst`), and a DNS change is seen at
 * the next refresh. Names known in advance only: exact route names and fixed `upstream.host`s; a
 * wildcard route that resolves the client's SNI keeps one query per connection.
 *
 * The servers live in a backend no rule routes to, that rejects anything that would reach it
 * anyway, without health checks (no `check`) and without logs (`no log`: their address and
 * state changes stay out of the JSON access log on stdout; HAProxy still reports them on
 * stderr). They appear in `show stat`, `show servers state` and the `haproxy_server_*` metrics
 * under `proxy="be_resolution_keepalive"` with no sessions ever; their address is informative
 * only (HAProxy 2.6 was seen to leave it behind an answer `do-resolve` already used).
 */
import type { FleetConfig } from '../../lib/config/index.ts';

/** The backend holding the keep-alive servers; nothing routes to it. */
export const RESOLUTION_KEEPALIVE_BACKEND = 'be_resolution_keepalive';

/** One name kept resolved, as the `do-resolve` rules ask for it. */
export interface KeptResolution {
  /** Server name in {@link RESOLUTION_KEEPALIVE_BACKEND}: `route<index>` of the first route asking for it. */
  server: string;
  /** The DNS name `do-resolve` resolves for that route. */
  name: string;
  /** The record type asked for first; resolutions are shared per name and preferred family. */
  family: 'ipv4' | 'ipv6';
  /** The route's TLS port (never connected to; a server line needs one). */
  port: number;
}

/**
 * Whether kept resolutions help with these resolver settings. A kept resolution is refreshed
 * every `timeout resolve` (`timeoutMs`); `do-resolve` uses it only while it is younger than
 * `hold valid`. With `hold valid` ≤ `timeout resolve` a connection would find it expired and wait
 * for the next refresh instead of querying at once, so nothing is kept then (`holdValidMs: 0`
 * means "never reuse an answer" and keeps one query per connection, as before).
 */
export function keepsResolutions(config: FleetConfig): boolean {
  return config.resolvers.holdValidMs > config.resolvers.timeoutMs;
}

/**
 * The names the passthrough routes resolve that are known in advance (exact route names, fixed
 * `upstream.host`), one entry per name and preferred family; empty when
 * {@link keepsResolutions} is false.
 */
export function keptResolutions(config: FleetConfig): KeptResolution[] {
  if (!keepsResolutions(config)) return [];
  const kept = new Map<string, KeptResolution>();
  config.routes.forEach((route, index) => {
    if (route.mode !== 'passthrough') return;
    const name = route.upstream.host ?? (route.serverName.startsWith('*.') ? undefined : route.serverName);
    if (name === undefined) return;
    const key = `${name} ${route.addressFamily}`;
    if (kept.has(key)) return;
    kept.set(key, { server: `route${index}`, name, family: route.addressFamily, port: route.upstream.port });
  });
  return [...kept.values()];
}

/** The keep-alive backend section (with a trailing blank line), or nothing when no name is kept. */
export function renderResolutionKeepAlive(config: FleetConfig, resolvers: string): string[] {
  const kept = keptResolutions(config);
  if (kept.length === 0) return [];
  return [
    `backend ${RESOLUTION_KEEPALIVE_BACKEND}`,
    '  # never routed to: each server keeps the DNS resolution of one route name alive for do-resolve',
    '  mode tcp',
    '  no log',
    // A tripwire: should a rule ever send a stream here, it is closed before any connection.
    '  tcp-request content reject',
    ...kept.map(
      (k) =>
        `  server ${k.server} ${k.name}:${k.port} resolvers ${resolvers} resolve-prefer ${k.family} init-addr none`,
    ),
    '',
  ];
}
