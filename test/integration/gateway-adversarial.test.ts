/**
 * The gateway under attack: ways around the destination guard, the source allowlist and PROXY
 * trust, each tried against a real HAProxy 2.6 on loopback. A "decoy" listens on 127.0.0.4 at the
 * routes' ports and stands in for the metadata service: 127.0.0.4 is a denied destination, and a
 * single accepted connection there means a bypass. Every refusal must leave no upstream or decoy
 * connection and log its reason.
 *
 * Known limits (HAProxy 2.6, not fixable in the rendered config; mitigations in place):
 * - PROXY `LOCAL` is recognised as "carried source == direct peer": 2.6 has no fetch for the
 *   header's command. A trusted peer can therefore forge a "LOCAL" by claiming its own address;
 *   both are treated alike and never routed, so the forgery gains nothing (tested below).
 * - Trusted peers are trusted: anything inside `proxyProtocol.trustedPeers` may claim any client
 *   address. Keep that list to the NLB's subnets and nothing else runs there (security groups).
 * - HAProxy matches an IPv6 client in the IPv4-compatible (`::a.b.c.d`) or 6to4 (`2002:a.b.c.d::`)
 *   forms against IPv4 allowlist entries. The NLB reports the real TCP peer, and completing a
 *   handshake from such an address needs the embedded IPv4 address, so this is no spoofing path;
 *   IPv4-mapped clients (`::ffff:a.b.c.d`) are the same host as the IPv4 entry (tested).
 * - NAT64: the well-known prefix (`64:ff9b::/96`) forms of every denied IPv4 network are denied;
 *   network-specific NAT64 prefixes are not knowable here. Keep routes' `allowedDestinations`
 *   narrow (Lattice's ranges by default): that check holds whatever the prefix.
 * - TLS renegotiation (1.2) or a second ClientHello after HelloRetryRequest (1.3) travel after the
 *   checked hello; a passthrough gateway cannot read them. The upstream (Lattice) picks the
 *   service from the first hello, which is the one checked here, strictly parsed (one SNI).
 * - Encrypted Client Hello: an inner name is invisible to the gateway, and the extension cannot be
 *   refused (browsers send a GREASE one on every hello). Safe only while upstreams publish no ECH
 *   configuration (Lattice does not); an ECH-capable passthrough upstream would pick the service
 *   by a name the gateway never checked. Likewise an upstream that resumes a session across names
 *   must not route by the resumed session's name.
 * - `Transfer-Encoding` with `Content-Length`: HAProxy 2.6 drops `Content-Length` and frames by
 *   chunks itself, so the upstream never sees the ambiguity; a smuggled request is parsed by
 *   HAProxy as a request of its own and routed and guarded like any other (tested).
 */
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseAllowlist } from '../../lib/allowlist/index.ts';
import { parseFleetConfig } from '../../lib/config/index.ts';
import { FRONTEND, REFUSAL, renderAllowlist } from '../../proxy/haproxy/index.ts';
import { CONNECTION_REFUSAL, HTTP_REFUSAL } from '../../proxy/haproxy/render.ts';
import { HaproxyRuntime } from '../../proxy/haproxy/runtime.ts';
import { buildClientHello } from '../support/client-hello.ts';
import { type DnsServer, startDnsServer } from '../support/dns.ts';
import { type AccessLog, freePort, type GatewayHarness, startGateway } from '../support/gateway.ts';
import { HAPROXY } from '../support/haproxy.ts';
import { type SendRawResult, sendRaw } from '../support/net.ts';
import { encodeProxyV2, proxyV1, proxyV1Unknown, proxyV2, proxyV2Local } from '../support/proxy-protocol.ts';
import { type HttpUpstream, startHttpUpstream, startTcpUpstream, type Upstream } from '../support/tls.ts';

const INSPECT_DELAY_MS = 700;
const APP = 'app.example.test';
const OTHER = 'other.example.test';
/** Resolves to the decoy: the metadata service's stand-in. */
const META = 'meta.example.test';
const ALLOWED_V4 = '203.0.113.0/24';
const ALLOWED_V6 = '2001:db8:1::/48';

let dns: DnsServer;
/** 127.0.0.2: the legitimate upstream (TLS port: raw TCP recorder; HTTP port: HTTP server). */
let upstream: Upstream;
let httpUpstream: HttpUpstream;
/** 127.0.0.3: a second legitimate HTTP upstream (keep-alive re-routing). */
let otherHttp: HttpUpstream;
/** 127.0.0.4: where a bypass would land. */
let decoy: Upstream;
let decoyHttp: HttpUpstream;
/** No PROXY protocol; the allowlist admits loopback. */
let gw: GatewayHarness;
/** Behind an NLB stand-in: PROXY from 127.0.0.1 only; the allowlist admits documentation ranges. */
let gwp: GatewayHarness;

function routes(tlsPort: number, httpPort: number) {
  const wide = ['127.0.0.0/8', '169.254.0.0/16', '0.0.0.0/0'];
  return [
    { serverName: APP, upstream: { port: tlsPort, httpPort }, allowedDestinations: ['127.0.0.0/8'] },
    { serverName: OTHER, upstream: { port: tlsPort, httpPort }, allowedDestinations: ['127.0.0.0/8'] },
    { serverName: META, upstream: { port: tlsPort, httpPort }, allowedDestinations: ['127.0.0.0/8'] },
    // Deliberately wide: only the denied destinations stand between these and the decoy.
    {
      serverName: '*.svc.example.test',
      upstream: { port: tlsPort, httpPort },
      allowedDestinations: wide,
      allowAnyDestination: true,
    },
    {
      serverName: '*.v6.example.test',
      upstream: { port: tlsPort, httpPort },
      addressFamily: 'ipv6' as const,
      allowedDestinations: ['::/0', '0.0.0.0/0'],
      allowAnyDestination: true,
    },
    // IPv4-only destinations, asked for AAAA first: embedded-IPv4 answers must not pass as IPv4.
    {
      serverName: '*.narrow6.example.test',
      upstream: { port: tlsPort, httpPort },
      addressFamily: 'ipv6' as const,
      allowedDestinations: ['127.0.0.2/32'],
    },
  ];
}

const records: Record<string, string[] | { addresses: string[]; cname?: string }> = {
  [APP]: ['127.0.0.2'],
  [OTHER]: ['127.0.0.3'],
  [META]: ['127.0.0.4'],
  'two-a.svc.example.test': ['127.0.0.4', '127.0.0.2'],
  'two-b.svc.example.test': ['127.0.0.2', '127.0.0.4'],
  'cname.svc.example.test': { cname: 'hop1.elsewhere.test', addresses: [] },
  'hop1.elsewhere.test': { cname: 'hop2.elsewhere.test', addresses: [] },
  'hop2.elsewhere.test': ['127.0.0.4'],
  '169-254-169-254.svc.example.test': ['169.254.169.254'],
  'ecs-credentials.svc.example.test': ['169.254.170.2'],
  'pod-identity.svc.example.test': ['169.254.170.23'],
  'zero.svc.example.test': ['0.0.0.0'],
  'self.svc.example.test': ['127.0.0.1'],
  'mapped.v6.example.test': ['::ffff:127.0.0.4'],
  'compat.v6.example.test': ['::127.0.0.4'],
  'sixtofour.v6.example.test': ['2002:7f00:4::1'],
  'nat64.v6.example.test': ['64:ff9b::7f00:4'],
  'nat64-imds.v6.example.test': ['64:ff9b::a9fe:a9fe'],
  'mapped-imds.v6.example.test': ['::ffff:169.254.169.254'],
  'imds6.v6.example.test': ['fd00:ec2::254'],
  'pod-identity6.v6.example.test': ['fd00:ec2::23'],
  'vpc-dns.svc.example.test': ['169.254.169.253'],
  'vpc-dns6.v6.example.test': ['fd00:ec2::253'],
  // Both embed 127.0.0.2, an address the route may reach: only the translation prefix is denied.
  'nat64-local.v6.example.test': ['64:ff9b:1::7f00:2'],
  'siit.v6.example.test': ['::ffff:0:7f00:2'],
  'unspecified.v6.example.test': ['::'],
  'loopback6.v6.example.test': ['::1'],
  'self-mapped.v6.example.test': ['::ffff:127.0.0.1'],
  'compat.narrow6.example.test': ['::127.0.0.2'],
  'sixtofour.narrow6.example.test': ['2002:7f00:2::'],
  'mapped.narrow6.example.test': ['::ffff:127.0.0.2'],
};

beforeAll(async () => {
  const tlsPort = await freePort('127.0.0.2');
  const httpPort = await freePort('127.0.0.2');
  upstream = await startTcpUpstream({ host: '127.0.0.2', port: tlsPort });
  httpUpstream = await startHttpUpstream({ host: '127.0.0.2', port: httpPort, name: 'app' });
  otherHttp = await startHttpUpstream({ host: '127.0.0.3', port: httpPort, name: 'other' });
  decoy = await startTcpUpstream({ host: '127.0.0.4', port: tlsPort });
  decoyHttp = await startHttpUpstream({ host: '127.0.0.4', port: httpPort, name: 'decoy' });
  dns = await startDnsServer({ records: (name) => records[name], ttl: 0 });
  const common = {
    allowLoopbackDestinations: true,
    deniedDestinations: ['127.0.0.4/32'],
    resolvers: { nameservers: [dns.address], holdValidMs: 0, holdNxMs: 0, timeoutMs: 200, retries: 1 },
    limits: { inspectDelayMs: INSPECT_DELAY_MS, maxconn: 50, httpRequestTimeoutMs: 1000 },
    routes: routes(tlsPort, httpPort),
  };
  [gw, gwp] = await Promise.all([
    startGateway({ config: { fleet: 'adversarial', ...common }, allowlist: ['127.0.0.0/8'] }),
    startGateway({
      config: {
        fleet: 'adversarial-pp',
        ...common,
        proxyProtocol: { enabled: true, trustedPeers: ['127.0.0.1/32'] },
      },
      allowlist: [ALLOWED_V4, ALLOWED_V6],
    }),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all([gw?.close(), gwp?.close()]);
  await Promise.all(
    [dns, upstream, httpUpstream, otherHttp, decoy, decoyHttp].map((server) => server?.close()),
  );
});

/** Connection counts of every listener a bypass could reach. */
function counts() {
  return {
    upstream: upstream.connections.length,
    http: httpUpstream.requests.length,
    httpConnections: httpUpstream.connections.length,
    other: otherHttp.requests.length,
    otherConnections: otherHttp.connections.length,
    decoy: decoy.connections.length,
    decoyHttp: decoyHttp.connections.length,
  };
}

/** A server_name extension body with these raw host_name entries (`type` 0 unless given). */
function sniExtension(names: Array<Buffer | { type: number; name: Buffer }>, trailing = Buffer.alloc(0)) {
  const entries = names.map((entry) => {
    const { type, name } = Buffer.isBuffer(entry) ? { type: 0, name: entry } : entry;
    const head = Buffer.alloc(3);
    head[0] = type;
    head.writeUInt16BE(name.length, 1);
    return Buffer.concat([head, name]);
  });
  const list = Buffer.concat(entries);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(list.length);
  return { type: 0, data: Buffer.concat([length, list, trailing]) };
}

/** A hello whose SNI bytes are exactly these (latin1 for strings). */
function helloWithName(name: string | Buffer): Buffer {
  const bytes = Buffer.isBuffer(name) ? name : Buffer.from(name, 'latin1');
  return buildClientHello({ extensions: [sniExtension([bytes])] });
}

/**
 * Sends `bytes` to a gateway port and returns the peer's verdict plus the first log line after
 * it that satisfies `match` (by default: any line of the frontend).
 */
async function probe(
  harness: GatewayHarness,
  bytes: Buffer | Buffer[],
  options: { port?: number; match?: (line: AccessLog) => boolean; timeoutMs?: number } = {},
): Promise<{ result: SendRawResult; log: AccessLog }> {
  const since = harness.logs().length;
  const result = await sendRaw({
    host: '127.0.0.1',
    port: options.port ?? harness.ports.tls,
    bytes,
    timeoutMs: options.timeoutMs ?? INSPECT_DELAY_MS * 4,
    delayMs: 5,
  });
  const log = await harness.waitForLog(options.match ?? (() => true), { since });
  return { result, log };
}

/** Asserts a TLS-listener refusal: closed by the gateway, reason logged, nothing connected. */
async function expectTlsRefused(harness: GatewayHarness, bytes: Buffer | Buffer[], reason: string) {
  const before = counts();
  const { result, log } = await probe(harness, bytes);
  expect(result.closedBy).toBe('peer');
  expect(log.refusal).toBe(reason);
  expect(log.connect_ms).toBe(-1);
  expect(counts()).toEqual(before);
  return log;
}

/** HTTP statuses in a raw response stream, in order. */
function statuses(raw: Buffer): number[] {
  return [...raw.toString('latin1').matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
}

async function http(harness: GatewayHarness, head: string | Buffer, preamble?: Buffer) {
  const bytes = [...(preamble ? [preamble] : []), Buffer.isBuffer(head) ? head : Buffer.from(head, 'latin1')];
  return sendRaw({ host: '127.0.0.1', port: harness.ports.http, bytes, timeoutMs: 3000, delayMs: 5 });
}

describe('SNI spellings', () => {
  it('routes case and one trailing dot variants of a route name to its own upstream, logged canonically', async () => {
    for (const name of ['APP.Example.TEST', 'app.example.test.']) {
      const before = counts();
      const { log } = await probe(gw, buildClientHello({ serverName: name }), { timeoutMs: 300 });
      expect(log).toMatchObject({ sni: APP, route: APP, upstream: '127.0.0.2', refusal: '-' });
      await upstream.waitForConnections(before.upstream + 1);
      expect(decoy.connections.length).toBe(before.decoy);
    }
  });

  const invalid: Array<[string, Buffer, string]> = [
    ['two trailing dots', helloWithName('app.example.test..'), REFUSAL.invalidServerName],
    ['a leading dot', helloWithName('.app.example.test'), REFUSAL.invalidServerName],
    ['an empty label', helloWithName('app..example.test'), REFUSAL.invalidServerName],
    [
      'a label of 64 characters',
      helloWithName(`${'a'.repeat(64)}.svc.example.test`),
      REFUSAL.invalidServerName,
    ],
    [
      'a name over 253 characters',
      helloWithName(`${'a.'.repeat(122)}svc.example.test`),
      REFUSAL.invalidServerName,
    ],
    ['an empty name', helloWithName(''), REFUSAL.noServerName],
    ['a NUL inside the name', helloWithName('app.example.test\u0000.evil.test'), REFUSAL.invalidServerName],
    ['a NUL after the name', helloWithName('app.example.test\u0000'), REFUSAL.invalidServerName],
    ['a trailing newline', helloWithName('app.example.test\n'), REFUSAL.invalidServerName],
    ['a control byte', helloWithName('app.exa\u0007mple.test'), REFUSAL.invalidServerName],
    ['a space', helloWithName('app.example.test meta.example.test'), REFUSAL.invalidServerName],
    ['UTF-8 bytes', helloWithName(Buffer.from('äpp.svc.example.test', 'utf8')), REFUSAL.invalidServerName],
    [
      'Latin-1 bytes',
      helloWithName(Buffer.from('äpp.svc.example.test', 'latin1')),
      REFUSAL.invalidServerName,
    ],
    ['an underscore', helloWithName('a_b.svc.example.test'), REFUSAL.invalidServerName],
    ['a wildcard character', helloWithName('*.svc.example.test'), REFUSAL.invalidServerName],
    ['a punycode name with no route', helloWithName('xn--pp-wka.example.test'), REFUSAL.noRoute],
    ['two labels under a wildcard', helloWithName('a.b.svc.example.test'), REFUSAL.noRoute],
    ["a wildcard route's own suffix", helloWithName('svc.example.test'), REFUSAL.noRoute],
    ['an octal IPv4 literal', helloWithName('0177.0.0.1'), REFUSAL.ipLiteral],
    ['a short IPv4 literal', helloWithName('127.1'), REFUSAL.ipLiteral],
    ['a hex integer literal', helloWithName('0x7f000001'), REFUSAL.ipLiteral],
    ['a decimal integer literal', helloWithName('2130706433'), REFUSAL.ipLiteral],
    ['a bracketed IPv6 literal', helloWithName('[::1]'), REFUSAL.ipLiteral],
    ['an IPv4-mapped IPv6 literal', helloWithName('::ffff:127.0.0.1'), REFUSAL.ipLiteral],
    ['an IPv4 literal with a trailing dot', helloWithName('127.0.0.4.'), REFUSAL.ipLiteral],
  ];

  it.each(invalid)('refuses %s', async (_name, hello, reason) => {
    await expectTlsRefused(gw, hello, reason);
  });
});

describe('ClientHello structure', () => {
  const app = Buffer.from(APP, 'latin1');
  const meta = Buffer.from(META, 'latin1');
  const cases: Array<[string, Buffer]> = [
    ['two host names in one server_name list', buildClientHello({ extensions: [sniExtension([app, meta])] })],
    [
      'a second entry of another name type',
      buildClientHello({ extensions: [sniExtension([app, { type: 1, name: meta }])] }),
    ],
    [
      'a first entry of another name type',
      buildClientHello({ extensions: [sniExtension([{ type: 1, name: meta }, app])] }),
    ],
    [
      'two server_name extensions',
      buildClientHello({ extensions: [sniExtension([app]), sniExtension([meta])] }),
    ],
    ['bytes after the server_name list', buildClientHello({ extensions: [sniExtension([app], meta)] })],
    ['an empty server_name list', buildClientHello({ extensions: [sniExtension([])] })],
  ];

  it.each(cases)(
    'refuses %s: the upstream could read another name than the one checked',
    async (_n, hello) => {
      await expectTlsRefused(gw, hello, REFUSAL.invalidServerName);
    },
  );

  it('refuses handshake bytes after the ClientHello inside its record', async () => {
    const hello = buildClientHello({ serverName: APP, version: '1.2' });
    const extra = Buffer.from([0x01, 0x00, 0x00, 0x00]);
    const record = Buffer.concat([hello, extra]);
    record.writeUInt16BE(hello.readUInt16BE(3) + extra.length, 3);
    await expectTlsRefused(gw, record, REFUSAL.invalidServerName);
  });

  it('refuses an extensions block whose length disagrees with the hello', async () => {
    const hello = Buffer.from(buildClientHello({ serverName: APP, version: '1.2' }));
    // Cut the extensions length short by 4: a lenient parser reads the SNI, a strict one stops.
    const extLengthAt = 5 + 4 + 2 + 32 + 1 + 2 + 6 + 2;
    expect(hello[5 + 4 + 2 + 32]).toBe(0);
    hello.writeUInt16BE(hello.readUInt16BE(extLengthAt) - 4, extLengthAt);
    await expectTlsRefused(gw, hello, REFUSAL.invalidServerName);
  });

  it('refuses a hello that claims 16 MB once its buffer is full, without waiting for the rest', async () => {
    // One record announcing a 16 MB ClientHello, then filler records: more than HAProxy buffers.
    const claim = Buffer.concat([
      Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff]),
      Buffer.alloc(0x4000 - 4, 0x41),
    ]);
    const filler = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x10, 0x00]), Buffer.alloc(0x1000, 0x41)]);
    await expectTlsRefused(gw, [claim, filler], REFUSAL.clientHelloIncomplete);
  });

  it('keeps many one-byte stalled connections within maxconn and closes them at the deadline', async () => {
    const sockets: net.Socket[] = [];
    const since = gw.logs().length;
    try {
      const closed: Promise<void>[] = [];
      for (let i = 0; i < 80; i++) {
        const socket = net.connect({ host: '127.0.0.1', port: gw.ports.tls });
        socket.on('error', () => {});
        socket.once('connect', () => socket.write(Buffer.from([0x16])));
        closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
        sockets.push(socket);
      }
      await new Promise((resolve) => setTimeout(resolve, INSPECT_DELAY_MS / 2));
      const row = (await gw.admin('show stat'))
        .split('\n')
        .find((l) => l.startsWith(`${FRONTEND.tls},FRONTEND,`));
      expect(Number(row?.split(',')[4])).toBeLessThanOrEqual(50);
      // Every one of them is closed by the gateway (queued ones after the first ones expired).
      await Promise.race([
        Promise.all(closed),
        new Promise((_, reject) => setTimeout(() => reject(new Error('stalled sockets left open')), 8000)),
      ]);
      // Each one is logged: most refused at once by the per-source limit, the rest at the deadline.
      await expect.poll(() => gw.logs().length - since, { timeout: 5000 }).toBe(80);
      const reasons = new Set(
        gw
          .logs()
          .slice(since)
          .map((l) => l.refusal),
      );
      expect(reasons).toEqual(new Set([REFUSAL.sourceConnectionLimit, REFUSAL.clientHelloIncomplete]));
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});

describe('destination guard against DNS answers', () => {
  const denied: Array<[string, string]> = [
    ['the metadata stand-in', META],
    [
      'a name spelled like an address whose DNS answer is the metadata service',
      '169-254-169-254.svc.example.test',
    ],
    ['the ECS task credentials endpoint', 'ecs-credentials.svc.example.test'],
    ['the EKS Pod Identity endpoint', 'pod-identity.svc.example.test'],
    ['0.0.0.0 (the local host on Linux)', 'zero.svc.example.test'],
    ["the gateway's own address", 'self.svc.example.test'],
    ['a CNAME chain that ends at the metadata stand-in', 'cname.svc.example.test'],
    ['an IPv4-mapped metadata stand-in', 'mapped.v6.example.test'],
    ['an IPv4-compatible metadata stand-in', 'compat.v6.example.test'],
    ['a 6to4 metadata stand-in', 'sixtofour.v6.example.test'],
    ['a NAT64 metadata stand-in', 'nat64.v6.example.test'],
    ['NAT64 instance metadata', 'nat64-imds.v6.example.test'],
    ['IPv4-mapped instance metadata', 'mapped-imds.v6.example.test'],
    ['IPv6 instance metadata', 'imds6.v6.example.test'],
    ['IPv6 Pod Identity', 'pod-identity6.v6.example.test'],
    ['the VPC DNS resolver (169.254.169.253)', 'vpc-dns.svc.example.test'],
    ['the VPC DNS resolver over IPv6 (fd00:ec2::253)', 'vpc-dns6.v6.example.test'],
    ['an address under the local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215)', 'nat64-local.v6.example.test'],
    ['an SIIT IPv4-translated address ::ffff:0:a.b.c.d (RFC 6145)', 'siit.v6.example.test'],
    ['the IPv6 unspecified address', 'unspecified.v6.example.test'],
    ['IPv6 loopback', 'loopback6.v6.example.test'],
    ["the gateway's own address, IPv4-mapped", 'self-mapped.v6.example.test'],
  ];

  it.each(denied)('refuses %s', async (_what, name) => {
    const log = await expectTlsRefused(gw, buildClientHello({ serverName: name }), REFUSAL.destinationDenied);
    expect(log.sni).toBe(name);
  });

  const embedded: Array<[string, string]> = [
    ['an IPv4-compatible', 'compat.narrow6.example.test'],
    ['a 6to4', 'sixtofour.narrow6.example.test'],
  ];

  it.each(embedded)(
    'refuses %s answer to a route that allows only an IPv4 range (it would connect over IPv6 elsewhere)',
    async (_what, name) => {
      const log = await expectTlsRefused(
        gw,
        buildClientHello({ serverName: name }),
        REFUSAL.destinationDenied,
      );
      expect(log.sni).toBe(name);
    },
  );

  it('lets an IPv4-mapped answer reach the very IPv4 address it maps', async () => {
    const before = counts();
    const { log } = await probe(gw, buildClientHello({ serverName: 'mapped.narrow6.example.test' }), {
      timeoutMs: 300,
    });
    expect(log).toMatchObject({ upstream: '::ffff:127.0.0.2', refusal: '-' });
    await upstream.waitForConnections(before.upstream + 1);
    expect(decoy.connections.length).toBe(before.decoy);
  });

  it('checks the one address it connects to when DNS answers several, whatever their order', async () => {
    for (const name of ['two-a.svc.example.test', 'two-b.svc.example.test']) {
      for (let i = 0; i < 3; i++) {
        const before = counts();
        const { log } = await probe(gw, buildClientHello({ serverName: name }), { timeoutMs: 300 });
        if (log.refusal === '-') {
          expect(log.upstream).toBe('127.0.0.2');
          await upstream.waitForConnections(before.upstream + 1);
        } else {
          expect(log).toMatchObject({ upstream: '127.0.0.4', refusal: REFUSAL.destinationDenied });
        }
        expect(decoy.connections.length).toBe(before.decoy);
      }
    }
  });

  it('refuses quickly and logs when the resolver fails or stays silent', async () => {
    for (const mode of ['servfail', 'refused', 'drop'] as const) {
      dns.setFailure(mode);
      try {
        await expectTlsRefused(gw, buildClientHello({ serverName: APP }), REFUSAL.resolutionFailed);
      } finally {
        dns.setFailure(undefined);
      }
    }
  });
});

describe('HTTP listener', () => {
  it('refuses an absolute-form target that names another host than the Host header', async () => {
    const before = counts();
    for (const target of [
      `http://${META}/`,
      'http://127.0.0.4/',
      `http://169.254.169.254/latest/meta-data/`,
    ]) {
      const result = await http(gw, `GET ${target} HTTP/1.1\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`);
      const [status] = statuses(result.received);
      expect(status, target).toBeGreaterThanOrEqual(400);
    }
    expect(counts()).toEqual(before);
  });

  it('refuses an absolute-form target with userinfo, with or without a Host header', async () => {
    const before = counts();
    for (const head of [
      `GET http://${APP}@127.0.0.4/ HTTP/1.1\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`,
      `GET http://${APP}@127.0.0.4/ HTTP/1.1\r\nConnection: close\r\n\r\n`,
      `GET http://127.0.0.4/ HTTP/1.1\r\nConnection: close\r\n\r\n`,
    ]) {
      const [status] = statuses((await http(gw, head)).received);
      expect(status, head).toBeGreaterThanOrEqual(400);
    }
    expect(counts()).toEqual(before);
  });

  it('sends an absolute-form target that agrees with Host to the checked upstream only', async () => {
    const before = counts();
    const result = await http(
      gw,
      `GET http://${APP}/x HTTP/1.1\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`,
    );
    expect(statuses(result.received)).toEqual([200]);
    expect(httpUpstream.requests.length).toBe(before.http + 1);
    expect(httpUpstream.requests.at(-1)?.headers.host).toBe(APP);
    expect(decoyHttp.connections.length).toBe(before.decoyHttp);
  });

  const refused: Array<[string, string, number, string]> = [
    // A comma list: `req.hdr` would route on its last item while the upstream gets the whole value.
    ['a comma list ending in a routed name', `${META},${APP}`, 400, HTTP_REFUSAL.invalidHost],
    ['a comma list of two routed names', `${APP}, ${OTHER}`, 400, HTTP_REFUSAL.invalidHost],
    ['a trailing comma', `${APP},`, 400, HTTP_REFUSAL.invalidHost],
    ['a port beyond five digits', `${APP}:123456`, 421, REFUSAL.ipLiteral],
    ['a slash', `${APP}/x`, 421, REFUSAL.invalidServerName],
    ['an underscore', 'a_b.svc.example.test', 421, REFUSAL.invalidServerName],
    ['a space inside', `app ${APP}`, 421, REFUSAL.invalidServerName],
    ['userinfo before an allowed name', `u@${APP}`, 421, REFUSAL.invalidServerName],
    ['an allowed name as userinfo', `${APP}@127.0.0.4`, 421, REFUSAL.ipLiteral],
    ['two trailing dots', `${APP}..`, 421, REFUSAL.invalidServerName],
    ['an empty port', `${APP}:`, 421, REFUSAL.ipLiteral],
    ['a percent-encoded address', '127%2e0%2e0%2e4', 421, REFUSAL.invalidServerName],
    ['a hex address', '0x7f000004', 421, REFUSAL.ipLiteral],
    ['the metadata stand-in', META, 502, REFUSAL.destinationDenied],
  ];

  it.each(refused)('refuses a Host with %s', async (_what, host, status, reason) => {
    const before = counts();
    const since = gw.logs().length;
    const result = await http(gw, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    if (/[@ /]/.test(host) && HAPROXY.capabilities.parserRefusesMalformedHost) {
      // HAProxy's own parser refuses it (400) before any rule of the gateway runs; the line
      // comes from error-log-format, JSON like every other one, with the parser's reason.
      expect(statuses(result.received)).toEqual([400]);
      const log = await gw.waitForLog(
        (l) => l.frontend === FRONTEND.http && l.refusal === CONNECTION_REFUSAL.badHttpRequest,
        { since },
      );
      expect(log).toMatchObject({ status: 400, method: '<BADREQ>', client: '127.0.0.1' });
    } else {
      expect(statuses(result.received)).toEqual([status]);
      await gw.waitForLog((l) => l.frontend === FRONTEND.http && l.refusal === reason, { since });
    }
    expect(counts()).toEqual(before);
  });

  it('routes a Host with a port to the route of its name (the control case for the refusals above)', async () => {
    const before = counts();
    const result = await http(gw, `GET / HTTP/1.1\r\nHost: ${APP}:8080\r\nConnection: close\r\n\r\n`);
    expect(statuses(result.received)).toEqual([200]);
    expect(httpUpstream.requests.length).toBe(before.http + 1);
  });

  it('refuses two differing Host header lines with a JSON line and its reason; equal ones arrive as one', async () => {
    const before = counts();
    // HAProxy's parser folds equal Host lines into one before any rule: one value, one name.
    const same = await http(
      gw,
      `GET / HTTP/1.1\r\nHost: ${APP}\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`,
    );
    expect(statuses(same.received)).toEqual([200]);
    expect(httpUpstream.requests.length).toBe(before.http + 1);
    expect(httpUpstream.requests.at(-1)?.headers.host).toBe(APP);
    before.http += 1;
    before.httpConnections = httpUpstream.connections.length;
    const since = gw.logs().length;
    const result = await http(
      gw,
      `GET / HTTP/1.1\r\nHost: ${APP}\r\nHost: ${META}\r\nConnection: close\r\n\r\n`,
    );
    expect(statuses(result.received)).toEqual([400]);
    // HAProxy's parser refuses differing Host lines itself; the gateway's rule backs it up.
    const log = await gw.waitForLog(
      (l) =>
        l.frontend === FRONTEND.http &&
        (l.refusal === CONNECTION_REFUSAL.badHttpRequest || l.refusal === HTTP_REFUSAL.invalidHost),
      { since },
    );
    expect(log.status).toBe(400);
    expect(counts()).toEqual(before);
  });

  it('refuses HTTP/1.0 without a Host header', async () => {
    const before = counts();
    const since = gw.logs().length;
    const result = await http(gw, 'GET / HTTP/1.0\r\n\r\n');
    expect(statuses(result.received)).toEqual([421]);
    await gw.waitForLog((l) => l.frontend === FRONTEND.http && l.refusal === REFUSAL.noServerName, { since });
    expect(counts()).toEqual(before);
  });

  it('routes and guards every request of a keep-alive connection afresh', async () => {
    const before = counts();
    const requests = [APP, OTHER, META, APP]
      .map(
        (host, i, all) =>
          `GET /${i} HTTP/1.1\r\nHost: ${host}\r\n${i === all.length - 1 ? 'Connection: close\r\n' : ''}\r\n`,
      )
      .join('');
    const result = await http(gw, requests);
    expect(statuses(result.received)).toEqual([200, 200, 502, 200]);
    const bodies = result.received.toString('latin1').match(/"upstream":"[a-z]+"/g);
    expect(bodies).toEqual(['"upstream":"app"', '"upstream":"other"', '"upstream":"app"']);
    expect(httpUpstream.requests.length).toBe(before.http + 2);
    expect(otherHttp.requests.length).toBe(before.other + 1);
    expect(decoyHttp.connections.length).toBe(before.decoyHttp);
  });

  it('refuses CONNECT, to another host or to a route itself', async () => {
    const before = counts();
    const other = await http(gw, `CONNECT 127.0.0.4:443 HTTP/1.1\r\nHost: ${APP}\r\n\r\n`);
    expect(statuses(other.received)[0]).toBeGreaterThanOrEqual(400);
    const since = gw.logs().length;
    const route = await http(gw, `CONNECT ${APP}:80 HTTP/1.1\r\nHost: ${APP}:80\r\n\r\n`);
    expect(statuses(route.received)).toEqual([405]);
    await gw.waitForLog((l) => l.refusal === HTTP_REFUSAL.methodNotAllowed && l.method === 'CONNECT', {
      since,
    });
    expect(counts()).toEqual(before);
  });

  it('never lets a request smuggled behind Transfer-Encoding and Content-Length reach a denied upstream', async () => {
    const before = counts();
    const smuggled = `GET /smuggled HTTP/1.1\r\nHost: ${META}\r\n\r\n`;
    const head = [
      'POST / HTTP/1.1',
      `Host: ${APP}`,
      `Content-Length: ${5 + smuggled.length}`,
      'Transfer-Encoding: chunked',
      '',
      `0\r\n\r\n${smuggled}`,
    ].join('\r\n');
    const result = await http(gw, head);
    const codes = statuses(result.received);
    expect(codes.length).toBeGreaterThan(0);
    expect(decoyHttp.connections.length).toBe(before.decoyHttp);
    // Whatever reached the app is the POST alone, without the smuggled request inside.
    for (const request of httpUpstream.requests.slice(before.http)) {
      expect(request.url).toBe('/');
      expect(request.headers['content-length']).toBeUndefined();
    }
    if (codes.length > 1) expect(codes[1]).toBe(502);
  });

  it('refuses obfuscated Transfer-Encoding values instead of guessing the framing', async () => {
    const before = counts();
    for (const te of ['chunked, identity', 'xchunked', 'chunked\u000b']) {
      const result = await http(
        gw,
        `POST / HTTP/1.1\r\nHost: ${APP}\r\nContent-Length: 3\r\nTransfer-Encoding: ${te}\r\nConnection: close\r\n\r\nabc`,
      );
      const [status] = statuses(result.received);
      expect(status, te).toBe(400);
    }
    expect(counts()).toEqual(before);
  });

  it('drops client-supplied forwarding headers and sends only the real client address', async () => {
    const before = counts();
    const result = await http(
      gw,
      [
        'GET / HTTP/1.1',
        `Host: ${APP}`,
        'X-Forwarded-For: 169.254.169.254',
        'x-forwarded-for: 10.0.0.1',
        'Forwarded: for=169.254.169.254;proto=https',
        'X-Real-IP: 169.254.169.254',
        'X_Forwarded_For: 169.254.169.254',
        'x_real_ip: 169.254.169.254',
        'Connection: close',
        '',
        '',
      ].join('\r\n'),
    );
    expect(statuses(result.received)).toEqual([200]);
    const request = httpUpstream.requests[before.http];
    expect(request?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(request?.headers.forwarded).toBeUndefined();
    expect(request?.headers['x-real-ip']).toBeUndefined();
    expect(request?.headers.x_forwarded_for).toBeUndefined();
    expect(request?.headers.x_real_ip).toBeUndefined();
  });

  it('refuses a request head larger than the buffer without reaching an upstream', async () => {
    const before = counts();
    const result = await http(
      gw,
      `GET / HTTP/1.1\r\nHost: ${APP}\r\nX-Pad: ${'a'.repeat(20_000)}\r\nConnection: close\r\n\r\n`,
    );
    const [status] = statuses(result.received);
    expect(status === undefined || status >= 400).toBe(true);
    expect(result.closedBy).toBe('peer');
    expect(counts()).toEqual(before);
  });
});

/** HTTP/2 in clear (prior knowledge) to the HTTP listener: each stream's status and body. */
async function h2Requests(
  harness: GatewayHarness,
  requests: http2.OutgoingHttpHeaders[],
): Promise<Array<{ status: number; body: string }>> {
  const session = http2.connect(`http://127.0.0.1:${harness.ports.http}`);
  session.on('error', () => {});
  const timer = setTimeout(() => session.destroy(), 5000);
  try {
    return await Promise.all(
      requests.map(
        (headers) =>
          new Promise<{ status: number; body: string }>((resolve) => {
            const stream = session.request(headers);
            let status = 0;
            let body = '';
            stream.on('response', (h) => {
              status = Number(h[':status']);
            });
            stream.setEncoding('utf8');
            stream.on('data', (chunk: string) => {
              body += chunk;
            });
            stream.on('error', () => resolve({ status: -1, body }));
            stream.on('close', () => resolve({ status, body }));
            stream.end();
          }),
      ),
    );
  } finally {
    clearTimeout(timer);
    session.destroy();
  }
}

describe('HTTP/2 and slow clients on the HTTP listener', () => {
  it('routes and guards every HTTP/2 stream by its own authority', async () => {
    const before = counts();
    const [app, other, meta] = await h2Requests(gw, [
      { ':path': '/a', ':authority': APP },
      { ':path': '/b', ':authority': OTHER },
      { ':path': '/c', ':authority': META },
    ]);
    expect(app).toMatchObject({ status: 200, body: expect.stringContaining('"upstream":"app"') });
    expect(other).toMatchObject({ status: 200, body: expect.stringContaining('"upstream":"other"') });
    expect(meta?.status).toBe(502);
    expect(decoyHttp.connections.length).toBe(before.decoyHttp);
  });

  it('refuses an HTTP/2 :authority that is a comma list, with its reason', async () => {
    const before = counts();
    let since = gw.logs().length;
    const [list] = await h2Requests(gw, [{ ':path': '/', ':authority': `${META},${APP}` }]);
    expect(list?.status).toBe(400);
    await gw.waitForLog((l) => l.frontend === FRONTEND.http && l.refusal === HTTP_REFUSAL.invalidHost, {
      since,
    });
    since = gw.logs().length;
    const [spaced] = await h2Requests(gw, [{ ':path': '/', ':authority': `${APP}, ${OTHER}` }]);
    // HAProxy's HTTP/2 parser refuses a space itself: 2.6 answers the stream 400, 3.2 closes the
    // connection. Either way no rule ran, and the line carries the parser's reason.
    expect(spaced?.status).toBe(HAPROXY.capabilities.parserRefusesMalformedHost ? -1 : 400);
    await gw.waitForLog(
      (l) => l.frontend === FRONTEND.http && l.refusal === CONNECTION_REFUSAL.badHttpRequest,
      { since },
    );
    expect(counts()).toEqual(before);
  });

  it('refuses an HTTP/2 CONNECT stream', async () => {
    const before = counts();
    const [result] = await h2Requests(gw, [{ ':method': 'CONNECT', ':authority': `${APP}:80` }]);
    expect(result?.status).toBe(405);
    expect(counts()).toEqual(before);
  });

  it('routes by the HTTP/2 authority and never by a host header that disagrees with it', async () => {
    const before = counts();
    const [result] = await h2Requests(gw, [{ ':path': '/', ':authority': APP, host: META }]);
    // HAProxy rebuilds Host from :authority: the checked name is the one the upstream sees.
    expect(result).toMatchObject({ status: 200, body: expect.stringContaining('"upstream":"app"') });
    expect(httpUpstream.requests.at(-1)?.headers.host).toBe(APP);
    expect(decoyHttp.connections.length).toBe(before.decoyHttp);
  });

  it('closes a request head that never completes, without reaching an upstream, logged as JSON (408)', async () => {
    const before = counts();
    const since = gw.logs().length;
    const result = await sendRaw({
      host: '127.0.0.1',
      port: gw.ports.http,
      bytes: Buffer.from(`GET / HTTP/1.1\r\nHost: ${APP}\r\nX-Slow: `, 'latin1'),
      timeoutMs: 5000,
    });
    expect(result.closedBy).toBe('peer');
    expect(statuses(result.received)).toEqual([408]);
    // Logged by error-log-format (no request, no rule ran): every number a number, a reason.
    const log = await gw.waitForLog(
      (l) => l.frontend === FRONTEND.http && l.refusal === CONNECTION_REFUSAL.badHttpRequest,
      { since },
    );
    expect(log).toMatchObject({ status: 408, client: '127.0.0.1' });
    expect(typeof log.duration_ms).toBe('number');
    expect(counts()).toEqual(before);
  });
});

describe('PROXY protocol trust', () => {
  const tlsDestination = () => `127.0.0.1:${gwp.ports.tls}`;
  const v2 = (source: string) => proxyV2({ source, destination: tlsDestination() });
  const hello = () => buildClientHello({ serverName: APP });

  it('admits an allowed carried source (the control case for the refusals below)', async () => {
    const before = counts();
    const { log } = await probe(gwp, [v2('203.0.113.7:40000'), hello()], {
      match: (l) => l.client === '203.0.113.7',
      timeoutMs: 300,
    });
    expect(log).toMatchObject({ route: APP, upstream: '127.0.0.2', refusal: '-' });
    await upstream.waitForConnections(before.upstream + 1);
  });

  it('refuses a trusted peer that claims its own address as the client (a forged LOCAL)', async () => {
    await expectTlsRefused(gwp, [v2(`127.0.0.1:40000`), hello()], REFUSAL.proxyLocal);
  });

  it('refuses a trusted peer that claims another address of the trusted range', async () => {
    await expectTlsRefused(gwp, [v2('127.0.0.9:40000'), hello()], REFUSAL.sourceNotAllowed);
  });

  it('refuses TLS data after a LOCAL header (an NLB health check never sends any)', async () => {
    await expectTlsRefused(gwp, [proxyV2Local(), hello()], REFUSAL.proxyLocal);
  });

  it('refuses TLS data after a v1 UNKNOWN header', async () => {
    await expectTlsRefused(gwp, [proxyV1Unknown(), hello()], REFUSAL.proxyLocal);
  });

  /** Sends `bytes` from the trusted peer and returns the JSON line of the refusal (error-log-format). */
  async function connectionRefusal(port: number, bytes: Buffer[], end = false) {
    const before = counts();
    const since = gwp.logs().length;
    const result = await sendRaw({ host: '127.0.0.1', port, bytes, end, timeoutMs: INSPECT_DELAY_MS * 4 });
    expect(result.closedBy).toBe(end ? result.closedBy : 'peer');
    const frontend = port === gwp.ports.tls ? FRONTEND.tls : FRONTEND.http;
    const log = await gwp.waitForLog(
      (l) => l.frontend === frontend && String(l.refusal).startsWith('proxy-header-'),
      { since },
    );
    expect(counts()).toEqual(before);
    return log;
  }

  const broken: Array<[string, () => Buffer[], boolean, string]> = [
    ['no header at all (TLS first)', () => [hello()], false, CONNECTION_REFUSAL.proxyHeaderMissing],
    [
      'a v1 header cut short, then close',
      () => [Buffer.from('PROXY TCP4 203.0.113.7 12')],
      true,
      CONNECTION_REFUSAL.proxyHeaderTruncated,
    ],
    [
      'a malformed v1 header',
      () => [Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 40000\r\n'), hello()],
      false,
      CONNECTION_REFUSAL.proxyHeaderInvalid,
    ],
    [
      'a v1 header of the wrong family (TCP6 with IPv4 addresses)',
      () => [Buffer.from('PROXY TCP6 203.0.113.7 127.0.0.1 40000 443\r\n'), hello()],
      false,
      CONNECTION_REFUSAL.proxyHeaderInvalid,
    ],
    [
      'a v2 PROXY header of family AF_UNSPEC',
      () => [encodeProxyV2({ command: 'proxy', family: 'unspec' }), hello()],
      false,
      CONNECTION_REFUSAL.proxyHeaderInvalid,
    ],
    [
      'a v2 PROXY header of family AF_UNIX',
      () => [encodeProxyV2({ command: 'proxy', family: 'unix' }), hello()],
      false,
      CONNECTION_REFUSAL.proxyHeaderInvalid,
    ],
    ['nothing, then close', () => [], true, CONNECTION_REFUSAL.proxyHeaderClosed],
  ];

  it.each(broken)(
    'refuses %s at connection level on the TLS listener, with a JSON line and its reason',
    async (_what, bytes, end, reason) => {
      const log = await connectionRefusal(gwp.ports.tls, bytes(), end);
      expect(log).toMatchObject({ refusal: reason, client: '127.0.0.1', peer: '127.0.0.1' });
      expect(typeof log.error).toBe('string');
      expect(log.error).not.toBe('-');
    },
  );

  it('refuses a broken PROXY header on the HTTP listener with a JSON line and its reason', async () => {
    const get = Buffer.from(`GET / HTTP/1.1\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`);
    expect((await connectionRefusal(gwp.ports.http, [get])).refusal).toBe(
      CONNECTION_REFUSAL.proxyHeaderMissing,
    );
    const unix = encodeProxyV2({ command: 'proxy', family: 'unix' });
    expect((await connectionRefusal(gwp.ports.http, [unix, get])).refusal).toBe(
      CONNECTION_REFUSAL.proxyHeaderInvalid,
    );
  });

  it("reads a trusted peer's v1 address with leading zeros as decimal, exactly what it could claim without them", async () => {
    // HAProxy parses PROXY v1 addresses leniently (`010.9.0.1` is 10.9.0.1, not octal) and has no
    // fetch telling v1 from v2, so the gateway cannot refuse the spelling. Only trusted peers'
    // headers are read at all, and those may claim any source anyway (docs/gateway.md).
    const before = counts();
    const header = Buffer.from('PROXY TCP4 203.000.113.007 127.0.0.1 40000 443\r\n');
    const { log } = await probe(gwp, [header, hello()], {
      match: (l) => l.peer === '127.0.0.1',
      timeoutMs: 400,
    });
    expect(log.client).toBe('203.0.113.7');
    expect(log.refusal).toBe('-');
    await upstream.waitForConnections(before.upstream + 1);
  });

  it('still accepts a bare LOCAL health check without an allowlist entry and without logging it', async () => {
    const since = gwp.logs().length;
    const before = counts();
    const result = await sendRaw({
      host: '127.0.0.1',
      port: gwp.ports.tls,
      bytes: [proxyV2Local()],
      end: true,
      timeoutMs: INSPECT_DELAY_MS * 4,
    });
    expect(result.closedBy).toBe('peer');
    expect(result.error).toBeUndefined();
    // A logged connection afterwards proves the log is flowing; the health check left no line.
    await probe(gwp, [v2('203.0.113.8:40000'), hello()], {
      match: (l) => l.client === '203.0.113.8',
      timeoutMs: 300,
    });
    expect(
      gwp
        .logs()
        .slice(since)
        .filter((l) => l.client === '127.0.0.1'),
    ).toEqual([]);
    expect(decoy.connections.length).toBe(before.decoy);
  });

  it('refuses a PROXY header from an untrusted peer even when it claims an allowed source', async () => {
    const before = counts();
    const since = gwp.logs().length;
    const result = await sendRaw({
      host: '127.0.0.1',
      port: gwp.ports.tls,
      localAddress: '127.0.0.5',
      bytes: [v2('203.0.113.7:40000'), hello()],
      timeoutMs: INSPECT_DELAY_MS * 4,
    });
    expect(result.closedBy).toBe('peer');
    await gwp.waitForLog((l) => l.peer === '127.0.0.5' && l.refusal === REFUSAL.untrustedPeer, { since });
    expect(counts()).toEqual(before);
  });

  it('reads only the first of two PROXY headers and refuses the second as data', async () => {
    for (const [first, second] of [
      [proxyV2Local(), v2('203.0.113.7:40000')],
      [v2('203.0.113.7:40000'), v2('203.0.113.9:40000')],
      [v2('198.51.100.7:40000'), v2('203.0.113.7:40000')],
      [proxyV1({ source: '203.0.113.7:40000', destination: tlsDestination() }), v2('203.0.113.9:40000')],
    ] as const) {
      const before = counts();
      const { result, log } = await probe(gwp, [Buffer.concat([first, second]), hello()]);
      expect(result.closedBy).toBe('peer');
      expect(log.refusal).not.toBe('-');
      expect(counts()).toEqual(before);
    }
  });

  it('admits an IPv4-mapped IPv6 source as the IPv4 address it is, and nothing around it', async () => {
    const admitted = async (source: string) => {
      const before = counts();
      const { log } = await probe(
        gwp,
        [proxyV2({ source, destination: `[::1]:${gwp.ports.tls}` }), hello()],
        {
          timeoutMs: 400,
        },
      );
      if (log.refusal === '-') await upstream.waitForConnections(before.upstream + 1);
      return log.refusal;
    };
    expect(await admitted('[::ffff:203.0.113.7]:40000')).toBe('-');
    expect(await admitted('[::ffff:198.51.100.7]:40000')).toBe(REFUSAL.sourceNotAllowed);
    expect(await admitted('[2001:db8:2::7]:40000')).toBe(REFUSAL.sourceNotAllowed);
  });

  it('refuses an HTTP request after a LOCAL header or a forged LOCAL, without an allowlist entry', async () => {
    const before = counts();
    const get = `GET / HTTP/1.1\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`;
    for (const preamble of [
      proxyV2Local(),
      proxyV2({ source: '127.0.0.1:40000', destination: `127.0.0.1:${gwp.ports.http}` }),
    ]) {
      const since = gwp.logs().length;
      const result = await http(gwp, get, preamble);
      expect(statuses(result.received)).toEqual([403]);
      await gwp.waitForLog((l) => l.frontend === FRONTEND.http && l.refusal === REFUSAL.proxyLocal, {
        since,
      });
    }
    expect(counts()).toEqual(before);
  });
});

describe('allowlist', () => {
  it('denies everyone when the list is empty', async () => {
    const runtime = new HaproxyRuntime({ adminSocket: gwp.layout.adminSocket });
    await runtime.replaceAcl(gwp.layout.allowlist, []);
    try {
      for (const source of ['203.0.113.7:40000', '[2001:db8:1::7]:40000', '[::ffff:203.0.113.7]:40000']) {
        const destination = source.startsWith('[') ? `[::1]:${gwp.ports.tls}` : `127.0.0.1:${gwp.ports.tls}`;
        await expectTlsRefused(
          gwp,
          [proxyV2({ source, destination }), buildClientHello({ serverName: APP })],
          REFUSAL.sourceNotAllowed,
        );
      }
    } finally {
      await runtime.replaceAcl(gwp.layout.allowlist, [ALLOWED_V4, ALLOWED_V6]);
    }
  });

  it('refuses entries that allow every IPv4 client, including the IPv6 networks HAProxy matches them with', () => {
    const config = parseFleetConfig({ fleet: 'policy' });
    for (const entry of ['0.0.0.0/0', '::/0', '::ffff:0:0/96', '::/80', '::/1']) {
      expect(normaliseAllowlist([entry]).kind, entry).toBe('invalid');
      expect(() => renderAllowlist(config, [entry]), entry).toThrow(/allows every address/);
    }
    // A narrow IPv4-mapped network is a plain IPv4 network: accepted.
    expect(normaliseAllowlist(['::ffff:203.0.113.0/120']).kind).toBe('ok');
  });
});
