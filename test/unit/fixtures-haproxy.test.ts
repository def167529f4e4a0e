import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildClientHello,
  buildSslv2ClientHello,
  postQuantumHello,
  splitIntoRecords,
  splitWrites,
} from '../support/client-hello.ts';
import { HAPROXY, HAPROXY_BIN } from '../support/haproxy.ts';
import { freePort, sendRaw } from '../support/net.ts';
import { proxyV1, proxyV2, proxyV2Local } from '../support/proxy-protocol.ts';
import { startTcpUpstream, type Upstream } from '../support/tls.ts';

// The fixtures are only useful if HAProxy reads them as it reads real clients: this runs the
// builders' bytes through a real HAProxy 2.6 doing PROXY + SNI routing, and reads HAProxy's own
// PROXY v2 header back with the decoder.
let dir: string;
let haproxy: ChildProcess;
let upstream: Upstream;
let port: number;
const log: string[] = [];

async function listening(host: string, p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(p, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

beforeAll(async () => {
  upstream = await startTcpUpstream({ acceptProxy: true, greeting: 'api' });
  dir = await mkdtemp(join(tmpdir(), 'portcullis-fixtures-haproxy-'));
  // Port 0 cannot be read back from HAProxy; take one from the kernel and retry on a clash.
  for (let attempt = 0; attempt < 5; attempt++) {
    port = await freePort();
    await writeFile(
      join(dir, 'haproxy.cfg'),
      [
        'defaults',
        '  mode tcp',
        '  timeout connect 1s',
        '  timeout client 2s',
        '  timeout server 2s',
        'frontend tls',
        `  bind 127.0.0.1:${port} accept-proxy`,
        '  tcp-request inspect-delay 2s',
        '  tcp-request content reject if { req.ssl_hello_type 1 } !{ req.ssl_sni -i api.example.com }',
        '  tcp-request content accept if { req.ssl_hello_type 1 }',
        '  tcp-request content reject',
        '  default_backend api',
        'backend api',
        `  server up ${upstream.address} send-proxy-v2`,
        '',
      ].join('\n'),
    );
    haproxy = spawn(HAPROXY_BIN, ['-db', '-f', join(dir, 'haproxy.cfg')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    haproxy.stdout?.on('data', (d) => log.push(String(d)));
    haproxy.stderr?.on('data', (d) => log.push(String(d)));
    for (let i = 0; i < 50 && haproxy.exitCode === null; i++) {
      if (await listening('127.0.0.1', port)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    haproxy.kill('SIGKILL');
  }
  throw new Error(`HAProxy did not start: ${log.join('')}`);
});

afterAll(async () => {
  if (haproxy && haproxy.exitCode === null) {
    const exited = new Promise((resolve) => haproxy.once('exit', resolve));
    haproxy.kill('SIGTERM');
    await exited;
  }
  await upstream?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// HAProxy wants the whole PROXY header in its first read (a split one is dropped as truncated),
// as NLB sends it: header in one write, then the hello in `chunks` writes.
const send = (header: Buffer, hello: Buffer, chunks: number) =>
  sendRaw({
    host: '127.0.0.1',
    port,
    bytes: [header, ...splitWrites(hello, chunks)],
    delayMs: 3,
    expectBytes: 3,
    timeoutMs: 3000,
  });

describe(`fixtures through ${HAPROXY.label}`, () => {
  it('routes a v2-proxied hello split into many writes, and HAProxy passes the client address on', async () => {
    const before = upstream.connections.length;
    const header = proxyV2({ source: '203.0.113.7:5555', destination: '127.0.0.1:443' });
    const result = await send(header, buildClientHello({ serverName: 'api.example.com' }), 12);
    expect(result.received.subarray(0, 3).toString()).toBe('api');
    const seen = (await upstream.waitForConnections(before + 1))[before];
    expect(seen?.proxyHeader).toMatchObject({ version: 2, source: { address: '203.0.113.7', port: 5555 } });
  });

  it('routes a post-quantum-sized hello re-framed across three records', async () => {
    const hello = splitIntoRecords(postQuantumHello('API.example.com'), 3);
    const result = await send(proxyV1({ source: '198.51.100.4:1', destination: '127.0.0.1:443' }), hello, 20);
    expect(result.received.subarray(0, 3).toString()).toBe('api');
  });

  it('routes after a LOCAL header, using the connection address', async () => {
    const before = upstream.connections.length;
    const result = await send(proxyV2Local(), buildClientHello({ serverName: 'api.example.com' }), 2);
    expect(result.received.subarray(0, 3).toString()).toBe('api');
    const seen = (await upstream.waitForConnections(before + 1))[before];
    expect(seen?.proxyHeader?.source?.address).toBe('127.0.0.1');
  });

  it.each([
    ['another name', buildClientHello({ serverName: 'other.example.com' })],
    ['no SNI', buildClientHello()],
    ['an SSLv2-compatible hello', buildSslv2ClientHello()],
  ])('closes without routing a hello with %s', async (_name, hello) => {
    const before = upstream.connections.length;
    const result = await send(proxyV2Local(), hello, 3);
    expect(result.closedBy).toBe('peer');
    expect(result.received.length).toBe(0);
    expect(upstream.connections.length).toBe(before);
  });
});
