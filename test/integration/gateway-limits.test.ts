/**
 * Per-source limits (`limits.perSource`) against a real HAProxy behind an NLB stand-in (PROXY v2
 * from 127.0.0.1): one client address cannot hold every `maxconn` slot with slow hellos, nor open
 * connections faster than its rate; each refusal is logged with its reason, and other sources
 * keep getting through.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRONTEND, REFUSAL } from '../../proxy/haproxy/index.ts';
import { buildClientHello } from '../support/client-hello.ts';
import { type DnsServer, startDnsServer } from '../support/dns.ts';
import { freePort, type GatewayHarness, startGateway } from '../support/gateway.ts';
import { HAPROXY } from '../support/haproxy.ts';
import { sendRaw } from '../support/net.ts';
import { proxyV2 } from '../support/proxy-protocol.ts';
import { startTcpUpstream, type Upstream } from '../support/tls.ts';

const APP = 'app.example.test';
const MAXCONN = 30;
const PER_SOURCE = 5;
const RATE = 40;
const INSPECT_DELAY_MS = 3000;

let dns: DnsServer;
let upstream: Upstream;
let gw: GatewayHarness;

beforeAll(async () => {
  const tlsPort = await freePort('127.0.0.2');
  upstream = await startTcpUpstream({ host: '127.0.0.2', port: tlsPort });
  dns = await startDnsServer({ records: (name) => (name === APP ? ['127.0.0.2'] : undefined), ttl: 0 });
  gw = await startGateway({
    config: {
      fleet: 'limits',
      allowLoopbackDestinations: true,
      proxyProtocol: { enabled: true, trustedPeers: ['127.0.0.1/32'] },
      resolvers: { nameservers: [dns.address], timeoutMs: 200, retries: 1 },
      limits: {
        maxconn: MAXCONN,
        inspectDelayMs: INSPECT_DELAY_MS,
        httpRequestTimeoutMs: INSPECT_DELAY_MS,
        perSource: { maxConnections: PER_SOURCE, maxConnectionRate: RATE, ratePeriodMs: 60_000 },
      },
      routes: [
        {
          serverName: APP,
          upstream: { port: tlsPort, httpPort: tlsPort },
          allowedDestinations: ['127.0.0.0/8'],
        },
      ],
    },
    allowlist: ['203.0.113.0/24'],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all([dns?.close(), upstream?.close()]);
});

/** A connection from the NLB stand-in carrying `source`, that sends `bytes` and holds on. */
function hold(port: number, source: string, bytes: Buffer): { socket: net.Socket; closed: Promise<void> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  socket.once('connect', () =>
    socket.write(Buffer.concat([proxyV2({ source, destination: `127.0.0.1:${port}` }), bytes])),
  );
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve())) };
}

const linesOf = (client: string, since: number) =>
  gw
    .logs()
    .slice(since)
    .filter((l) => l.client === client);

describe(`per-source limits (${HAPROXY.label})`, () => {
  it('keeps one source with slow hellos from holding every slot; another source still gets through at once', async () => {
    const since = gw.logs().length;
    const greedy = '203.0.113.10';
    // The whole listener's worth of connections, each stalled after one byte of a hello.
    const held = Array.from({ length: MAXCONN }, (_, i) =>
      hold(gw.ports.tls, `${greedy}:${41000 + i}`, Buffer.from([0x16])),
    );
    try {
      // Everything above the source's share is refused at once, each with a line and its reason.
      await expect
        .poll(
          () => linesOf(greedy, since).filter((l) => l.refusal === REFUSAL.sourceConnectionLimit).length,
          {
            timeout: 5000,
          },
        )
        .toBe(MAXCONN - PER_SOURCE);
      // Another source is routed…
      const before = upstream.connections.length;
      const other = await sendRaw({
        host: '127.0.0.1',
        port: gw.ports.tls,
        bytes: [
          proxyV2({ source: '203.0.113.20:40000', destination: `127.0.0.1:${gw.ports.tls}` }),
          buildClientHello({ serverName: APP }),
        ],
        timeoutMs: 300,
      });
      expect(other.error).toBeUndefined();
      await upstream.waitForConnections(before + 1);
      // …while the greedy source still holds its share: none of its hellos has timed out yet.
      expect(
        held.filter(({ socket }) => !socket.destroyed && socket.readyState === 'open').length,
      ).toBeGreaterThanOrEqual(PER_SOURCE);
      expect(linesOf(greedy, since).filter((l) => l.refusal === REFUSAL.clientHelloIncomplete)).toEqual([]);
      const log = await gw.waitForLog((l) => l.client === '203.0.113.20', { since });
      expect(log).toMatchObject({ frontend: FRONTEND.tls, route: APP, refusal: '-' });
    } finally {
      await Promise.all(held.map(({ closed }) => closed));
      for (const { socket } of held) socket.destroy();
    }
    // The share it held ran into the hello deadline, logged as such (the line follows the close).
    await expect
      .poll(() => linesOf(greedy, since).filter((l) => l.refusal === REFUSAL.clientHelloIncomplete).length)
      .toBe(PER_SOURCE);
  });

  it('refuses HTTP requests of a source over its share with 429 and the reason', async () => {
    const since = gw.logs().length;
    const source = '203.0.113.30';
    // Request heads that never complete: each holds its connection until the request timeout.
    const held = Array.from({ length: PER_SOURCE }, (_, i) =>
      hold(gw.ports.http, `${source}:${42000 + i}`, Buffer.from('GET / HTTP/1.1\r\nHost: ')),
    );
    try {
      await new Promise((r) => setTimeout(r, 200));
      const result = await sendRaw({
        host: '127.0.0.1',
        port: gw.ports.http,
        bytes: [
          proxyV2({ source: `${source}:42999`, destination: `127.0.0.1:${gw.ports.http}` }),
          Buffer.from(`GET / HTTP/1.1\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`),
        ],
        timeoutMs: 1000,
      });
      expect(result.received.toString('latin1')).toMatch(/^HTTP\/1\.1 429 /);
      const log = await gw.waitForLog(
        (l) => l.client === source && l.refusal === REFUSAL.sourceConnectionLimit,
        {
          since,
        },
      );
      expect(log).toMatchObject({ frontend: FRONTEND.http, status: 429 });
    } finally {
      for (const { socket } of held) socket.destroy();
      await Promise.all(held.map(({ closed }) => closed));
    }
  });

  it('refuses a source that opens connections faster than its rate, and only that source', async () => {
    const since = gw.logs().length;
    const source = '203.0.113.40';
    const unrouted = buildClientHello({ serverName: 'nowhere.example.test' });
    for (let i = 0; i < RATE + 5; i++) {
      const result = await sendRaw({
        host: '127.0.0.1',
        port: gw.ports.tls,
        bytes: [
          proxyV2({ source: `${source}:${43000 + i}`, destination: `127.0.0.1:${gw.ports.tls}` }),
          unrouted,
        ],
        timeoutMs: 1000,
      });
      expect(result.closedBy).toBe('peer');
    }
    await expect.poll(() => linesOf(source, since).length, { timeout: 5000 }).toBe(RATE + 5);
    const reasons = linesOf(source, since).map((l) => l.refusal);
    expect(reasons.filter((r) => r === REFUSAL.noRoute)).toHaveLength(RATE);
    expect(reasons.filter((r) => r === REFUSAL.sourceRateLimit)).toHaveLength(5);
    // Another source is not affected.
    await sendRaw({
      host: '127.0.0.1',
      port: gw.ports.tls,
      bytes: [proxyV2({ source: '203.0.113.41:40000', destination: `127.0.0.1:${gw.ports.tls}` }), unrouted],
      timeoutMs: 1000,
    });
    const log = await gw.waitForLog((l) => l.client === '203.0.113.41', { since });
    expect(log.refusal).toBe(REFUSAL.noRoute);
  });
});
