/**
 * The fleet configuration: one document per gateway fleet (listeners, PROXY trust, resolvers,
 * routes, allowlist source, destination guard, limits, access log). Parsed with zod; every
 * default is applied here so the renderer never guesses.
 */
import { z } from 'zod';
import { isWholeFamily, parseCidr } from '../allowlist/cidr.ts';
import { CertificateSpec } from '../rotation/certificate-spec.ts';
import { AllowlistLimits } from '../secrets/allowlist-storage.ts';
import { canonicalName, dnsNameProblem, parseServerName } from './names.ts';

/** VPC Lattice's link-local service ranges: where a Lattice service name resolves inside a VPC. */
export const LATTICE_DESTINATIONS = ['169.254.171.0/24', 'fd00:ec2:80::/64'] as const;

/**
 * Destinations no route may ever reach: instance metadata (IPv4 and IPv6), the ECS task
 * credentials endpoint and EKS Pod Identity (IPv4 and IPv6), the VPC's DNS resolver at its
 * link-local addresses (`169.254.169.253`, `fd00:ec2::253`), loopback and the unspecified
 * networks, and the translation prefixes that reach an IPv4 address through an IPv6 one the
 * IPv4 entries cannot match: the local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) and the
 * SIIT IPv4-translated block `::ffff:0:0:0/96` (RFC 6145, RFC 7915). The task's own addresses are added at render time, and so are the NAT64
 * (`64:ff9b::/96`) forms of every IPv4 entry. HAProxy matches IPv4-mapped
 * (`::ffff:169.254.169.254`), IPv4-compatible (`::a.b.c.d`, so `::1` falls in `0.0.0.0/8`) and
 * 6to4 (`2002:a9fe:a9fe::`) addresses against the IPv4 entries; an `::ffff:0:0/96` entry would in
 * turn match every IPv4 address. The compatible and 6to4 ranges are denied as a whole: HAProxy
 * would also match them against a route's IPv4 allowed ranges, yet a connection to them leaves
 * over IPv6 for another host (IPv4-mapped answers do reach the IPv4 address they map).
 */
export const BUILT_IN_DENIED_DESTINATIONS = [
  '169.254.169.254/32',
  'fd00:ec2::254/128',
  '169.254.170.2/32',
  '169.254.170.23/32',
  'fd00:ec2::23/128',
  '169.254.169.253/32',
  'fd00:ec2::253/128',
  '127.0.0.0/8',
  '::1/128',
  '0.0.0.0/8',
  '::/128',
  '::/96',
  '2002::/16',
  '64:ff9b:1::/48',
  '::ffff:0:0:0/96',
] as const;

/** Loopback ranges, dropped from the built-in denials only when `allowLoopbackDestinations` is set. */
export const LOOPBACK_DESTINATIONS = ['127.0.0.0/8', '::1/128'] as const;

const port = z.number().int().min(1).max(65535);

/** Default port of the verification listener (`listeners.verify`) and of the control plane's `VERIFY_PORT`. */
export const DEFAULT_VERIFY_PORT = 8444;

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
  /** `GET /healthz` for the NLB health check (who may ask, and with what header: `healthCheck`). */
  health: port.default(8081),
  /** Prometheus exporter (`GET /metrics`); `null` disables it. */
  metrics: port.nullable().default(9101),
  /**
   * Verification listener: the control plane's handshakes read the certificate each terminate
   * route serves, without a PROXY header, an allowlist entry or a client certificate, and nothing
   * is ever forwarded from it. Only peers in `verify.trustedPeers` may connect; it is rendered only
   * when there are such peers and terminate routes. `null` disables it. Default 8444.
   */
  verify: port.nullable().default(DEFAULT_VERIFY_PORT),
});

/** Who may connect to the verification listener (`listeners.verify`). */
export const VerifySchema = z
  .object({
    /**
     * The control plane's subnets (on AWS: the subnets of the VPC-attached functions). Empty
     * (the default) admits nobody, and the listener is then not rendered at all.
     */
    trustedPeers: z
      .array(
        cidr.refine(
          (text) => !text.endsWith('/0'),
          "must not admit every address (/0): list the control plane's subnets",
        ),
      )
      .default([]),
  })
  .strict();

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

/**
 * Who may ask the health listener (`listeners.health`, `GET /healthz`), and with what header. An
 * NLB target group with `proxy_protocol_v2.enabled` opens its health checks with a PROXY v2
 * header too (a `LOCAL` one, no client address): the listener must read it, or every target is
 * unhealthy.
 */
export const HealthCheckSchema = z
  .object({
    /**
     * `true`: peers in `proxyProtocol.trustedPeers` must open with a PROXY header (v1 or v2, as
     * on the TLS listener), peers in `headerlessPeers` ask without one, anyone else is refused
     * at connection. `false`: no header is read, from anyone (health checks that do not pass
     * through the NLB's PROXY protocol). Default: `proxyProtocol.enabled`.
     */
    proxyProtocol: z.boolean().optional(),
    /**
     * Peers outside `trustedPeers` that may ask without a header while `proxyProtocol` is
     * `true`: probes from inside the task (a container health check, the sidecar), which reach
     * HAProxy over the task's loopback. A peer that is also trusted must send a header. Empty:
     * only the trusted peers, with a header. Default: loopback.
     */
    headerlessPeers: z.array(cidr).default([...LOOPBACK_DESTINATIONS]),
  })
  .strict();

export const ResolversSchema = z.object({
  /** `ip:port` of DNS servers; empty means the container's `/etc/resolv.conf` (the VPC resolver). */
  nameservers: z.array(nameserver).default([]),
  /**
   * Wait for an answer before asking again (`timeout retry`), and how often a name kept resolved
   * is refreshed (`timeout resolve`; see proxy/haproxy/render-resolution.ts).
   */
  timeoutMs: z.number().int().min(10).max(60_000).default(1000),
  retries: z.number().int().min(0).max(10).default(3),
  /**
   * How long a valid answer is reused (`hold valid`). Above `timeoutMs`, exact route names are
   * kept resolved and queried once per `timeoutMs` instead of once per connection.
   */
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
  /**
   * Lets `allowedDestinations` span a whole address family (`0.0.0.0/0`, `::/0`, the IPv4-mapped
   * block). Off by default: such a route forwards to any address the resolver answers, and only
   * the denied destinations stand between it and the rest of the VPC.
   */
  allowAnyDestination: z.boolean().default(false),
};

/** Forward the TLS bytes untouched to the resolved upstream (the client sees the upstream's certificate). */
export const PassthroughRouteSchema = z.object({ mode: z.literal('passthrough'), ...routeCommon });

/** A name of `certificates[]` (the sidecar's status key). */
const certificateName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must name an entry of certificates');

/** `DNS:`-less SAN text: a DNS name or a URI (`spiffe://…`); written into HAProxy pattern files. */
const clientSan = z
  .string()
  .min(1)
  .max(255)
  .refine((text) => /^[!-~]+$/.test(text), 'must be printable ASCII without spaces');

/** A subject in OpenSSL's one-line form, as HAProxy's `ssl_c_s_dn` prints it (`/CN=client/O=Example`). */
const clientSubject = z
  .string()
  .min(2)
  .max(1024)
  .refine(
    (text) => text.startsWith('/') && [...text].every((ch) => ch >= ' ' && ch !== '\u007f'),
    'must look like /CN=name/O=org',
  );

/**
 * Where a terminate route sends the decrypted stream: an application on the task's loopback
 * in clear, or a TLS upstream re-encrypted with a client certificate (origination).
 */
export const TerminateUpstreamSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('local'),
      host: z.enum(['127.0.0.1', '::1']).default('127.0.0.1'),
      port,
    })
    .strict(),
  z
    .object({
      kind: z.literal('originate'),
      /** DNS name (resolved once at start) or IP address of the upstream. */
      host: z.string().refine((text) => {
        const name = canonicalName(text);
        return dnsNameProblem(name) === undefined || (parseCidr(text).kind === 'ok' && !text.includes('/'));
      }, 'must be a DNS name or an IP address'),
      port: port.default(443),
      /** SNI sent and name verified; default: `host` when it is a DNS name. */
      serverName: dnsName.optional(),
      clientCertificate: certificateName,
      /** The upstream's certificate is always verified against the trust bundle. */
      verify: z.literal(true).default(true),
    })
    .strict(),
]);

/**
 * End TLS on the gateway with a certificate of `certificates`, check the client certificate
 * (`strict`: required; `permissive`: optional but verified when presented; `none`: not asked
 * for) and optionally its SANs/subject, then forward in clear or re-encrypted.
 */
export const TerminateRouteSchema = z
  .object({
    mode: z.literal('terminate'),
    serverName,
    certificate: certificateName,
    clientAuth: z.enum(['strict', 'permissive', 'none']).default('strict'),
    /** A presented client certificate must carry one of these SANs or subjects (any one of them). */
    trustedClients: z
      .object({ sans: z.array(clientSan).default([]), subjects: z.array(clientSubject).default([]) })
      .strict()
      .optional(),
    upstream: TerminateUpstreamSchema,
  })
  .strict();

/**
 * One route. A discriminated union on `mode`: `passthrough` forwards the TLS bytes untouched,
 * `terminate` ends TLS on the gateway; `mode` defaults to `passthrough`.
 */
export const RouteSchema = z.preprocess(
  (value) =>
    value !== null && typeof value === 'object' && !('mode' in value)
      ? { ...value, mode: 'passthrough' }
      : value,
  z.discriminatedUnion('mode', [PassthroughRouteSchema, TerminateRouteSchema]),
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
  /**
   * Most entries a list may hold. At most what the allowlist store holds
   * (`AllowlistLimits.maxEntries`, lib/secrets/allowlist-storage.ts), so the fleet never
   * promises a list the control plane could not stage.
   */
  maxEntries: z.number().int().min(1).max(AllowlistLimits.maxEntries).default(100_000),
  /** Close established sessions of sources removed from the list (done by the sidecar). */
  cutRemovedSessions: z.boolean().default(true),
});

/**
 * Per-source limits: one client address (the PROXY source behind an NLB) may hold only part of
 * the slots and open connections only so fast, so a single source with slow hellos cannot hold
 * every `maxconn` slot until each deadline. Counted across the TLS and HTTP listeners of a task in
 * one stick table keyed by the client address; a refused connection is logged with its reason
 * (`source-connection-limit`, `source-rate-limit`). Sources behind a shared NAT count as one.
 */
export const PerSourceLimitsSchema = z
  .object({
    /** Open connections one source may hold; absent: a tenth of `limits.maxconn` (at least 1); `null`: no limit. */
    maxConnections: z.number().int().min(1).max(1_000_000).nullable().optional(),
    /** New connections one source may open per `ratePeriodMs`; `null`: no limit. Default 5000 (500/s over 10 s). */
    maxConnectionRate: z.number().int().min(1).max(10_000_000).nullable().default(5000),
    /** Window of `maxConnectionRate` (HAProxy `conn_rate(<period>)`). */
    ratePeriodMs: z.number().int().min(1000).max(3_600_000).default(10_000),
  })
  .strict();

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
  /**
   * HAProxy threads (`nbthread`); absent: HAProxy's own choice, one per CPU the task may use.
   * Fewer threads than CPUs cost less per connection on a busy task but cap it at that many cores.
   */
  threads: z.number().int().min(1).max(64).optional(),
  /** What one client address may take of the listeners (see `PerSourceLimitsSchema`). */
  perSource: PerSourceLimitsSchema.prefault({}),
});

export const AccessLogSchema = z.object({
  enabled: z.boolean().default(true),
  format: z.literal('json').default('json'),
  /**
   * HAProxy's in-memory buffer (a `ring`) in front of the sidecar that writes the lines to stdout.
   * A burst waits here while the sidecar writes; only lines that find it full are lost (counted as
   * HAProxy's `DroppedLogs`, exported by the sidecar). 16 MiB holds about 35 000 lines.
   */
  bufferBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(1024 * 1024 * 1024)
    .default(16 * 1024 * 1024),
});

/** Terminate routes name existing certificates of the right usage, and need a trust bundle. */
function checkCertificateReferences(
  config: {
    certificates: readonly CertificateSpec[];
    routes: readonly (z.output<typeof PassthroughRouteSchema> | z.output<typeof TerminateRouteSchema>)[];
    trust?: { secretId: string } | undefined;
  },
  ctx: z.core.$RefinementCtx,
): void {
  const byName = new Map<string, CertificateSpec>();
  config.certificates.forEach((spec, index) => {
    if (byName.has(spec.name)) {
      ctx.addIssue({
        code: 'custom',
        path: ['certificates', index, 'name'],
        message: `duplicate certificate name ${spec.name}`,
      });
    }
    byName.set(spec.name, spec);
  });
  const refer = (name: string, usage: 'server' | 'client', path: (string | number)[]) => {
    const spec = byName.get(name);
    if (spec === undefined) {
      ctx.addIssue({ code: 'custom', path, message: `names no entry of certificates (${name})` });
    } else if (spec.usage !== usage) {
      ctx.addIssue({
        code: 'custom',
        path,
        message: `certificate ${name} has usage ${spec.usage}, needs ${usage}`,
      });
    }
  };
  config.routes.forEach((route, index) => {
    if (route.mode !== 'terminate') return;
    refer(route.certificate, 'server', ['routes', index, 'certificate']);
    if (route.upstream.kind === 'originate') {
      refer(route.upstream.clientCertificate, 'client', ['routes', index, 'upstream', 'clientCertificate']);
    }
    if (config.trust === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['trust'],
        message: 'terminate routes need a trust bundle (trust.secretId)',
      });
    }
  });
}

export const FleetConfigSchema = z
  .object({
    fleet: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a lower-case DNS label'),
    listeners: ListenersSchema.prefault({}),
    proxyProtocol: ProxyProtocolSchema.prefault({}),
    /** Who may ask the health listener (`listeners.health`), and whether with a PROXY header. */
    healthCheck: HealthCheckSchema.prefault({}),
    /** Peers allowed on the verification listener (`listeners.verify`). */
    verify: VerifySchema.prefault({}),
    resolvers: ResolversSchema.prefault({}),
    routes: z.array(RouteSchema).default([]),
    allowlist: AllowlistConfigSchema.prefault({}),
    /** Extra CIDRs no route may reach, on top of `BUILT_IN_DENIED_DESTINATIONS`. */
    deniedDestinations: z.array(cidr).default([]),
    /** Local demos and tests only: lets routes reach loopback upstreams. Never in a real fleet. */
    allowLoopbackDestinations: z.boolean().default(false),
    limits: LimitsSchema.prefault({}),
    accessLog: AccessLogSchema.prefault({}),
    /** Certificates the control plane issues and the sidecar serves (terminate routes, origination). */
    certificates: z.array(CertificateSpec).default([]),
    /** CA certificates (and CRL) that client and upstream certificates are verified against. */
    trust: z
      .object({ secretId: z.string().min(1) })
      .strict()
      .optional(),
    /** HMAC key that signs the control plane's nudges to the sidecars. */
    nudgeKey: z
      .object({ secretId: z.string().min(1) })
      .strict()
      .optional(),
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
    checkCertificateReferences(config, ctx);
    config.routes.forEach((route, index) => {
      if (route.mode !== 'passthrough' || route.allowAnyDestination) return;
      route.allowedDestinations.forEach((text, at) => {
        const parsed = parseCidr(text);
        if (parsed.kind === 'ok' && isWholeFamily(parsed.cidr)) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', index, 'allowedDestinations', at],
            message: `${text} allows every address of a family: list the upstreams' ranges (or set allowAnyDestination)`,
          });
        }
      });
    });
    const listeners = config.listeners;
    // The verification port counts only once it may be bound: a fleet without verification
    // peers keeps whatever it uses 8444 for.
    const verify = config.verify.trustedPeers.length > 0 ? listeners.verify : null;
    const ports = [listeners.tls, listeners.http, listeners.health, listeners.metrics, verify].filter(
      (p): p is number => p !== null,
    );
    if (new Set(ports).size !== ports.length) {
      ctx.addIssue({ code: 'custom', path: ['listeners'], message: 'listener ports must differ' });
    }
    if (config.healthCheck.proxyProtocol === true && !config.proxyProtocol.enabled) {
      ctx.addIssue({
        code: 'custom',
        path: ['healthCheck', 'proxyProtocol'],
        message: 'needs proxyProtocol.enabled: its trustedPeers are the peers whose header is read',
      });
    }
  })
  // The health listener reads PROXY headers exactly when the fleet does, unless it says otherwise;
  // a source may hold a tenth of the slots unless the fleet says otherwise.
  .transform((config) => ({
    ...config,
    healthCheck: {
      ...config.healthCheck,
      proxyProtocol: config.healthCheck.proxyProtocol ?? config.proxyProtocol.enabled,
    },
    limits: {
      ...config.limits,
      perSource: {
        ...config.limits.perSource,
        maxConnections:
          config.limits.perSource.maxConnections === undefined
            ? Math.max(1, Math.floor(config.limits.maxconn / 10))
            : config.limits.perSource.maxConnections,
      },
    },
  }));

/** A validated fleet configuration with every default applied. */
export type FleetConfig = z.output<typeof FleetConfigSchema>;
/** The document as written by an operator (defaults optional). */
export type FleetConfigInput = z.input<typeof FleetConfigSchema>;
export type Route = FleetConfig['routes'][number];
export type PassthroughRoute = z.output<typeof PassthroughRouteSchema>;
export type TerminateRoute = z.output<typeof TerminateRouteSchema>;
export type TerminateUpstream = TerminateRoute['upstream'];
export type ClientAuth = TerminateRoute['clientAuth'];
export type Listeners = FleetConfig['listeners'];
export type ProxyProtocolConfig = FleetConfig['proxyProtocol'];
export type HealthCheckConfig = FleetConfig['healthCheck'];
export type VerifyConfig = FleetConfig['verify'];
export type ResolversConfig = FleetConfig['resolvers'];
export type AllowlistConfig = FleetConfig['allowlist'];
export type Limits = FleetConfig['limits'];
export type PerSourceLimits = Limits['perSource'];
export type AccessLogConfig = FleetConfig['accessLog'];
export type RouteMode = Route['mode'];
