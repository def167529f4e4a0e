/**
 * Resolution keep-alive on a real HAProxy 2.6 (proxy/haproxy/render-resolution.ts): connections
 * to an exact route name answer from one kept resolution instead of one DNS query each, while
 * DNS changes, denied answers and resolver failures still reach every connection's checks. The
 * keep-alive servers themselves never connect, check or log.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REFUSAL, RESOLUTION_KEEPALIVE_BACKEND } from '../../proxy/haproxy/index.ts';
import { buildClientHello } from '../support/client-hello.ts';
import { type DnsServer, startDnsServer } from '../support/dns.ts';
import { type AccessLog, freePort, type GatewayHarness, startGateway } from '../support/gateway.ts';
import { sendRaw } from '../support/net.ts';
import { type HttpUpstream, startHttpUpstream, startTcpUpstream, type Upstream } from '../support/tls.ts';

const APP = 'app.example.test';
/** Under a wildcard route: resolved per connection (the contrast, and proof the count counts). */
const WILD = 'one.pool.example.test';
/** Answers two addresses, one of them denied. */
const TWO = 'two.example.test';
/** Refresh period of kept resolutions (`timeout resolve`) and `hold valid`. */
const REFRESH_MS = 400;
const HOLD_VALID_MS = 1500;
const CONNECTIONS = 30;

let dns: DnsServer;
/** 127.0.0.2 and 127.0.0.3: legitimate echo upstreams; 127.0.0.4: denied (a connection there is a bypass). */
let first: Upstream;
let second: Upstream;
let decoy: Upstream;
let httpUpstream: HttpUpstream;
let gw: GatewayHarness;
let records: Record<string, string[]>;

beforeAll(async () => {
  const port = await freePort('127.0.0.2');
  first = await startTcpUpstream({ host: '127.0.0.2', port });
  second = await startTcpUpstream({ host: '127.0.0.3', port });
  decoy = await startTcpUpstream({ host: '127.0.0.4', port });
  const httpPort = await freePort('127.0.0.2');
  httpUpstream = await startHttpUpstream({ host: '127.0.0.2', port: httpPort, name: 'app' });
  records = { [APP]: ['127.0.0.2'], [WILD]: ['127.0.0.2'], [TWO]: ['127.0.0.4', '127.0.0.2'] };
  dns = await startDnsServer({ records: (name) => records[name], ttl: 0 });
  gw = await startGateway({
    config: {
      fleet: 'resolution',
      allowLoopbackDestinations: true,
      deniedDestinations: ['127.0.0.4/32'],
      resolvers: {
        nameservers: [dns.address],
        holdValidMs: HOLD_VALID_MS,
        timeoutMs: REFRESH_MS,
        retries: 1,
      },
      limits: { inspectDelayMs: 3000 },
      routes: [
        { serverName: APP, upstream: { port, httpPort }, allowedDestinations: ['127.0.0.0/8'] },
        { serverName: '*.pool.example.test', upstream: { port }, allowedDestinations: ['127.0.0.0/8'] },
        { serverName: TWO, upstream: { port }, allowedDestinations: ['127.0.0.0/8'] },
      ],
    },
    allowlist: ['127.0.0.0/8'],
    ownAddresses: ['127.0.0.1'],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await dns?.close();
  await Promise.all([first, second, decoy, httpUpstream].map((upstream) => upstream?.close()));
});

/** One connection with a ClientHello for `name`; its access-log line. Accepted ones are echoed back and closed. */
async function connect(name: string): Promise<AccessLog> {
  const hello = buildClientHello({ serverName: name });
  const since = gw.logs().length;
  const port = gw.ports.tls;
  await sendRaw({
    host: '127.0.0.1',
    port,
    bytes: hello,
    end: true,
    expectBytes: hello.length,
    timeoutMs: 5000,
  });
  return gw.waitForLog((l) => l.sni === name, { since });
}

/** Connects until `done` holds for a log line, at most `limitMs` (then returns the last line). */
async function connectUntil(name: string, done: (log: AccessLog) => boolean, limitMs: number) {
  const deadline = Date.now() + limitMs;
  let log = await connect(name);
  while (!done(log) && Date.now() < deadline) {
    await sleep(50);
    log = await connect(name);
  }
  return log;
}

const accepted = (logs: AccessLog[]) => logs.filter((l) => l.refusal === '-').length;

describe('resolution keep-alive', () => {
  it('answers many connections to an exact route from a handful of DNS queries', async () => {
    // The kept resolution exists from the start; wait for its first answer to be in use.
    expect(await connectUntil(APP, (l) => l.refusal === '-', 5000)).toMatchObject({ upstream: '127.0.0.2' });
    const before = { app: dns.queries(APP), upstream: first.connections.length };
    const started = Date.now();
    const logs: AccessLog[] = [];
    for (let i = 0; i < CONNECTIONS; i++) logs.push(await connect(APP));
    const elapsed = Date.now() - started;
    expect(logs.map((l) => `${l.upstream} ${l.refusal}`)).toEqual(Array(CONNECTIONS).fill('127.0.0.2 -'));
    await first.waitForConnections(before.upstream + CONNECTIONS);
    // Only the periodic refreshes: one per REFRESH_MS (and one in flight), not one per connection.
    const queries = dns.queries(APP) - before.app;
    expect(queries).toBeLessThanOrEqual(Math.ceil(elapsed / REFRESH_MS) + 1);
    expect(queries).toBeLessThan(CONNECTIONS / 2);
  });

  it('answers the HTTP listener from the same kept resolution', async () => {
    const before = { app: dns.queries(APP), requests: httpUpstream.requests.length };
    const started = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const result = await sendRaw({
        host: '127.0.0.1',
        port: gw.ports.http,
        bytes: Buffer.from(`GET / HTTP/1.1\r\nHost: ${APP}\r\nConnection: close\r\n\r\n`),
        timeoutMs: 3000,
      });
      statuses.push(Number(/^HTTP\/1\.1 (\d{3})/.exec(result.received.toString('latin1'))?.[1] ?? 0));
    }
    expect(statuses).toEqual(Array(10).fill(200));
    expect(httpUpstream.requests.length - before.requests).toBe(10);
    const queries = dns.queries(APP) - before.app;
    // Bounded by the refresh rate, however slow the machine; and fewer than one per request.
    expect(queries).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / REFRESH_MS) + 1);
    expect(queries).toBeLessThan(statuses.length);
  });

  it('still resolves a wildcard route once per connection (its names are not known in advance)', async () => {
    const before = dns.queries(WILD);
    const logs: AccessLog[] = [];
    for (let i = 0; i < 5; i++) logs.push(await connect(WILD));
    expect(accepted(logs)).toBe(5);
    expect(dns.queries(WILD) - before).toBeGreaterThanOrEqual(5);
  });

  it('sees a DNS change within hold valid and checks every cached answer against the guard', async () => {
    const counts = () => ({ first: first.connections.length, second: second.connections.length });
    records = { ...records, [APP]: ['127.0.0.3'] };
    const moved = await connectUntil(APP, (l) => l.upstream === '127.0.0.3', HOLD_VALID_MS + 2 * REFRESH_MS);
    expect(moved).toMatchObject({ upstream: '127.0.0.3', refusal: '-' });
    await second.waitForConnections(1);

    // A denied answer: refused on every connection for as long as it is cached, nothing reaches it.
    records = { ...records, [APP]: ['127.0.0.4'] };
    const denied = await connectUntil(
      APP,
      (l) => l.refusal === REFUSAL.destinationDenied,
      HOLD_VALID_MS + 2 * REFRESH_MS,
    );
    expect(denied).toMatchObject({
      upstream: '127.0.0.4',
      refusal: REFUSAL.destinationDenied,
      connect_ms: -1,
    });
    const during = counts();
    const logs: AccessLog[] = [];
    for (let i = 0; i < 5; i++) logs.push(await connect(APP));
    expect(logs.map((l) => l.refusal)).toEqual(Array(5).fill(REFUSAL.destinationDenied));
    expect(counts()).toEqual(during);
    expect(decoy.connections).toHaveLength(0);

    records = { ...records, [APP]: ['127.0.0.2'] };
    const back = await connectUntil(APP, (l) => l.refusal === '-', HOLD_VALID_MS + 2 * REFRESH_MS);
    expect(back).toMatchObject({ upstream: '127.0.0.2' });
  });

  it('checks the one cached address each connection goes to when the name has several', async () => {
    const before = { first: first.connections.length, queries: dns.queries(TWO) };
    const logs: AccessLog[] = [];
    for (let i = 0; i < 8; i++) logs.push(await connect(TWO));
    for (const log of logs) {
      expect([`127.0.0.2 -`, `127.0.0.4 ${REFUSAL.destinationDenied}`]).toContain(
        `${log.upstream} ${log.refusal}`,
      );
    }
    await first.waitForConnections(before.first + accepted(logs));
    expect(decoy.connections).toHaveLength(0);
    expect(dns.queries(TWO) - before.queries).toBeLessThan(8);
  });

  it('refuses while the resolver fails and recovers at the next refresh', async () => {
    const before = first.connections.length;
    dns.setFailure('servfail');
    try {
      const failed = await connectUntil(
        APP,
        (l) => l.refusal === REFUSAL.resolutionFailed,
        HOLD_VALID_MS + 2 * REFRESH_MS,
      );
      expect(failed).toMatchObject({ refusal: REFUSAL.resolutionFailed, connect_ms: -1 });
    } finally {
      dns.setFailure(undefined);
    }
    const recovered = await connectUntil(APP, (l) => l.refusal === '-', HOLD_VALID_MS + 2 * REFRESH_MS);
    expect(recovered).toMatchObject({ upstream: '127.0.0.2' });
    // Every upstream connection belongs to an accepted client connection.
    await first.waitForConnections(before + 1);
    expect(decoy.connections).toHaveLength(0);
  });

  it('never connects, checks or logs from the keep-alive servers', async () => {
    const state = await gw.admin(`show servers state ${RESOLUTION_KEEPALIVE_BACKEND}`);
    // One server per kept name, resolved (an address, not 0.0.0.0), without a check (state 0).
    const row = state
      .split('\n')
      .find((l) => l.includes(` ${RESOLUTION_KEEPALIVE_BACKEND} `))
      ?.split(' ');
    expect(row?.[3]).toBe('route0');
    expect(row?.[4]).toMatch(/^127\.0\.0\.[234]$/);
    expect(row?.[13]).toBe('0');
    expect(row?.[17]).toBe(APP);
    const stat = (await gw.admin('show stat'))
      .split('\n')
      .filter((l) => l.startsWith(`${RESOLUTION_KEEPALIVE_BACKEND},`))
      .map((l) => l.split(','));
    expect(stat.map((row) => row[1])).toEqual(['route0', 'route2', 'BACKEND']);
    // stot (column 7, sessions ever) stays 0; check_status (column 36) is empty: no health check.
    for (const row of stat) expect(row[7], row[1]).toBe('0');
    expect(stat[0]?.[36]).toBe('');
    expect(stat[1]?.[36]).toBe('');
    // The log carries JSON access lines only: address changes went elsewhere (`no log`), and
    // HAProxy's own stdout carries nothing at all.
    expect(gw.lines().filter((l) => l.trim() !== '' && !l.startsWith('{'))).toEqual([]);
    expect(gw.haproxy.lines).toEqual([]);
    expect(new Set(gw.logs().map((l) => l.frontend))).toEqual(new Set(['fe_tls', 'fe_http']));
  });
});
