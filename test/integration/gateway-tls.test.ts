/**
 * The TLS passthrough listener against a real HAProxy (started with the image's arguments), real
 * node:tls clients and upstreams and a loopback DNS responder. No PROXY protocol here (see
 * gateway-proxy.test.ts): the allowlist admits loopback directly.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REFUSAL } from '../../proxy/haproxy/index.ts';
import {
  buildClientHello,
  buildSslv2ClientHello,
  postQuantumHello,
  splitIntoRecords,
} from '../support/client-hello.ts';
import { type DnsServer, startDnsServer } from '../support/dns.ts';
import { type AccessLog, freePort, type GatewayHarness, startGateway } from '../support/gateway.ts';
import { chunkedTlsConnect, sendRaw } from '../support/net.ts';
import { startTcpUpstream, startTlsUpstream, type TestPki, testPki, type Upstream } from '../support/tls.ts';

const APP = 'app.example.test';
const INSPECT_DELAY_MS = 800;
const MAXCONN = 20;

let pki: TestPki;
let dns: DnsServer;
let upstream: Upstream;
/** Listens on 127.0.0.4 at the upstream port: a connection here means the guard was bypassed. */
let decoy: Upstream;
let gw: GatewayHarness;
let rebindQueries = 0;

beforeAll(async () => {
  pki = await testPki({ serverNames: [APP, 'many.example.test'] });
  const port = await freePort('127.0.0.2');
  upstream = await startTlsUpstream({
    host: '127.0.0.2',
    port,
    cert: pki.server.cert,
    key: pki.server.key,
    ca: pki.ca.cert,
    requestCert: true,
  });
  decoy = await startTcpUpstream({ host: '127.0.0.4', port });
  dns = await startDnsServer({
    records: (name) => {
      if (name === 'rebind.example.test') {
        rebindQueries++;
        // The first answer passes the guard; later ones point elsewhere (DNS rebinding).
        return rebindQueries === 1 ? ['127.0.0.2'] : ['127.0.0.4'];
      }
      const table: Record<string, string[]> = {
        [APP]: ['127.0.0.2'],
        'many.example.test': ['127.0.0.2'],
        'narrow.example.test': ['127.0.0.4'],
        'meta.guard.test': ['169.254.169.254'],
        'self.guard.test': ['127.0.0.1'],
        'mapped.guard6.test': ['::ffff:169.254.169.254'],
        'v4only.guard6.test': ['127.0.0.2'],
      };
      return table[name];
    },
    ttl: 0,
  });
  gw = await startGateway({
    config: {
      fleet: 'tls-test',
      allowLoopbackDestinations: true,
      resolvers: { nameservers: [dns.address], holdValidMs: 0, timeoutMs: 300, retries: 1 },
      limits: { inspectDelayMs: INSPECT_DELAY_MS, maxconn: MAXCONN },
      routes: [
        { serverName: APP, upstream: { port }, allowedDestinations: ['127.0.0.2/32'] },
        { serverName: 'many.example.test', upstream: { port }, allowedDestinations: ['127.0.0.2/32'] },
        { serverName: 'narrow.example.test', upstream: { port }, allowedDestinations: ['127.0.0.2/32'] },
        { serverName: 'rebind.example.test', upstream: { port }, allowedDestinations: ['127.0.0.2/32'] },
        // Deliberately wide: the built-in denials and the task's own address must still win.
        {
          serverName: '*.guard.test',
          upstream: { port },
          allowedDestinations: ['127.0.0.0/8', '169.254.0.0/16'],
        },
        {
          serverName: '*.guard6.test',
          upstream: { port },
          addressFamily: 'ipv6',
          allowedDestinations: ['::/0', '0.0.0.0/0'],
          allowAnyDestination: true,
        },
      ],
    },
    allowlist: ['127.0.0.0/8'],
    ownAddresses: ['127.0.0.1'],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await dns?.close();
  await upstream?.close();
  await decoy?.close();
  await pki?.cleanup();
});

function mtlsConnect(servername: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: gw.ports.tls,
      servername,
      ca: pki.ca.cert,
      cert: pki.client.cert,
      key: pki.client.key,
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends `payload` and reads the same number of bytes back (the upstream echoes). */
function echo(socket: tls.TLSSocket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (data: Buffer) => {
      chunks.push(data);
      length += data.length;
      if (length >= payload.length) {
        socket.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(payload);
  });
}

async function closeTls(socket: tls.TLSSocket): Promise<void> {
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    socket.end();
    setTimeout(() => {
      socket.destroy();
      resolve();
    }, 1000).unref();
  });
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('TLS passthrough', () => {
  it('reaches the upstream the DNS names with mTLS end to end and unchanged bytes both ways', async () => {
    const before = upstream.connections.length;
    const socket = await mtlsConnect(APP);
    // The client sees the upstream's own certificate: the gateway never terminates TLS.
    expect(socket.getPeerX509Certificate()?.serialNumber.toLowerCase().replace(/^0+/, '')).toBe(
      pki.server.serial.replace(/^0+/, ''),
    );
    const clientPort = socket.localPort;
    const payload = randomBytes(4 * 1024 * 1024);
    const back = await echo(socket, payload);
    expect(sha256(back)).toBe(sha256(payload));
    await closeTls(socket);
    const [seen] = (await upstream.waitForConnections(before + 1)).slice(before);
    expect(seen?.peerSubject).toBe('portcullis-test-client');
    expect(seen?.authorized).toBe(true);
    expect(seen?.servername).toBe(APP);
    const log = await gw.waitForLog((l) => l.sni === APP && Number(l.bytes_in) > payload.length);
    expect(log).toMatchObject({
      frontend: 'fe_tls',
      client: '127.0.0.1',
      peer: '127.0.0.1',
      route: APP,
      mode: 'passthrough',
      upstream: '127.0.0.2',
      upstream_port: upstream.port,
      refusal: '-',
    });
    expect(Number(log.bytes_out)).toBeGreaterThan(payload.length);
    expect(typeof log.time).toBe('number');
    expect(typeof log.duration_ms).toBe('number');
    expect(Number(log.connect_ms)).toBeGreaterThanOrEqual(0);
    expect(typeof log.termination).toBe('string');
    // One line per connection, every line valid JSON (the harness parses them).
    expect(gw.logs().filter((l) => l.client_port === clientPort)).toHaveLength(1);
    expect(gw.lines().filter((l) => l.startsWith('{')).length).toBe(gw.logs().length);
  });

  it('routes a ClientHello that arrives in many small TCP segments', async () => {
    const connection = await chunkedTlsConnect({
      host: '127.0.0.1',
      port: gw.ports.tls,
      servername: 'many.example.test',
      ca: pki.ca.cert,
      cert: pki.client.cert,
      key: pki.client.key,
      chunkSize: 40,
      delayMs: 2,
    });
    expect(connection.handshakeWrites).toBeGreaterThan(5);
    expect(connection.socket.authorized).toBe(true);
    await connection.close();
  });

  it('routes a hello fragmented over several TLS records, whatever the record sizes', async () => {
    const hello = buildClientHello({ serverName: APP });
    const cases = [
      splitIntoRecords(hello, 3),
      splitIntoRecords(hello, 12),
      // The server_name extension split across a record boundary, then tiny records.
      splitIntoRecords(hello, [60, 50, 5, 5, 5]),
      splitIntoRecords(postQuantumHello(APP, { targetSize: 2048 }), [900, 900]),
    ];
    for (const records of cases) {
      const before = upstream.connections.length;
      const since = gw.logs().length;
      await sendRaw({ host: '127.0.0.1', port: gw.ports.tls, bytes: records, chunks: 5, timeoutMs: 500 });
      // The synthetic hello cannot complete a handshake, but it was routed to the upstream.
      await upstream.waitForConnections(before + 1);
      expect(await gw.waitForLog((l) => l.sni === APP, { since })).toMatchObject({
        route: APP,
        refusal: '-',
      });
    }
  });

  it('routes a large post-quantum-sized hello sent in many segments', async () => {
    const before = upstream.connections.length;
    const hello = postQuantumHello(APP, { targetSize: 2048 });
    expect(hello.length).toBeGreaterThanOrEqual(2048);
    await sendRaw({ host: '127.0.0.1', port: gw.ports.tls, bytes: hello, chunks: 9, timeoutMs: 500 });
    await upstream.waitForConnections(before + 1);
  });

  it('closes a never-completed hello at the inspect deadline and logs why', async () => {
    const hello = buildClientHello({ serverName: APP });
    const partials = [hello.subarray(0, hello.length - 20), splitIntoRecords(hello, 3).subarray(0, 150)];
    for (const bytes of partials) {
      const since = gw.logs().length;
      const result = await sendRaw({
        host: '127.0.0.1',
        port: gw.ports.tls,
        bytes,
        timeoutMs: INSPECT_DELAY_MS * 5,
      });
      expect(result.closedBy).toBe('peer');
      await gw.waitForLog((l) => l.refusal === REFUSAL.clientHelloIncomplete, { since });
    }
    const silent = await sendRaw({
      host: '127.0.0.1',
      port: gw.ports.tls,
      bytes: [],
      timeoutMs: INSPECT_DELAY_MS * 5,
    });
    expect(silent.closedBy).toBe('peer');
    await gw.waitForLog((l) => l.refusal === REFUSAL.noClientHello);
  });

  it('keeps open sockets bounded under a slow-sender flood', async () => {
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < 200; i++) {
        const socket = net.connect({ host: '127.0.0.1', port: gw.ports.tls });
        socket.on('error', () => {});
        socket.once('connect', () => socket.write(Buffer.from([0x16, 0x03])));
        sockets.push(socket);
      }
      await new Promise((resolve) => setTimeout(resolve, INSPECT_DELAY_MS / 2));
      const stat = await gw.admin('show stat');
      const row = stat.split('\n').find((line) => line.startsWith('fe_tls,FRONTEND,'));
      const current = Number(row?.split(',')[4]);
      expect(current).toBeGreaterThan(0);
      expect(current).toBeLessThanOrEqual(MAXCONN);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});

describe('refusals', () => {
  const refusals: Array<[string, Buffer, string]> = [
    ['no SNI', buildClientHello({}), REFUSAL.noServerName],
    ['non-TLS bytes', Buffer.from('GET / HTTP/1.1\r\nHost: app.example.test\r\n\r\n'), REFUSAL.notTls],
    ['an SSLv2 hello', buildSslv2ClientHello(), REFUSAL.sslv2Hello],
    ['a dotted-decimal SNI', buildClientHello({ serverName: '127.0.0.2' }), REFUSAL.ipLiteral],
    ['a short-form SNI', buildClientHello({ serverName: '127.1' }), REFUSAL.ipLiteral],
    ['a hex/octal SNI', buildClientHello({ serverName: '0x7f.0.0.01' }), REFUSAL.ipLiteral],
    ['an integer SNI', buildClientHello({ serverName: '2130706433' }), REFUSAL.ipLiteral],
    ['an IPv6 SNI', buildClientHello({ serverName: '::1' }), REFUSAL.ipLiteral],
    ['a bracketed SNI', buildClientHello({ serverName: '[::1]' }), REFUSAL.ipLiteral],
    ['an SNI with no route', buildClientHello({ serverName: 'elsewhere.example.test' }), REFUSAL.noRoute],
    [
      'an SNI two labels under a wildcard',
      buildClientHello({ serverName: 'a.b.guard.test' }),
      REFUSAL.noRoute,
    ],
    [
      'a name that does not resolve',
      buildClientHello({ serverName: 'nx.guard.test' }),
      REFUSAL.resolutionFailed,
    ],
    [
      'a resolved address outside the route',
      buildClientHello({ serverName: 'narrow.example.test' }),
      REFUSAL.destinationNotAllowed,
    ],
    ['the metadata address', buildClientHello({ serverName: 'meta.guard.test' }), REFUSAL.destinationDenied],
    [
      "the gateway's own address",
      buildClientHello({ serverName: 'self.guard.test' }),
      REFUSAL.destinationDenied,
    ],
    [
      'an IPv4-mapped metadata address',
      buildClientHello({ serverName: 'mapped.guard6.test' }),
      REFUSAL.destinationDenied,
    ],
  ];

  it.each(refusals)(
    'refuses %s without any upstream connection attempt, and logs the reason',
    async (_name, bytes, reason) => {
      const before = { upstream: upstream.connections.length, decoy: decoy.connections.length };
      const since = gw.logs().length;
      const result = await sendRaw({ host: '127.0.0.1', port: gw.ports.tls, bytes, timeoutMs: 5000 });
      expect(result.closedBy).toBe('peer');
      const log = await gw.waitForLog((l) => l.refusal === reason, { since });
      expect(log.connect_ms).toBe(-1);
      expect(upstream.connections.length).toBe(before.upstream);
      expect(decoy.connections.length).toBe(before.decoy);
    },
  );

  it("asks for the route's preferred family first and falls back to the other one", async () => {
    const before = upstream.connections.length;
    const since = gw.logs().length;
    await sendRaw({
      host: '127.0.0.1',
      port: gw.ports.tls,
      bytes: buildClientHello({ serverName: 'v4only.guard6.test' }),
      timeoutMs: 500,
    });
    await upstream.waitForConnections(before + 1);
    expect(await gw.waitForLog((l) => l.sni === 'v4only.guard6.test', { since })).toMatchObject({
      upstream: '127.0.0.2',
      refusal: '-',
    });
    const types = dns.log.filter((q) => q.name === 'v4only.guard6.test').map((q) => q.type);
    // AAAA (28) first, then A (1).
    expect(types.slice(0, 2)).toEqual([28, 1]);
  });

  it('connects to the address it checked even when DNS answers differently afterwards', async () => {
    const before = upstream.connections.length;
    const outcomes: AccessLog[] = [];
    for (let i = 0; i < 4; i++) {
      const since = gw.logs().length;
      await sendRaw({
        host: '127.0.0.1',
        port: gw.ports.tls,
        bytes: buildClientHello({ serverName: 'rebind.example.test' }),
        timeoutMs: 3000,
      });
      outcomes.push(await gw.waitForLog((l) => l.sni === 'rebind.example.test', { since }));
    }
    expect(rebindQueries).toBeGreaterThanOrEqual(2);
    expect(outcomes[0]).toMatchObject({ upstream: '127.0.0.2', refusal: '-' });
    for (const outcome of outcomes.slice(1)) {
      expect(outcome).toMatchObject({ upstream: '127.0.0.4', refusal: REFUSAL.destinationNotAllowed });
    }
    expect(upstream.connections.length).toBe(before + 1);
    expect(decoy.connections.length).toBe(0);
  });
});
