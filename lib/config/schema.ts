/**
 * The fleet configuration: one document per gateway fleet (listeners, PROXY trust, resolvers,
 * routes, allowlist source, destination guard, limits, access log). Parsed with zod; every
 * default is applied here so the renderer never guesses.
 */
import { z } from 'zod';
import { parseCidr } from '../allowlist/cidr.ts';
import { canonicalName, dnsNameProblem, parseServerName } from './names.ts';

/** VPC Lattice's link-local service ranges: where a Lattice service name resolves inside a VPC. */
export const LATTICE_DESTINATIONS = ['169.254.171.0/24', 'fd00:ec2:80::/64'] as const;

/**
 * Destinations no route may ever reach: instance metadata (IPv4 and IPv6), loopback and the
 * unspecified networks. The task's own addresses are added at render time. IPv4-mapped IPv6
 * answers (`::ffff:169.254.169.254`) need no entry of their own: HAProxy matches them against the
 * IPv4 entries (and an `::ffff:0:0/96` entry would match every IPv4 address).
 */
export const BUILT_IN_DENIED_DESTINATIONS = [
  '169.254.169.254/32',
  'fd00:ec2::254/128',
  '127.0.0.0/8',
  '::1/128',
  '0.0.0.0/8',
  '::/128',
] as const;

/** Loopback ranges, dropped from the built-in denials only when `allowLoopbackDestinations` is set. */
export const LOOPBACK_DESTINATIONS = ['127.0.0.0/8', '::1/128'] as const;

const port = z.number().int().min(1).max(65535);

/** A CIDR (or a bare address), normalised to canonical text with host bits cleared. */
const cidr = z.string().transform((text, ctx) => {
  const parsed = parseCidr(text);
  if (parsed.kind === 'invalid') {
    ctx.addIssue({
      code: 'custom',
      message: `must be a CIDR, got ${JSON.stringify(text)} (${parsed.reason})`,
    });
    return z.NEVER;
  }
  return parsed.cidr.text;
});

const dnsName = z.string().transform((text, ctx) => {
  const name = canonicalName(text);
  const problem = dnsNameProblem(name);
  if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', message: `must be a DNS name, got ${JSON.stringify(text)} (${problem})` });
    return z.NEVER;
  }
  return name;
});

const serverName = z.string().transform((text, ctx) => {
  const parsed = parseServerName(text);
  if (parsed.kind === 'invalid') {
    ctx.addIssue({ code: 'custom', message: parsed.reason });
    return z.NEVER;
  }
  return parsed.value.kind === 'exact' ? parsed.value.name : `*.${parsed.value.suffix}`;
});

const bindAddress = z.string().refine((text) => {
  const parsed = parseCidr(text);
  return parsed.kind === 'ok' && !text.includes('/');
}, 'must be an IPv4 or IPv6 address');

const nameserver = z.string().refine((text) => {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return false;
  const host = match[1] ?? match[2] ?? '';
  return (
    parseCidr(host).kind === 'ok' && !host.includes('/') && Number(match[3]) <= 65535 && Number(match[3]) > 0
  );
}, 'must be "ip:port" (IPv6 as "[addr]:port")');

export const ListenersSchema = z.object({
  /** Addresses every listener binds; `::` is bound IPv6-only next to `0.0.0.0`. */
  bind: z.array(bindAddress).min(1).default(['0.0.0.0', '::']),
  /** TLS passthrough listener (the NLB maps 443 to it; the container runs unprivileged). */
  tls: port.default(8443),
  /** Plain HTTP by Host header; `null` disables it. */
  http: port.nullable().default(8080),
  /** `GET /healthz` for the NLB health check (no PROXY header). */
  health: port.default(8081),
  /** Prometheus exporter (`GET /metrics`); `null` disables it. */
  metrics: port.nullable().default(9101),
});

export const ProxyProtocolSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** What the NLB sends. HAProxy accepts both versions on `expect-proxy`; clients and tests use this. */
    version: z.enum(['v1', 'v2']).default('v2'),
    /** Peers (the NLB subnets) allowed to connect at all and whose header is trusted. */
    trustedPeers: z.array(cidr).default([]),
  })
  .refine((p) => !p.enabled || p.trustedPeers.length > 0, {
    message: 'must list at least one CIDR when PROXY protocol is enabled',
    path: ['trustedPeers'],
  });

export const ResolversSchema = z.object({
  /** `ip:port` of DNS servers; empty means the container's `/etc/resolv.conf` (the VPC resolver). */
  nameservers: z.array(nameserver).default([]),
  timeoutMs: z.number().int().min(10).max(60_000).default(1000),
  retries: z.number().int().min(0).max(10).default(3),
  /** How long a valid answer is reused (`hold valid`). */
  holdValidMs: z.number().int().min(0).max(3_600_000).default(10_000),
  /** How long an NXDOMAIN is remembered (`hold nx`). */
  holdNxMs: z.number().int().min(0).max(3_600_000).default(1000),
  acceptedPayloadSize: z.number().int().min(512).max(65535).default(8192),
});

export const UpstreamSchema = z.object({
  /** Name to resolve; default: the client's SNI (or Host) itself. Never an IP literal. */
  host: dnsName.optional(),
  /** TLS port the connection is forwarded to. */
  port: port.default(443),
  /** Port for the HTTP listener's traffic to this route; `null`: the route is TLS-only. */
  httpPort: port.nullable().default(80),
});

const routeCommon = {
  serverName,
  upstream: UpstreamSchema.prefault({}),
  /** Where the resolved address must fall; default: VPC Lattice's ranges. */
  allowedDestinations: z
    .array(cidr)
    .min(1)
    .default([...LATTICE_DESTINATIONS]),
  /**
   * Which record HAProxy asks for first (`do-resolve` preference); it falls back to the other
   * family when the preferred one has no answer. Lattice names answer both; IPv4 is the default.
   */
  addressFamily: z.enum(['ipv4', 'ipv6']).default('ipv4'),
};

/** Forward the TLS bytes untouched to the resolved upstream (the client sees the upstream's certificate). */
export const PassthroughRouteSchema = z.object({ mode: z.literal('passthrough'), ...routeCommon });

/**
 * One route. A discriminated union on `mode` so that `terminate` (TLS ended on the gateway) can
 * be added beside `passthrough` without changing existing documents; `mode` defaults to `passthrough`.
 */
export const RouteSchema = z.preprocess(
  (value) =>
    value !== null && typeof value === 'object' && !('mode' in value)
      ? { ...value, mode: 'passthrough' }
      : value,
  z.discriminatedUnion('mode', [PassthroughRouteSchema]),
);

export const AllowlistSourceSchema = z.union([
  z.object({ file: z.string().min(1) }).strict(),
  z.object({ secretId: z.string().min(1) }).strict(),
]);

export const AllowlistConfigSchema = z.object({
  /** Where the sidecar reads the allowlist (`{ "cidrs": [...] }`); absent: provided at render time. */
  source: AllowlistSourceSchema.optional(),
  /** Accept `0.0.0.0/0` / `::/0` entries. */
  allowAll0: z.boolean().default(false),
  maxEntries: z.number().int().min(1).max(1_000_000).default(100_000),
  /** Close established sessions of sources removed from the list (done by the sidecar). */
  cutRemovedSessions: z.boolean().default(true),
});

export const LimitsSchema = z.object({
  /** Open connections per listener; bounds sockets held by slow or idle clients. */
  maxconn: z.number().int().min(1).max(1_000_000).default(10_000),
  /** Deadline for a complete ClientHello (and for the allowlist/route decision). */
  inspectDelayMs: z.number().int().min(10).max(60_000).default(5000),
  connectTimeoutMs: z.number().int().min(10).default(5000),
  clientTimeoutMs: z.number().int().min(10).default(30_000),
  serverTimeoutMs: z.number().int().min(10).default(30_000),
  /** Idle limit of an established passthrough tunnel. */
  tunnelTimeoutMs: z.number().int().min(10).default(3_600_000),
  /** Deadline for a complete HTTP request head on the HTTP listener. */
  httpRequestTimeoutMs: z.number().int().min(10).default(10_000),
  /** After a reload, how long the old worker may keep serving open connections (`hard-stop-after`). */
  hardStopAfterMs: z.number().int().min(1000).nullable().default(null),
});

export const AccessLogSchema = z.object({
  enabled: z.boolean().default(true),
  format: z.literal('json').default('json'),
});

export const FleetConfigSchema = z
  .object({
    fleet: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a lower-case DNS label'),
    listeners: ListenersSchema.prefault({}),
    proxyProtocol: ProxyProtocolSchema.prefault({}),
    resolvers: ResolversSchema.prefault({}),
    routes: z.array(RouteSchema).default([]),
    allowlist: AllowlistConfigSchema.prefault({}),
    /** Extra CIDRs no route may reach, on top of `BUILT_IN_DENIED_DESTINATIONS`. */
    deniedDestinations: z.array(cidr).default([]),
    /** Local demos and tests only: lets routes reach loopback upstreams. Never in a real fleet. */
    allowLoopbackDestinations: z.boolean().default(false),
    limits: LimitsSchema.prefault({}),
    accessLog: AccessLogSchema.prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    const seen = new Map<string, number>();
    config.routes.forEach((route, index) => {
      const first = seen.get(route.serverName);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', index, 'serverName'],
          message: `duplicate of routes.${first}.serverName (${route.serverName})`,
        });
      } else {
        seen.set(route.serverName, index);
      }
    });
    const listeners = config.listeners;
    const ports = [listeners.tls, listeners.http, listeners.health, listeners.metrics].filter(
      (p): p is number => p !== null,
    );
    if (new Set(ports).size !== ports.length) {
      ctx.addIssue({ code: 'custom', path: ['listeners'], message: 'listener ports must differ' });
    }
  });

/** A validated fleet configuration with every default applied. */
export type FleetConfig = z.output<typeof FleetConfigSchema>;
/** The document as written by an operator (defaults optional). */
export type FleetConfigInput = z.input<typeof FleetConfigSchema>;
export type Route = FleetConfig['routes'][number];
export type PassthroughRoute = z.output<typeof PassthroughRouteSchema>;
export type Listeners = FleetConfig['listeners'];
export type ProxyProtocolConfig = FleetConfig['proxyProtocol'];
export type ResolversConfig = FleetConfig['resolvers'];
export type AllowlistConfig = FleetConfig['allowlist'];
export type Limits = FleetConfig['limits'];
export type AccessLogConfig = FleetConfig['accessLog'];
export type RouteMode = Route['mode'];
