/**
 * TLS fixtures: a throwaway PKI (CA, server and client certificates as PEM and as files) and
 * loopback upstreams (TLS, plain TCP, HTTP) that record what they saw: peer certificate
 * subjects, SNI, PROXY headers, bytes, request headers. Everything closes cleanly.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { decodeProxyHeader, type ProxyHeader } from '../../lib/net/proxy-protocol.ts';
import {
  type CertificateAuthorityMaterial,
  type CertificateUsage,
  createCertificateAuthority,
  generateKey,
  issueCertificate,
  normaliseSerial,
} from '../../lib/pki/index.ts';

/** A certificate with its key, as PEM (`cert`/`key`/`ca` match node:tls option names) and as files. */
export interface TestCredential {
  cert: string;
  /** Secret: never log it. File written 0600. */
  key: string;
  /** Intermediates, PEM; `''` when issued by the root. */
  chain: string;
  serial: string;
  certPath: string;
  keyPath: string;
  /** Certificate, chain and key in one file (0600), as HAProxy's `crt` wants it. */
  pemPath: string;
}

export interface TestPki {
  dir: string;
  ca: { cert: string; certPath: string; material: CertificateAuthorityMaterial };
  /** Server certificate for `serverNames` (plus 127.0.0.1 and ::1). */
  server: TestCredential;
  /** Client certificate (clientAuth) with CN `clientName`. */
  client: TestCredential;
  /** Issues another certificate from the same CA (a rotation, an expired one, …), written under `name`. */
  issue(options: {
    name: string;
    commonName: string;
    dns?: string[];
    ip?: string[];
    usage?: CertificateUsage;
    notBefore?: Date;
    notAfter?: Date;
  }): Promise<TestCredential>;
  /** Removes the directory when testPki created it. */
  cleanup(): Promise<void>;
}

export interface TestPkiOptions {
  /** Where to write the files; default a fresh temp dir (removed by `cleanup`). */
  dir?: string;
  /** Default `['localhost']`; the first is also the CN. */
  serverNames?: string[];
  /** Default `portcullis-test-client`. */
  clientName?: string;
  /** Default `Portcullis Test CA`. */
  caName?: string;
}

async function writeSecret(path: string, content: string): Promise<void> {
  await writeFile(path, content, { mode: 0o600 });
  // mode applies only when the file is created; enforce it when it already existed.
  await chmod(path, 0o600);
}

/**
 * Creates a CA, a server and a client certificate (ECDSA P-256) and writes them to `dir`.
 * @example const pki = await testPki({ serverNames: ['api.example.com'] }); … await pki.cleanup();
 */
export async function testPki(dirOrOptions: string | TestPkiOptions = {}): Promise<TestPki> {
  const options = typeof dirOrOptions === 'string' ? { dir: dirOrOptions } : dirOrOptions;
  const created = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'portcullis-pki-')));
  const material = await createCertificateAuthority({ commonName: options.caName ?? 'Portcullis Test CA' });
  const caCertPath = join(dir, 'ca.crt');
  await writeFile(caCertPath, material.certificatePem);
  await writeSecret(join(dir, 'ca.key'), material.privateKeyPem);

  const issue: TestPki['issue'] = async (request) => {
    const key = await generateKey();
    const issued = await issueCertificate(material, {
      publicKeyPem: key.publicKeyPem,
      commonName: request.commonName,
      dns: request.dns ?? [],
      ip: request.ip ?? [],
      usage: request.usage ?? 'server',
      ...(request.notBefore ? { notBefore: request.notBefore } : {}),
      ...(request.notAfter ? { notAfter: request.notAfter } : {}),
    });
    const credential: TestCredential = {
      cert: issued.certificatePem,
      key: key.privateKeyPem,
      chain: issued.chainPem,
      serial: issued.serial,
      certPath: join(dir, `${request.name}.crt`),
      keyPath: join(dir, `${request.name}.key`),
      pemPath: join(dir, `${request.name}.pem`),
    };
    await writeFile(credential.certPath, issued.certificatePem + issued.chainPem);
    await writeSecret(credential.keyPath, key.privateKeyPem);
    await writeSecret(credential.pemPath, issued.certificatePem + issued.chainPem + key.privateKeyPem);
    return credential;
  };

  const serverNames = options.serverNames ?? ['localhost'];
  const clientName = options.clientName ?? 'portcullis-test-client';
  const [server, client] = await Promise.all([
    issue({
      name: 'server',
      commonName: serverNames[0]!,
      dns: serverNames,
      ip: ['127.0.0.1', '::1'],
      usage: 'server',
    }),
    issue({ name: 'client', commonName: clientName, usage: 'client' }),
  ]);
  return {
    dir,
    ca: { cert: material.certificatePem, certPath: caCertPath, material },
    server,
    client,
    issue,
    async cleanup() {
      if (created) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** What an upstream saw of one connection. */
export interface UpstreamConnection {
  id: number;
  /** Direct peer (HAProxy, when it sits in front). */
  remoteAddress: string;
  remotePort: number;
  /** Present when `acceptProxy` was set and the peer sent one. */
  proxyHeader?: ProxyHeader;
  /** TLS only. */
  servername?: string;
  alpn?: string;
  authorized?: boolean;
  authorizationError?: string;
  /** Peer certificate subject CN (TLS with `requestCert`). */
  peerSubject?: string;
  peerSerial?: string;
  /** Set when the TLS handshake failed. */
  handshakeError?: string;
  /** Application bytes received / sent. */
  bytesIn: number;
  bytesOut: number;
  closed: boolean;
}

export interface Upstream {
  host: string;
  port: number;
  /** `host:port` (v6 bracketed). */
  address: string;
  connections: UpstreamConnection[];
  /** Resolves once `count` connections were accepted (bounded by `timeoutMs`, default 5000). */
  waitForConnections(count: number, timeoutMs?: number): Promise<UpstreamConnection[]>;
  close(): Promise<void>;
}

/** `echo` (default) sends back what it receives; `sha256` answers the hex digest of everything received once the peer half-closes. */
export type UpstreamMode = 'echo' | 'sha256';

interface CommonUpstreamOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  mode?: UpstreamMode;
  /** Written first on every connection (after the handshake for TLS), to tell upstreams apart. */
  greeting?: string;
  /** Expect a PROXY v1/v2 header first (HAProxy `send-proxy`/`send-proxy-v2`) and record it. */
  acceptProxy?: boolean;
  /** Replaces the echo/sha256 behaviour for each connection. */
  onConnection?: (socket: net.Socket, connection: UpstreamConnection) => void;
}

function serve(socket: net.Socket, record: UpstreamConnection, options: CommonUpstreamOptions): void {
  socket.on('data', (data: Buffer) => {
    record.bytesIn += data.length;
  });
  // A socket whose PROXY header was read is paused explicitly, and listeners alone do not restart
  // it; flowing starts on the next tick, after the listeners below are attached.
  socket.resume();
  if (options.onConnection) {
    options.onConnection(socket, record);
    return;
  }
  const send = (data: Buffer | string) => {
    record.bytesOut += Buffer.byteLength(data);
    socket.write(data);
  };
  if (options.greeting !== undefined) send(options.greeting);
  if ((options.mode ?? 'echo') === 'echo') {
    socket.on('data', (data: Buffer) => send(data));
    socket.on('end', () => socket.end());
  } else {
    const hash = createHash('sha256');
    socket.on('data', (data: Buffer) => hash.update(data));
    socket.on('end', () => {
      send(`${hash.digest('hex')}\n`);
      socket.end();
    });
  }
}

/** Reads a PROXY header off the front of a socket, then hands the socket over with the rest unread. */
function stripProxyHeader(socket: net.Socket, done: (header: ProxyHeader) => void): void {
  let pending = Buffer.alloc(0);
  const onData = (data: Buffer) => {
    pending = Buffer.concat([pending, data]);
    const result = decodeProxyHeader(pending);
    if (result.kind === 'need-more') return;
    socket.off('data', onData);
    socket.pause();
    if (result.kind === 'invalid') {
      socket.destroy();
      return;
    }
    const rest = pending.subarray(result.length);
    if (rest.length) socket.unshift(rest);
    done(result.header);
  };
  socket.on('data', onData);
}

function listenUpstream(
  options: CommonUpstreamOptions,
  handle: (socket: net.Socket, record: UpstreamConnection) => void,
): Promise<Upstream> {
  const host = options.host ?? '127.0.0.1';
  const connections: UpstreamConnection[] = [];
  const sockets = new Set<net.Socket>();
  const waiters: (() => void)[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const record: UpstreamConnection = {
      id: connections.length + 1,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      bytesIn: 0,
      bytesOut: 0,
      closed: false,
    };
    connections.push(record);
    for (const wake of waiters.splice(0)) wake();
    socket.on('close', () => {
      record.closed = true;
      sockets.delete(socket);
    });
    if (options.acceptProxy) {
      stripProxyHeader(socket, (header) => {
        record.proxyHeader = header;
        handle(socket, record);
      });
    } else {
      handle(socket, record);
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      const { port } = server.address() as net.AddressInfo;
      resolve({
        host,
        port,
        address: net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`,
        connections,
        async waitForConnections(count, timeoutMs = 5000) {
          const deadline = Date.now() + timeoutMs;
          while (connections.length < count) {
            const left = deadline - Date.now();
            if (left <= 0)
              throw new Error(`saw ${connections.length} of ${count} connections within ${timeoutMs} ms`);
            await new Promise<void>((wake) => {
              const timer = setTimeout(wake, left);
              waiters.push(() => {
                clearTimeout(timer);
                wake();
              });
            });
          }
          return connections.slice(0, count);
        },
        async close() {
          for (const socket of sockets) socket.destroy();
          await new Promise<void>((done) => server.close(() => done()));
        },
      });
    });
  });
}

export interface TlsUpstreamOptions extends CommonUpstreamOptions {
  cert: string;
  key: string;
  /** Trust anchors for client certificates. */
  ca?: string | string[];
  requestCert?: boolean;
  /** Default: true when `requestCert` is set (refuse clients without a valid certificate). */
  rejectUnauthorized?: boolean;
  ALPNProtocols?: string[];
}

/**
 * A TLS server on loopback that echoes (or digests) what it receives and records, per
 * connection, SNI, ALPN, the client certificate's subject and serial, and handshake failures.
 * @example const up = await startTlsUpstream({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true });
 */
export async function startTlsUpstream(options: TlsUpstreamOptions): Promise<Upstream> {
  const requestCert = options.requestCert ?? false;
  const tlsServer = tls.createServer({
    cert: options.cert,
    key: options.key,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    requestCert,
    rejectUnauthorized: options.rejectUnauthorized ?? requestCert,
    ...(options.ALPNProtocols ? { ALPNProtocols: options.ALPNProtocols } : {}),
  });
  const pending = new Map<string, UpstreamConnection>();
  const keyOf = (s: net.Socket) => `${s.remoteAddress}|${s.remotePort}`;
  tlsServer.on('secureConnection', (secure: tls.TLSSocket) => {
    const record = pending.get(keyOf(secure));
    pending.delete(keyOf(secure));
    if (!record) {
      secure.destroy();
      return;
    }
    secure.on('error', () => {});
    const servername = (secure as tls.TLSSocket & { servername?: string | false }).servername;
    if (servername) record.servername = servername;
    if (secure.alpnProtocol) record.alpn = secure.alpnProtocol;
    record.authorized = secure.authorized;
    if (secure.authorizationError) record.authorizationError = String(secure.authorizationError);
    const peer = secure.getPeerX509Certificate();
    if (peer) {
      record.peerSubject = /(?:^|\n)CN=([^\n]*)/.exec(peer.subject)?.[1] ?? peer.subject;
      record.peerSerial = normaliseSerial(peer.serialNumber) ?? peer.serialNumber;
    }
    serve(secure, record, options);
  });
  tlsServer.on('tlsClientError', (error: Error, secure: tls.TLSSocket) => {
    const record = pending.get(keyOf(secure));
    if (record) record.handshakeError = error.message;
    secure.destroy();
  });
  return listenUpstream(options, (socket, record) => {
    pending.set(keyOf(socket), record);
    tlsServer.emit('connection', socket);
  });
}

/** A plain TCP echo (or digest) server on loopback that records connections (and PROXY headers with `acceptProxy`). */
export async function startTcpUpstream(options: CommonUpstreamOptions = {}): Promise<Upstream> {
  return listenUpstream(options, (socket, record) => serve(socket, record, options));
}

export interface HttpRequestRecord {
  method: string;
  url: string;
  /** Lower-cased names, as node:http gives them. */
  headers: http.IncomingHttpHeaders;
  remoteAddress: string;
  proxyHeader?: ProxyHeader;
}

export interface HttpUpstream extends Upstream {
  requests: HttpRequestRecord[];
}

/**
 * An HTTP/1.1 server on loopback that records each request's headers (for X-Forwarded-For and
 * Host routing tests) and answers 200 with `{ upstream, method, url, headers }` as JSON.
 */
export async function startHttpUpstream(
  options: Omit<CommonUpstreamOptions, 'mode' | 'greeting' | 'onConnection'> & {
    /** Named in every response body, to tell upstreams apart. */
    name?: string;
    respond?: (request: http.IncomingMessage, response: http.ServerResponse) => void;
  } = {},
): Promise<HttpUpstream> {
  const requests: HttpRequestRecord[] = [];
  const proxyHeaders = new WeakMap<net.Socket, ProxyHeader>();
  const httpServer = http.createServer((request, response) => {
    const record: HttpRequestRecord = {
      method: request.method ?? '',
      url: request.url ?? '',
      headers: request.headers,
      remoteAddress: request.socket.remoteAddress ?? '',
    };
    const header = proxyHeaders.get(request.socket);
    if (header) record.proxyHeader = header;
    requests.push(record);
    if (options.respond) {
      options.respond(request, response);
      return;
    }
    const body = JSON.stringify({
      upstream: options.name ?? 'upstream',
      method: record.method,
      url: record.url,
      headers: record.headers,
    });
    response.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    response.end(body);
  });
  httpServer.keepAliveTimeout = 1000;
  const upstream = await listenUpstream(options, (socket, record) => {
    if (record.proxyHeader) proxyHeaders.set(socket, record.proxyHeader);
    socket.on('data', (data: Buffer) => {
      record.bytesIn += data.length;
    });
    httpServer.emit('connection', socket);
    socket.resume();
  });
  return { ...upstream, requests };
}

/** Subject CN and serial of a PEM certificate, for comparing with what an upstream recorded. */
export function certificateIdentity(pem: string): { subject: string; serial: string } {
  const certificate = new X509Certificate(pem);
  return {
    subject: /(?:^|\n)CN=([^\n]*)/.exec(certificate.subject)?.[1] ?? certificate.subject,
    serial: normaliseSerial(certificate.serialNumber) ?? certificate.serialNumber,
  };
}
