import { randomUUID } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalDnsServer } from '../../embedded/dns-server.ts';
import { connectOnce, openLongLived, TrafficGenerator, type TrafficRoute } from '../../embedded/traffic.ts';
import { type LocalUpstream, startLocalUpstream } from '../../embedded/upstream.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { createCsr, generateKey } from '../../lib/pki/index.ts';

async function credential(ca: LocalAuthority, commonName: string, usage: 'server' | 'client') {
  const key = await generateKey();
  const sans = usage === 'server' ? { dns: [commonName] } : { dns: [], uri: [`spiffe://test/${commonName}`] };
  const csrPem = await createCsr(key, { commonName, ...sans });
  const { certificateId } = await ca.issue({
    csrPem,
    commonName,
    sans,
    validityDays: 1,
    idempotencyToken: randomUUID(),
    usage,
  });
  const issued = await ca.get(certificateId);
  return { certificatePem: issued.certificatePem, keyPem: key.privateKeyPem };
}

describe('the local fleet parts', () => {
  let dir: string;
  let caPem: string;
  let upstream: LocalUpstream;
  let route: TrafficRoute;
  let anonymous: TrafficRoute;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-parts-'));
    const ca = await LocalAuthority.open(join(dir, 'ca'));
    caPem = await ca.caCertificates();
    const server = await credential(ca, 'svc.parts.test', 'server');
    const client = await credential(ca, 'client', 'client');
    upstream = await startLocalUpstream({ tls: { ...server, caPem, requireClientCertificate: true } });
    route = { name: 'mtls', serverName: 'svc.parts.test', caPem, client };
    anonymous = { name: 'anonymous', serverName: 'svc.parts.test', caPem };
  });

  afterAll(async () => {
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('startLocalDnsServer', () => {
    it('answers A and AAAA for its names and NXDOMAIN otherwise, counting queries', async () => {
      const dns = await startLocalDnsServer({ records: { 'Api.Demo.Test': ['127.0.0.3', '::1'] } });
      try {
        const resolver = new Resolver({ timeout: 2000, tries: 1 });
        resolver.setServers([dns.address]);
        expect(await resolver.resolve4('api.demo.test')).toEqual(['127.0.0.3']);
        expect(await resolver.resolve6('api.demo.test')).toEqual(['::1']);
        await expect(resolver.resolve4('other.demo.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
        expect(dns.queries('API.demo.test')).toBe(2);
        dns.setRecords({ 'api.demo.test': ['127.0.0.4'] });
        expect(await resolver.resolve4('api.demo.test')).toEqual(['127.0.0.4']);
      } finally {
        await dns.close();
      }
    });
  });

  describe('startLocalUpstream and connectOnce', () => {
    it('completes a verified mTLS handshake and an echo, and reports the served serial', async () => {
      const outcome = await connectOnce({
        endpoint: { taskId: 'u', host: upstream.host, port: upstream.port },
        route,
      });
      expect(outcome).toMatchObject({ ok: true });
      expect(outcome.ok && outcome.serial).toMatch(/^[0-9a-f]+$/);
      expect(upstream.counters().lastClientCommonName).toBe('client');
    });

    it('fails (and the upstream counts it) without a client certificate', async () => {
      const failuresBefore = upstream.counters().handshakeFailures;
      const outcome = await connectOnce({
        endpoint: { taskId: 'u', host: upstream.host, port: upstream.port },
        route: anonymous,
        timeoutMs: 3000,
      });
      expect(outcome.ok).toBe(false);
      expect(upstream.counters().handshakeFailures).toBeGreaterThan(failuresBefore);
    });

    it('fails the handshake for a name the certificate does not cover', async () => {
      const outcome = await connectOnce({
        endpoint: { taskId: 'u', host: upstream.host, port: upstream.port },
        route: { ...route, serverName: 'other.parts.test' },
        timeoutMs: 3000,
      });
      expect(outcome).toMatchObject({ ok: false, stage: 'handshake' });
    });
  });

  describe('openLongLived', () => {
    it('streams bytes both ways and is not counted as dropped when closed by us', async () => {
      const session = openLongLived({
        endpoint: { taskId: 'u', host: upstream.host, port: upstream.port },
        route,
        intervalMs: 20,
        chunkBytes: 256,
      });
      await session.established;
      for (let i = 0; i < 100 && session.bytesEchoed() < 2048; i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(session.bytesEchoed()).toBeGreaterThanOrEqual(2048);
      session.close();
      await session.closed;
      expect(session.droppedReason()).toBeUndefined();
    });

    it('records a drop when the server side closes the session', async () => {
      const sockets = new Set<net.Socket>();
      const server = net.createServer((s) => sockets.add(s));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const port = (server.address() as net.AddressInfo).port;
      // A TCP relay to the TLS upstream that can cut the connection, as the gateway does.
      server.removeAllListeners('connection');
      server.on('connection', (client) => {
        sockets.add(client);
        const backend = net.connect(upstream.port, upstream.host);
        sockets.add(backend);
        client.pipe(backend).pipe(client);
        client.on('error', () => backend.destroy());
        backend.on('error', () => client.destroy());
      });
      try {
        const session = openLongLived({
          endpoint: { taskId: 'relay', host: '127.0.0.1', port },
          route,
          intervalMs: 20,
        });
        await session.established;
        for (const s of sockets) s.destroy();
        await session.closed;
        expect(session.droppedReason()).toBeDefined();
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      }
    });
  });

  describe('TrafficGenerator', () => {
    it('counts handshakes per route, failures and the serials each endpoint served', async () => {
      const endpoint = { taskId: 'u', host: upstream.host, port: upstream.port };
      const traffic = new TrafficGenerator({
        endpoints: () => [endpoint],
        routes: [route, anonymous],
        workers: 1,
        pauseMs: 0,
        longLivedPerRoute: 1,
        timeoutMs: 3000,
      });
      await traffic.start();
      for (let i = 0; i < 200 && traffic.stats().handshakes < 6; i++)
        await new Promise((r) => setTimeout(r, 20));
      const stats = await traffic.stop();
      expect(stats.byRoute.mtls?.handshakes).toBeGreaterThan(0);
      expect(stats.byRoute.mtls?.failed).toBe(0);
      expect(stats.byRoute.anonymous?.failed).toBe(stats.byRoute.anonymous?.handshakes);
      expect(stats.failedHandshakes).toBe(stats.byRoute.anonymous?.handshakes);
      expect(stats.failures[0]).toMatch(/^u anonymous /);
      // The anonymous route's long-lived session never got established: that is a drop.
      expect(stats).toMatchObject({ longLived: 2, droppedLongLived: 1 });
      expect(Object.values(stats.firstSeen).map((byTask) => Object.keys(byTask))).toEqual([['u']]);
    });
  });
});
