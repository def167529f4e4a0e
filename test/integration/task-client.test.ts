import { randomBytes, X509Certificate } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import {
  type AddressInfo,
  createServer as createTcpServer,
  type Socket,
  type Server as TcpServer,
} from 'node:net';
import {
  createSecureContext,
  createServer as createTlsServer,
  type TLSSocket,
  type Server as TlsServer,
} from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CertificateAuthorityMaterial,
  createCertificateAuthority,
  generateKey,
  issueCertificate,
} from '../../lib/pki/index.ts';
import type { FleetTask, TaskStatus } from '../../lib/ports.ts';
import { NudgeHeaders, verifyNudge } from '../../lib/secrets/nudge.ts';
import { HttpTaskClient } from '../../lib/task-client/index.ts';

const key = randomBytes(32);

const status: TaskStatus = {
  ready: true,
  certificates: { api: { versionId: 'v-2', serial: '1fa0', notAfter: '2026-12-23T16:00:00.000Z' } },
  allowlist: { versionId: 'a-1', size: 3 },
  trust: { versionId: 't-1' },
  lastApply: { at: '2026-11-23T16:00:00.000Z', ok: true },
};

/** A stand-in sidecar admin API speaking the contract, recording the nudges it accepted. */
function fakeSidecar(): { server: Server; accepted: unknown[] } {
  const seen = new Map<string, number>();
  const accepted: unknown[] = [];
  const reply = (res: ServerResponse, code: number, body: unknown) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (req.method === 'GET' && req.url === '/v1/status') return reply(res, 200, status);
      if (req.method !== 'POST' || req.url !== '/v1/nudge')
        return reply(res, 404, { error: { message: 'no route' } });
      const check = verifyNudge(
        key,
        {
          timestamp: req.headers[NudgeHeaders.timestamp] as string | undefined,
          signature: req.headers[NudgeHeaders.signature] as string | undefined,
        },
        body,
        Date.now(),
        seen,
      );
      if (check.kind !== 'ok')
        return reply(res, 401, { error: { name: 'Unauthorized', message: check.reason } });
      const nudge = JSON.parse(body) as { secretId: string; versionId?: string };
      switch (nudge.secretId) {
        case 'prod/cert/garbage':
          return reply(res, 422, {
            error: {
              name: 'CertificateValidationError',
              message: 'key-mismatch: the key does not match the leaf',
            },
          });
        case 'prod/cert/unknown':
          return reply(res, 404, {
            error: { name: 'NotFoundError', message: 'not referenced by this fleet' },
          });
        case 'prod/cert/crash':
          return reply(res, 503, { error: { name: 'NotReady', message: 'HAProxy is restarting' } });
        case 'prod/cert/odd':
          return reply(res, 200, { hello: 'world' });
        case 'prod/cert/teapot':
          return reply(res, 418, {});
        case 'prod/cert/hang':
          return; // never answers: the client's timeout must end the call
        case 'prod/allowlist/slow':
          // Answers once a long apply is done, later than the client's default timeout.
          setTimeout(() => reply(res, 200, status), 700);
          return;
        default:
          accepted.push(nudge);
          return reply(res, 200, status);
      }
    });
  });
  return { server, accepted };
}

async function listen<T extends Server | TcpServer | TlsServer>(server: T): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

async function close(server: Server | TcpServer | TlsServer | undefined): Promise<void> {
  if (!server?.listening) return;
  (server as Server).closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

function task(adminPort: number, tlsPort = 1): FleetTask {
  return {
    taskId: 'task-1',
    address: '127.0.0.1',
    adminPort,
    tlsAddress: '127.0.0.1',
    tlsPort,
    lastStatus: 'RUNNING',
  };
}

describe('HttpTaskClient over HTTP', () => {
  let sidecar: ReturnType<typeof fakeSidecar>;
  let port: number;
  let closedPort: number;
  const hanging = new Set<Socket>();

  beforeAll(async () => {
    sidecar = fakeSidecar();
    sidecar.server.on('connection', (socket: Socket) => {
      hanging.add(socket);
      socket.on('close', () => hanging.delete(socket));
    });
    port = await listen(sidecar.server);
    // A port that was just free: nothing listens there, so connecting is refused.
    const probe = createTcpServer();
    closedPort = await listen(probe);
    await close(probe);
  });

  afterAll(async () => {
    for (const socket of hanging) socket.destroy();
    await close(sidecar?.server);
  });

  it('signs a nudge the sidecar verifies and returns the status it answers with', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    const answer = await client.nudge(task(port), { secretId: 'prod/cert/api', versionId: 'v-2' });

    expect(answer).toEqual(status);
    expect(sidecar.accepted).toContainEqual({ secretId: 'prod/cert/api', versionId: 'v-2' });
  });

  it('fetches the nudge key through a function when given one', async () => {
    let fetched = 0;
    const client = new HttpTaskClient({
      nudgeKey: async () => {
        fetched += 1;
        return key;
      },
      timeoutMs: 5000,
    });

    await client.nudge(task(port), { secretId: 'prod/trust' });

    expect(fetched).toBe(1);
    expect(sidecar.accepted).toContainEqual({ secretId: 'prod/trust' });
  });

  it('reads the status without signing anything', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    await expect(client.status(task(port))).resolves.toEqual(status);
  });

  it('reports a signature made with another key as NudgeUnauthorized', async () => {
    const client = new HttpTaskClient({ nudgeKey: randomBytes(32), timeoutMs: 5000 });

    const error = await client.nudge(task(port), { secretId: 'prod/cert/api' }).catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'NudgeUnauthorized' });
    expect((error as Error).message).toMatch(/bad-signature.*nudge key/);
  });

  it('reports a nudge whose clock is far off as NudgeUnauthorized', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000, now: () => Date.now() - 3_600_000 });

    await expect(client.nudge(task(port), { secretId: 'prod/cert/api' })).rejects.toMatchObject({
      name: 'NudgeUnauthorized',
      message: expect.stringContaining('stale'),
    });
  });

  it('turns a 422 into a ValidationError carrying the sidecar reason', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    const error = await client.nudge(task(port), { secretId: 'prod/cert/garbage' }).catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'ValidationError' });
    expect((error as Error).message).toContain('key-mismatch: the key does not match the leaf');
    expect((error as Error).message).toContain('prod/cert/garbage');
  });

  it.each([
    ['prod/cert/unknown', 'NotFoundError'],
    ['prod/cert/crash', 'TaskUnreachable'],
    ['prod/cert/odd', 'TaskProtocolError'],
    ['prod/cert/teapot', 'TaskProtocolError'],
  ])('maps the answer to a nudge for %s to %s', async (secretId, expected) => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    await expect(client.nudge(task(port), { secretId })).rejects.toMatchObject({ name: expected });
  });

  it('reports a refused connection as TaskUnreachable', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    await expect(client.nudge(task(closedPort), { secretId: 'prod/cert/api' })).rejects.toMatchObject({
      name: 'TaskUnreachable',
      message: expect.stringContaining('ECONNREFUSED'),
    });
    await expect(client.status(task(closedPort))).rejects.toMatchObject({ name: 'TaskUnreachable' });
  });

  it('waits for a slow apply as long as the nudge asks, and only that long', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 300 });
    await expect(client.nudge(task(port), { secretId: 'prod/allowlist/slow' })).rejects.toMatchObject({
      name: 'TaskUnreachable',
      message: expect.stringContaining('no answer within 300 ms'),
    });
    await expect(
      client.nudge(task(port), { secretId: 'prod/allowlist/slow', timeoutMs: 5000 }),
    ).resolves.toMatchObject({ ready: true });
  });

  it('gives up on a sidecar that never answers and reports it as TaskUnreachable', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 300 });

    await expect(client.nudge(task(port), { secretId: 'prod/cert/hang' })).rejects.toMatchObject({
      name: 'TaskUnreachable',
      message: expect.stringContaining('no answer within 300 ms'),
    });
  });
});

describe('HttpTaskClient.servedCertificate', () => {
  let root: CertificateAuthorityMaterial;
  let apiLeaf: { certificatePem: string; serial: string; keyPem: string };
  let otherLeaf: { certificatePem: string; serial: string; keyPem: string };
  let clientLeaf: { certificatePem: string; keyPem: string };
  let tlsServer: TlsServer;
  let mtlsServer: TlsServer;
  let silentServer: TcpServer;
  let tlsPort: number;
  let mtlsPort: number;
  let silentPort: number;
  const clientSubjects: string[] = [];
  const sockets = new Set<Socket>();

  async function leaf(commonName: string, usage: 'server' | 'client') {
    const keyPair = await generateKey();
    const issued = await issueCertificate(root, {
      publicKeyPem: keyPair.publicKeyPem,
      commonName,
      dns: [commonName],
      usage,
    });
    return { certificatePem: issued.certificatePem, serial: issued.serial, keyPem: keyPair.privateKeyPem };
  }

  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };

  beforeAll(async () => {
    root = await createCertificateAuthority({ commonName: 'Portcullis Test Root' });
    apiLeaf = await leaf('api.example.internal', 'server');
    otherLeaf = await leaf('other.example.internal', 'server');
    clientLeaf = await leaf('control-plane.example.internal', 'client');

    const contexts: Record<string, ReturnType<typeof createSecureContext>> = {
      'other.example.internal': createSecureContext({
        cert: otherLeaf.certificatePem,
        key: otherLeaf.keyPem,
      }),
    };
    tlsServer = createTlsServer({
      cert: apiLeaf.certificatePem,
      key: apiLeaf.keyPem,
      SNICallback: (name, callback) => callback(null, contexts[name]),
    });
    tlsServer.on('connection', track);
    tlsServer.on('tlsClientError', () => {});
    tlsPort = await listen(tlsServer);

    // A terminate route with strict client authentication.
    mtlsServer = createTlsServer({
      cert: apiLeaf.certificatePem,
      key: apiLeaf.keyPem,
      ca: root.certificatePem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    });
    mtlsServer.on('connection', track);
    mtlsServer.on('tlsClientError', () => {});
    mtlsServer.on('secureConnection', (socket: TLSSocket) => {
      clientSubjects.push(String(socket.getPeerCertificate().subject?.CN));
    });
    mtlsPort = await listen(mtlsServer);

    // Accepts TCP and closes at once: something listens, but no TLS.
    silentServer = createTcpServer((socket) => socket.destroy());
    silentPort = await listen(silentServer);
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all([close(tlsServer), close(mtlsServer), close(silentServer)]);
  });

  it('returns the serial, fingerprint and expiry of the leaf served for the server name', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    const served = await client.servedCertificate(task(1, tlsPort), 'api.example.internal');

    const expected = new X509Certificate(apiLeaf.certificatePem);
    expect(served).toEqual({
      serial: apiLeaf.serial,
      fingerprint256: expected.fingerprint256,
      notAfter: new Date(expected.validTo).toISOString(),
      authorized: false,
      authorizationError: expect.any(String),
    });
  });

  it('sends the server name so an SNI-routed listener picks the matching certificate', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    const served = await client.servedCertificate(task(1, tlsPort), 'other.example.internal');

    expect(served.serial).toBe(otherLeaf.serial);
    expect(served.serial).not.toBe(apiLeaf.serial);
  });

  it('reports whether the served chain is trusted when given a CA bundle', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000, tls: { ca: root.certificatePem } });

    const served = await client.servedCertificate(task(1, tlsPort), 'api.example.internal');

    expect(served).toMatchObject({ serial: apiLeaf.serial, authorized: true });
  });

  it('presents a client certificate to a listener that requires one', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    const served = await client.servedCertificate(task(1, mtlsPort), 'api.example.internal', {
      clientCertificate: { certificatePem: clientLeaf.certificatePem, keyPem: clientLeaf.keyPem },
    });

    expect(served.serial).toBe(apiLeaf.serial);
    await expect.poll(() => clientSubjects).toContain('control-plane.example.internal');
  });

  it('still reads the served leaf from a TLS 1.3 listener that requires a client certificate it did not get', async () => {
    // Under TLS 1.3 the server checks the client's certificate after the client has finished
    // its side of the handshake, so the served certificate can be read before the refusal.
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    const served = await client.servedCertificate(task(1, mtlsPort), 'api.example.internal');

    expect(served.serial).toBe(apiLeaf.serial);
  });

  it('reports a closed TLS port as TaskUnreachable', async () => {
    const probe = createTcpServer();
    const freePort = await listen(probe);
    await close(probe);
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    await expect(client.servedCertificate(task(1, freePort), 'api.example.internal')).rejects.toMatchObject({
      name: 'TaskUnreachable',
      message: expect.stringContaining('ECONNREFUSED'),
    });
  });

  it('reports a listener that drops the connection before any handshake as TaskUnreachable', async () => {
    const client = new HttpTaskClient({ nudgeKey: key, timeoutMs: 5000 });

    await expect(client.servedCertificate(task(1, silentPort), 'api.example.internal')).rejects.toMatchObject(
      {
        name: 'TaskUnreachable',
      },
    );
  });
});
