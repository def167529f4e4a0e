import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { postQuantumHello, readSni } from '../support/client-hello.ts';
import { chunkedTlsConnect, freePort, sendRaw } from '../support/net.ts';
import { proxyV1, proxyV2, proxyV2Local } from '../support/proxy-protocol.ts';
import {
  certificateIdentity,
  type HttpUpstream,
  startHttpUpstream,
  startTcpUpstream,
  startTlsUpstream,
  type TestPki,
  testPki,
  type Upstream,
} from '../support/tls.ts';

let pki: TestPki;
const upstreams: Upstream[] = [];
const track = <T extends Upstream>(upstream: T): T => {
  upstreams.push(upstream);
  return upstream;
};

beforeAll(async () => {
  pki = await testPki({ serverNames: ['api.example.com', 'localhost'], clientName: 'gateway-client' });
});
afterAll(async () => {
  await pki?.cleanup();
});
afterEach(async () => {
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

/** Reads from a socket until `predicate` holds, bounded in time. */
function readUntil(
  socket: net.Socket,
  predicate: (data: Buffer) => boolean,
  timeoutMs = 3000,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let seen = Buffer.alloc(0);
    const timer = setTimeout(
      () => reject(new Error(`only got ${JSON.stringify(seen.toString())}`)),
      timeoutMs,
    );
    socket.on('data', (data: Buffer) => {
      seen = Buffer.concat([seen, data]);
      if (predicate(seen)) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
  });
}

describe('testPki', () => {
  it('writes a CA, a server and a client certificate, keys readable by the owner only', async () => {
    for (const path of [pki.server.keyPath, pki.server.pemPath, pki.client.keyPath]) {
      expect((await stat(path)).mode & 0o777).toBe(0o600);
    }
    const ca = new X509Certificate(pki.ca.cert);
    const server = new X509Certificate(await readFile(pki.server.certPath));
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkHost('api.example.com')).toBe('api.example.com');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(certificateIdentity(pki.client.cert)).toEqual({
      subject: 'gateway-client',
      serial: pki.client.serial,
    });
    const bundle = await readFile(pki.server.pemPath, 'utf8');
    expect(bundle).toContain('BEGIN CERTIFICATE');
    expect(bundle).toContain('PRIVATE KEY');
  });

  it('issues further certificates from the same CA', async () => {
    const rotated = await pki.issue({
      name: 'rotated',
      commonName: 'api.example.com',
      dns: ['api.example.com'],
    });
    expect(rotated.serial).not.toBe(pki.server.serial);
    expect(new X509Certificate(rotated.cert).verify(new X509Certificate(pki.ca.cert).publicKey)).toBe(true);
  });
});

describe('chunkedTlsConnect against startTlsUpstream', () => {
  it('completes a real mTLS handshake whose ClientHello crossed many small segments', async () => {
    const upstream = track(
      await startTlsUpstream({
        cert: pki.server.cert,
        key: pki.server.key,
        ca: pki.ca.cert,
        requestCert: true,
      }),
    );
    const connection = await chunkedTlsConnect({
      host: '127.0.0.1',
      port: upstream.port,
      servername: 'api.example.com',
      ca: pki.ca.cert,
      cert: pki.client.cert,
      key: pki.client.key,
      chunkSize: 40,
      delayMs: 1,
    });
    try {
      // A ClientHello is a few hundred bytes: at 40 bytes a write it took several.
      expect(connection.handshakeWrites).toBeGreaterThan(5);
      expect(connection.socket.authorized).toBe(true);
      connection.socket.write('ping');
      expect((await readUntil(connection.socket, (d) => d.length >= 4)).toString()).toBe('ping');
      const [seen] = await upstream.waitForConnections(1);
      expect(seen).toMatchObject({
        servername: 'api.example.com',
        authorized: true,
        peerSubject: 'gateway-client',
        peerSerial: pki.client.serial,
        bytesIn: 4,
        bytesOut: 4,
      });
    } finally {
      await connection.close();
    }
  });

  it('records a refused handshake when the client brings no certificate', async () => {
    const upstream = track(
      await startTlsUpstream({
        cert: pki.server.cert,
        key: pki.server.key,
        ca: pki.ca.cert,
        requestCert: true,
      }),
    );
    // With TLS 1.3 the client may finish before the server judges its (missing) certificate.
    const outcome = await chunkedTlsConnect({
      host: '127.0.0.1',
      port: upstream.port,
      ca: pki.ca.cert,
      chunkSize: 200,
    }).then(
      async (c) => {
        const closed = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 3000);
          c.socket.on('close', () => {
            clearTimeout(timer);
            resolve(true);
          });
          c.socket.resume();
        });
        await c.close();
        return closed ? 'closed by server' : 'still open';
      },
      () => 'handshake failed',
    );
    expect(['closed by server', 'handshake failed']).toContain(outcome);
    const [seen] = await upstream.waitForConnections(1);
    expect(seen?.peerSubject).toBeUndefined();
    expect(seen?.authorized).not.toBe(true);
  });

  it('reads a PROXY header sent before the TLS bytes, then completes the handshake', async () => {
    const upstream = track(
      await startTlsUpstream({
        cert: pki.server.cert,
        key: pki.server.key,
        acceptProxy: true,
        greeting: 'hi',
      }),
    );
    const connection = await chunkedTlsConnect({
      host: '127.0.0.1',
      port: upstream.port,
      servername: 'localhost',
      ca: pki.ca.cert,
      preamble: proxyV2({ source: '203.0.113.7:5555', destination: '127.0.0.1:443' }),
      chunkSize: 100,
    });
    try {
      expect((await readUntil(connection.socket, (d) => d.length >= 2)).toString()).toBe('hi');
      const [seen] = await upstream.waitForConnections(1);
      expect(seen?.proxyHeader).toMatchObject({ version: 2, source: { address: '203.0.113.7', port: 5555 } });
      expect(seen?.servername).toBe('localhost');
    } finally {
      await connection.close();
    }
  });
});

describe('sendRaw against startTcpUpstream', () => {
  it('sends a split post-quantum ClientHello after a PROXY header, and the upstream sees both intact', async () => {
    const upstream = track(await startTcpUpstream({ acceptProxy: true }));
    const hello = postQuantumHello('pq.example.com');
    const header = proxyV1({ source: '198.51.100.1:1000', destination: '127.0.0.1:443' });
    const result = await sendRaw({
      host: '127.0.0.1',
      port: upstream.port,
      bytes: Buffer.concat([header, hello]),
      chunks: 7,
      expectBytes: hello.length,
      timeoutMs: 3000,
    });
    expect(result.closedBy).toBe('enough');
    expect(readSni(result.received)).toEqual({
      kind: 'ok',
      serverName: 'pq.example.com',
      length: hello.length,
    });
    const [seen] = await upstream.waitForConnections(1);
    expect(seen?.proxyHeader).toMatchObject({ version: 1, source: { address: '198.51.100.1', port: 1000 } });
  });

  it('reports the peer closing, with what it sent', async () => {
    const upstream = track(await startTcpUpstream({ mode: 'sha256' }));
    const result = await sendRaw({
      host: '127.0.0.1',
      port: upstream.port,
      bytes: Buffer.from('abc'),
      end: true,
    });
    expect(result.closedBy).toBe('peer');
    expect(result.received.toString()).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n',
    );
  });

  it('gives up at its deadline when the peer keeps the connection open', async () => {
    const upstream = track(await startTcpUpstream({ onConnection: () => {} }));
    const result = await sendRaw({
      host: '127.0.0.1',
      port: upstream.port,
      bytes: proxyV2Local(),
      timeoutMs: 200,
    });
    expect(result.closedBy).toBe('timeout');
    expect(result.received.length).toBe(0);
  });

  it('connects from the given local address', async () => {
    const upstream = track(await startTcpUpstream());
    const result = await sendRaw({
      host: '127.0.0.1',
      port: upstream.port,
      bytes: Buffer.from('x'),
      localAddress: '127.0.0.2',
      expectBytes: 1,
    });
    expect(result.received.toString()).toBe('x');
    expect(upstream.connections[0]?.remoteAddress).toBe('127.0.0.2');
  });

  it('rejects when nothing listens', async () => {
    const port = await freePort();
    await expect(sendRaw({ host: '127.0.0.1', port, bytes: Buffer.from('x') })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
  });
});

describe('startHttpUpstream', () => {
  it('records request headers, also behind a PROXY header', async () => {
    const upstream: HttpUpstream = track(await startHttpUpstream({ name: 'web', acceptProxy: true }));
    const socket = net.connect(upstream.port, '127.0.0.1');
    try {
      // Header and request in one write: the request bytes must survive the header being read off.
      socket.write(
        Buffer.concat([
          proxyV2({ source: '192.0.2.9:4000', destination: '127.0.0.1:80' }),
          Buffer.from(
            'GET /x HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 192.0.2.9\r\nConnection: close\r\n\r\n',
          ),
        ]),
      );
      const response = (await readUntil(socket, (d) => d.includes('}'))).toString();
      expect(response).toMatch(/^HTTP\/1\.1 200/);
      expect(JSON.parse(response.slice(response.indexOf('{')))).toMatchObject({ upstream: 'web', url: '/x' });
      expect(upstream.requests).toMatchObject([
        {
          method: 'GET',
          headers: { host: 'api.example.com', 'x-forwarded-for': '192.0.2.9' },
          proxyHeader: { source: { address: '192.0.2.9' } },
        },
      ]);
    } finally {
      socket.destroy();
    }
  });

  it('answers plain requests from node:http', async () => {
    const upstream = track(await startHttpUpstream());
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: upstream.port, path: '/y', headers: { 'x-test': '1' } }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    expect(JSON.parse(body)).toMatchObject({ upstream: 'upstream', url: '/y', headers: { 'x-test': '1' } });
  });
});
