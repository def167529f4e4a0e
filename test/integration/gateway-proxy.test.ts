/**
 * The gateway behind an NLB stand-in: PROXY protocol from the trusted peer 127.0.0.1, the source
 * allowlist replaced at run time, the HTTP listener, health, metrics and a seamless reload. One
 * real HAProxy for the whole file, started with the image's arguments.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRONTEND, parseSessionKey, REFUSAL, SESSION_TABLE } from '../../proxy/haproxy/index.ts';
import { HaproxyRuntime } from '../../proxy/haproxy/runtime.ts';
import { buildClientHello } from '../support/client-hello.ts';
import { type DnsServer, startDnsServer } from '../support/dns.ts';
import { freePort, type GatewayHarness, startGateway } from '../support/gateway.ts';
import { sendRaw } from '../support/net.ts';
import { proxyV1, proxyV2, proxyV2Local } from '../support/proxy-protocol.ts';
import {
  type HttpUpstream,
  startHttpUpstream,
  startTlsUpstream,
  type TestPki,
  testPki,
  type Upstream,
} from '../support/tls.ts';

const APP = 'app.example.test';
const NEW = 'new.example.test';
const ALLOWED_V4 = '203.0.113.0/24';
const ALLOWED_V6 = '2001:db8:1::/48';
/** Plays a probe from inside the task (healthCheck.headerlessPeers): asks /healthz without a header. */
const IN_TASK = '127.0.0.6';

let pki: TestPki;
let dns: DnsServer;
let upstream: Upstream;
let httpUpstream: HttpUpstream;
let gw: GatewayHarness;
let runtime: HaproxyRuntime;
let routes: Array<Record<string, unknown>>;

function fleet(extraRoutes: Array<Record<string, unknown>> = []) {
  return {
    fleet: 'proxy-test',
    allowLoopbackDestinations: true,
    proxyProtocol: { enabled: true, trustedPeers: ['127.0.0.1/32'] },
    // Not the loopback default: other loopback addresses here play peers outside the task.
    healthCheck: { headerlessPeers: [`${IN_TASK}/32`] },
    resolvers: { nameservers: [dns.address], holdValidMs: 0, timeoutMs: 300, retries: 1 },
    limits: { inspectDelayMs: 1000, maxconn: 200 },
    routes: [...routes, ...extraRoutes],
  };
}

beforeAll(async () => {
  pki = await testPki({ serverNames: [APP, NEW] });
  const tlsPort = await freePort('127.0.0.2');
  const httpPort = await freePort('127.0.0.2');
  upstream = await startTlsUpstream({
    host: '127.0.0.2',
    port: tlsPort,
    cert: pki.server.cert,
    key: pki.server.key,
  });
  httpUpstream = await startHttpUpstream({ host: '127.0.0.2', port: httpPort, name: 'app' });
  dns = await startDnsServer({
    records: { [APP]: ['127.0.0.2'], [NEW]: ['127.0.0.2'], 'meta.example.test': ['169.254.169.254'] },
  });
  routes = [
    { serverName: APP, upstream: { port: tlsPort, httpPort }, allowedDestinations: ['127.0.0.2/32'] },
    {
      serverName: 'meta.example.test',
      upstream: { port: tlsPort, httpPort },
      allowedDestinations: ['169.254.0.0/16'],
    },
  ];
  gw = await startGateway({ config: fleet(), allowlist: [ALLOWED_V4, ALLOWED_V6] });
  // Worker-socket operations only; master CLI commands go through the harness.
  runtime = new HaproxyRuntime({ adminSocket: gw.layout.adminSocket });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await dns?.close();
  await upstream?.close();
  await httpUpstream?.close();
  await pki?.cleanup();
});

const tlsDestination = () => `127.0.0.1:${gw.ports.tls}`;
const v2 = (source: string) =>
  proxyV2({ source, destination: source.startsWith('[') ? `[::1]:${gw.ports.tls}` : tlsDestination() });

/** A TLS client through the gateway, sending `preamble` (a PROXY header) first. */
function connectTls(
  preamble: Buffer,
  options: { servername?: string; localAddress?: string } = {},
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({
      host: '127.0.0.1',
      port: gw.ports.tls,
      localAddress: options.localAddress ?? '127.0.0.1',
    });
    raw.once('error', reject);
    raw.once('connect', () => {
      raw.write(preamble);
      const socket = tls.connect({ socket: raw, servername: options.servername ?? APP, ca: pki.ca.cert });
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed before the handshake completed')));
    });
  });
}

function roundTrip(socket: tls.TLSSocket, size = 4096): Promise<boolean> {
  const payload = randomBytes(size);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (data: Buffer) => {
      chunks.push(data);
      length += data.length;
      if (length >= size) {
        socket.off('data', onData);
        resolve(Buffer.concat(chunks).equals(payload));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(payload);
  });
}

/** Whether a TLS connection with this PROXY header gets through (true) or is closed (false). */
async function admitted(preamble: Buffer, localAddress?: string): Promise<boolean> {
  try {
    const socket = await connectTls(preamble, localAddress === undefined ? {} : { localAddress });
    socket.destroy();
    return true;
  } catch {
    return false;
  }
}

/** Current worker pids from the master CLI's `show proc` (the "# workers" section only). */
async function workerPids(): Promise<number[]> {
  const text = await gw.master('show proc');
  const section = text.split('# workers')[1]?.split('\n#')[0] ?? '';
  return [...section.matchAll(/^(\d+)\s+worker\b/gm)].map((m) => Number(m[1]));
}

/** Asks the master to reload and waits (bounded) for a new worker. */
async function reload(): Promise<void> {
  const before = await workerPids();
  await gw.master('reload');
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const now = await workerPids().catch(() => before);
    if (now.length > 0 && now.some((pid) => !before.includes(pid))) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no new worker within 10 s:\n${gw.haproxy.stderr()}`);
}

/** One HTTP/1.1 request over a raw socket (so that a PROXY header can precede it). */
async function httpRequest(
  preamble: Buffer | undefined,
  port: number,
  head: string,
): Promise<{ status: number; body: string }> {
  const bytes = preamble ? [preamble, Buffer.from(head)] : [Buffer.from(head)];
  const result = await sendRaw({ host: '127.0.0.1', port, bytes, timeoutMs: 3000, delayMs: 5 });
  const text = result.received.toString('utf8');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
  return { status, body: text.slice(text.indexOf('\r\n\r\n') + 4) };
}

describe('PROXY protocol', () => {
  it('decides the allowlist on the carried source, IPv4 and IPv6, with v2 and v1 headers', async () => {
    expect(await admitted(v2('203.0.113.7:40000'))).toBe(true);
    expect(await admitted(v2('[2001:db8:1::7]:40000'))).toBe(true);
    expect(await admitted(proxyV1({ source: '203.0.113.8:40000', destination: tlsDestination() }))).toBe(
      true,
    );
    expect(await admitted(v2('198.51.100.7:40000'))).toBe(false);
    expect(await admitted(v2('[2001:db8:2::7]:40000'))).toBe(false);
    const log = await gw.waitForLog((l) => l.client === '2001:db8:1::7');
    expect(log).toMatchObject({ peer: '127.0.0.1', sni: APP, route: APP, refusal: '-' });
    await gw.waitForLog((l) => l.client === '198.51.100.7' && l.refusal === REFUSAL.sourceNotAllowed);
  });

  it('refuses a header from an untrusted peer even when it claims an allowed source', async () => {
    const before = upstream.connections.length;
    expect(await admitted(v2('203.0.113.7:40000'), '127.0.0.5')).toBe(false);
    await gw.waitForLog((l) => l.peer === '127.0.0.5' && l.refusal === REFUSAL.untrustedPeer);
    expect(upstream.connections.length).toBe(before);
  });

  it('accepts a LOCAL header (NLB health check) without an allowlist entry, and does not log it', async () => {
    const since = gw.logs().length;
    const before = upstream.connections.length;
    // A health check connects, sends the header and nothing else; LOCAL traffic is never routed.
    const check = await sendRaw({
      host: '127.0.0.1',
      port: gw.ports.tls,
      bytes: [proxyV2Local()],
      end: true,
    });
    expect(check).toMatchObject({ closedBy: 'peer' });
    expect(check.error).toBeUndefined();
    expect(await admitted(proxyV2Local())).toBe(false);
    expect(upstream.connections.length).toBe(before);
    // A logged connection after it proves the log is flowing; the LOCAL one left no line.
    expect(await admitted(v2('203.0.113.9:40000'))).toBe(true);
    await gw.waitForLog((l) => l.client === '203.0.113.9', { since });
    // Only the LOCAL connection that sent a ClientHello is logged, as a refusal.
    expect(
      gw
        .logs()
        .slice(since)
        .filter((l) => l.client === '127.0.0.1')
        .map((l) => l.refusal),
    ).toEqual([REFUSAL.proxyLocal]);
  });

  it('closes malformed and truncated headers without reaching the upstream', async () => {
    const before = upstream.connections.length;
    const hello = buildClientHello({ serverName: APP });
    const header = v2('203.0.113.7:40000');
    const cases = [
      Buffer.concat([Buffer.from('PROXY TCP4 nonsense\r\n'), hello]),
      hello,
      header.subarray(0, 10),
      Buffer.concat([header.subarray(0, 12), Buffer.from([0x21, 0x11, 0xff, 0xff]), hello]),
    ];
    for (const bytes of cases) {
      const result = await sendRaw({
        host: '127.0.0.1',
        port: gw.ports.tls,
        bytes,
        end: true,
        timeoutMs: 3000,
      });
      expect(result.closedBy).toBe('peer');
    }
    expect(upstream.connections.length).toBe(before);
  });
});

describe('allowlist at run time', () => {
  it('replaces the list atomically without reload and keeps connections of allowed sources', async () => {
    const workersBefore = await workerPids();
    expect(workersBefore).toHaveLength(1);
    const kept = await connectTls(v2('203.0.113.7:41000'));
    expect(await admitted(v2('198.51.100.7:40000'))).toBe(false);

    const bulk = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`);
    const next = [...bulk, ALLOWED_V4, ALLOWED_V6, '198.51.100.0/24'];
    const { count } = await runtime.replaceAcl(gw.layout.allowlist, next);
    expect(count).toBe(10_003);

    expect(await admitted(v2('198.51.100.7:40000'))).toBe(true);
    expect(await admitted(v2('10.39.15.1:40000'))).toBe(true);
    expect(await admitted(v2('10.40.0.1:40000'))).toBe(false);
    expect(await roundTrip(kept)).toBe(true);
    expect(await workerPids()).toEqual(workersBefore);
    kept.destroy();
  });

  it('finds and cuts the sessions of a removed source through the session table', async () => {
    const removed = await connectTls(v2('198.51.100.20:42000'));
    const stays = await connectTls(v2('203.0.113.20:42000'));
    await runtime.replaceAcl(gw.layout.allowlist, [ALLOWED_V4, ALLOWED_V6]);
    expect(await admitted(v2('198.51.100.21:40000'))).toBe(false);

    const table = await gw.admin(`show table ${SESSION_TABLE}`);
    const peers = [...table.matchAll(/key=(\S+) use=(\d+)/g)]
      .map((m) => ({ key: parseSessionKey(m[1]!), use: Number(m[2]) }))
      .filter((e) => e.use > 0 && e.key?.client === '198.51.100.20')
      .map((e) => `${e.key!.peer}:${e.key!.peerPort}`);
    expect(peers).toHaveLength(1);
    const closed = new Promise<void>((resolve) => removed.once('close', () => resolve()));
    const cut = await runtime.cutSessions(
      (s) => s.frontend === FRONTEND.tls && peers.includes(`${s.source?.address}:${s.source?.port}`),
    );
    expect(cut).toBe(1);
    await closed;
    expect(await roundTrip(stays)).toBe(true);
    stays.destroy();
  });
});

describe('HTTP listener', () => {
  const preamble = (source: string) => proxyV2({ source, destination: `127.0.0.1:${gw.ports.http}` });

  it('routes by Host header with X-Forwarded-For set to the PROXY source', async () => {
    const before = httpUpstream.requests.length;
    const response = await httpRequest(
      preamble('203.0.113.30:43000'),
      gw.ports.http,
      `GET /hello HTTP/1.1\r\nHost: APP.Example.Test.:80\r\nX-Forwarded-For: 192.0.2.66\r\nConnection: close\r\n\r\n`,
    );
    expect(response.status).toBe(200);
    const request = httpUpstream.requests[before];
    expect(request?.url).toBe('/hello');
    expect(request?.headers['x-forwarded-for']).toBe('203.0.113.30');
    const log = await gw.waitForLog((l) => l.frontend === FRONTEND.http && l.client === '203.0.113.30');
    expect(log).toMatchObject({ host: APP, route: APP, status: 200, upstream: '127.0.0.2', method: 'GET' });
  });

  it('refuses with 403, 421 and 502 and logs the reason, without reaching the upstream', async () => {
    const before = httpUpstream.requests.length;
    const cases: Array<[string, string, number, string]> = [
      ['198.51.100.40:43000', APP, 403, REFUSAL.sourceNotAllowed],
      ['203.0.113.40:43000', 'nothing.example.test', 421, REFUSAL.noRoute],
      ['203.0.113.41:43000', '127.0.0.2:8080', 421, REFUSAL.ipLiteral],
      ['203.0.113.42:43000', '[::1]', 421, REFUSAL.ipLiteral],
      ['203.0.113.43:43000', 'meta.example.test', 502, REFUSAL.destinationDenied],
    ];
    for (const [source, host, status, reason] of cases) {
      const since = gw.logs().length;
      const response = await httpRequest(
        preamble(source),
        gw.ports.http,
        `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      expect(response.status, host).toBe(status);
      await gw.waitForLog(
        (l) => l.frontend === FRONTEND.http && l.refusal === reason && l.status === status,
        { since },
      );
    }
    // Two different Host headers (route check and upstream could read different names): HAProxy's
    // own parser answers 400 before any rule runs.
    const twoHosts = await httpRequest(
      preamble('203.0.113.44:43000'),
      gw.ports.http,
      `GET / HTTP/1.1\r\nHost: ${APP}\r\nHost: meta.example.test\r\nConnection: close\r\n\r\n`,
    );
    expect(twoHosts.status).toBe(400);
    expect(httpUpstream.requests.length).toBe(before);
  });
});

describe('health and metrics', () => {
  const get = 'GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n';
  /**
   * What an NLB health check sends to a target group with proxy_protocol_v2 enabled: the v2
   * signature, version 2 / command LOCAL (0x20), family and transport UNSPEC (0x00), no address
   * block (length 0), then its HTTP request, in one write.
   */
  const nlbHealthCheck = () => Buffer.concat([proxyV2Local(), Buffer.from(get)]);
  /**
   * The status a health listener answers `bytes` with, sent in one write from `localAddress`; 0:
   * closed unanswered (a `tcp-request connection reject` may reset it before the connect completes).
   */
  const healthStatus = async (port: number, bytes: Buffer, localAddress = '127.0.0.1') => {
    const result = await sendRaw({
      host: '127.0.0.1',
      port,
      bytes: [bytes],
      timeoutMs: 3000,
      localAddress,
    }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET') return undefined;
      throw error;
    });
    return Number(/^HTTP\/1\.[01] (\d{3})/.exec(result?.received.toString('utf8') ?? '')?.[1] ?? 0);
  };
  const ask = (bytes: Buffer, localAddress?: string) => healthStatus(gw.ports.health, bytes, localAddress);
  const healthLines = (since: number) =>
    gw
      .lines()
      .slice(since)
      .filter((l) => l.includes(FRONTEND.health));

  it('answers the NLB health check (PROXY v2 LOCAL) 503 until the sidecar sets ready, then 200, unlogged', async () => {
    // signature, version/command, family/transport, length
    expect(proxyV2Local().toString('hex')).toBe(['0d0a0d0a000d0a515549540a', '20', '00', '0000'].join(''));
    const since = gw.lines().length;
    const logsSince = gw.logs().length;
    expect(await ask(nlbHealthCheck())).toBe(503);
    await runtime.setMap(gw.layout.stateMap, 'ready', '1');
    try {
      expect(await ask(nlbHealthCheck())).toBe(200);
      // A PROXY (not LOCAL) header from the trusted peer is read the same way.
      expect(await ask(Buffer.concat([v2('203.0.113.70:40000'), Buffer.from(get)]))).toBe(200);
    } finally {
      await runtime.setMap(gw.layout.stateMap, 'ready', '0');
    }
    expect(await ask(nlbHealthCheck())).toBe(503);
    // A logged connection afterwards proves the log is flowing; health checks left no line.
    await admitted(v2('203.0.113.50:40000'));
    await gw.waitForLog((l) => l.client === '203.0.113.50', { since: logsSince });
    expect(healthLines(since)).toEqual([]);
  });

  it('refuses the trusted peer without a header, and any other peer but in-task probes, unlogged', async () => {
    const since = gw.lines().length;
    // The trusted peer (the NLB) must send its header: the request alone is not one.
    expect(await ask(Buffer.from(get))).toBe(0);
    // A peer outside trustedPeers is closed at connection, header or not.
    expect(await ask(nlbHealthCheck(), '127.0.0.5')).toBe(0);
    expect(await ask(Buffer.from(get), '127.0.0.5')).toBe(0);
    // The listener still answers, and none of the refusals was logged.
    expect(await ask(nlbHealthCheck())).toBe(503);
    expect(healthLines(since)).toEqual([]);
  });

  it('answers in-task probes (healthCheck.headerlessPeers) without a header', async () => {
    expect(await ask(Buffer.from(get), IN_TASK)).toBe(503);
    await runtime.setMap(gw.layout.stateMap, 'ready', '1');
    try {
      expect(await ask(Buffer.from(get), IN_TASK)).toBe(200);
    } finally {
      await runtime.setMap(gw.layout.stateMap, 'ready', '0');
    }
    // They are not read for a header: one is a malformed request.
    expect(await ask(nlbHealthCheck(), IN_TASK)).toBe(400);
  });

  it('answers without a header, from anyone, where the fleet config says healthCheck.proxyProtocol: false', async () => {
    const headerless = await startGateway({
      config: { ...fleet(), healthCheck: { proxyProtocol: false } },
      allowlist: [ALLOWED_V4],
    });
    try {
      const status = (bytes: Buffer, localAddress: string) =>
        healthStatus(headerless.ports.health, bytes, localAddress);
      expect(await status(Buffer.from(get), '127.0.0.1')).toBe(503);
      expect(await status(Buffer.from(get), '127.0.0.5')).toBe(503);
      // No header is read there: behind an NLB with PROXY protocol every check would fail.
      expect(await status(nlbHealthCheck(), '127.0.0.1')).toBe(400);
    } finally {
      await headerless.close();
    }
  });

  it('serves Prometheus metrics', async () => {
    const response = await httpRequest(
      undefined,
      gw.ports.metrics,
      'GET /metrics HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n',
    );
    expect(response.status).toBe(200);
    expect(response.body).toMatch(/^haproxy_frontend_current_sessions\{proxy="fe_tls"\} \d+/m);
  });
});

describe('seamless reload', () => {
  it('keeps an open connection across a route change and serves the new route after it', async () => {
    const open = await connectTls(v2('203.0.113.60:44000'));
    const newRouteBefore = await connectTls(v2('203.0.113.62:44000'), { servername: NEW }).then(
      (s) => {
        s.destroy();
        return true;
      },
      () => false,
    );
    expect(newRouteBefore).toBe(false);

    await gw.rerender(
      fleet([{ serverName: NEW, upstream: { port: upstream.port }, allowedDestinations: ['127.0.0.2/32'] }]),
      [ALLOWED_V4, ALLOWED_V6],
    );
    await reload();

    expect(await roundTrip(open, 64 * 1024)).toBe(true);
    const fresh = await connectTls(v2('203.0.113.63:44000'), { servername: NEW });
    expect(await roundTrip(fresh)).toBe(true);
    fresh.destroy();
    open.destroy();
  });
});
