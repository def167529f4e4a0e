/**
 * Socket helpers for gateway tests: a real TLS client whose bytes leave in small TCP segments
 * (so the real ClientHello crosses many of them), a raw sender with a bounded wait for the
 * peer's verdict, and free-port lookup. Loopback only.
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { splitWrites } from './client-hello.ts';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface ChunkedTlsConnectOptions {
  host: string;
  port: number;
  servername?: string;
  /** Trust anchors (PEM). */
  ca?: string | string[];
  /** Client certificate and key for mTLS (PEM). */
  cert?: string;
  key?: string;
  /** Bytes per TCP write; default 64. */
  chunkSize?: number;
  /** Pause between writes so each leaves as its own segment; default 2 ms. */
  delayMs?: number;
  /** Bytes sent before the TLS bytes, in one write (for example a PROXY header). */
  preamble?: Buffer;
  ALPNProtocols?: string[];
  /** Handshake deadline; default 5000 ms. */
  timeoutMs?: number;
  /** Default true; false accepts any server certificate. */
  rejectUnauthorized?: boolean;
}

export interface ChunkedTlsConnection {
  socket: tls.TLSSocket;
  /** TCP writes made so far (the preamble counts as one). */
  writes(): number;
  /** Writes made before the handshake completed. */
  handshakeWrites: number;
  close(): Promise<void>;
}

/** A Duplex over a connected socket that slices every write into `chunkSize` pieces, `delayMs` apart. */
function slicingDuplex(
  raw: net.Socket,
  chunkSize: number,
  delayMs: number,
  count: { writes: number },
): Duplex {
  const duplex = new Duplex({
    async write(chunk: Buffer, _encoding, callback) {
      try {
        for (const [i, piece] of splitWrites(chunk, Math.ceil(chunk.length / chunkSize)).entries()) {
          if (raw.destroyed) throw new Error('socket closed while writing');
          if (i > 0 && delayMs > 0) await sleep(delayMs);
          count.writes++;
          if (!raw.write(piece)) await new Promise<void>((resolve) => raw.once('drain', resolve));
        }
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    read() {
      raw.resume();
    },
    final(callback) {
      raw.end();
      callback();
    },
    destroy(error, callback) {
      raw.destroy();
      callback(error);
    },
  });
  raw.on('data', (data) => {
    if (!duplex.push(data)) raw.pause();
  });
  raw.on('end', () => duplex.push(null));
  raw.on('error', (error) => duplex.destroy(error));
  raw.on('close', () => {
    if (!duplex.destroyed) duplex.destroy();
  });
  return duplex;
}

/**
 * A node:tls client whose outgoing bytes leave in `chunkSize`-byte TCP segments (`setNoDelay`,
 * `delayMs` apart): the real ClientHello crosses many segments, as a post-quantum one does.
 * Resolves once the handshake completed (certificate verified unless `rejectUnauthorized: false`).
 * @example const { socket, close } = await chunkedTlsConnect({ host: '127.0.0.1', port, servername: 'api.example.com', ca, chunkSize: 50, delayMs: 2 });
 */
export async function chunkedTlsConnect(options: ChunkedTlsConnectOptions): Promise<ChunkedTlsConnection> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const count = { writes: 0 };
  const raw = net.connect({ host: options.host, port: options.port });
  raw.setNoDelay(true);
  const deadline = setTimeout(
    () => raw.destroy(new Error(`TLS handshake not done within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', reject);
    });
    if (options.preamble?.length) {
      count.writes++;
      raw.write(options.preamble);
      // Keep the preamble in its own segment, apart from the first TLS bytes.
      await sleep(options.delayMs ?? 2);
    }
    const wire = slicingDuplex(raw, options.chunkSize ?? 64, options.delayMs ?? 2, count);
    const socket = tls.connect({
      socket: wire,
      // Without servername, the certificate is checked against this host (an IP SAN for 127.0.0.1).
      host: options.host,
      ...(options.servername === undefined ? {} : { servername: options.servername }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.cert === undefined ? {} : { cert: options.cert }),
      ...(options.key === undefined ? {} : { key: options.key }),
      ...(options.ALPNProtocols ? { ALPNProtocols: options.ALPNProtocols } : {}),
      rejectUnauthorized: options.rejectUnauthorized ?? true,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
      raw.once('close', () => reject(new Error('connection closed during the TLS handshake')));
    });
    socket.on('error', () => {});
    return {
      socket,
      writes: () => count.writes,
      handshakeWrites: count.writes,
      close: () => closeSocket(socket),
    };
  } catch (error) {
    raw.destroy();
    throw error;
  } finally {
    clearTimeout(deadline);
  }
}

async function closeSocket(socket: net.Socket | tls.TLSSocket): Promise<void> {
  if (socket.destroyed) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve();
    }, 1000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.end();
  });
}

export interface SendRawOptions {
  host: string;
  port: number;
  /** One buffer (cut by `chunks`), or the exact writes to make. */
  bytes: Buffer | Buffer[];
  /** Cut `bytes` into this many writes, or writes of these sizes. */
  chunks?: number | number[];
  /** Pause between writes; default 2 ms. */
  delayMs?: number;
  localAddress?: string;
  /** How long to wait for the peer to close after the last write; default 2000 ms. */
  timeoutMs?: number;
  /** Half-close our side after writing (default false: leave it to the peer's inspect-delay). */
  end?: boolean;
  /** Stop waiting once this many bytes arrived (closedBy `'enough'`). */
  expectBytes?: number;
}

export interface SendRawResult {
  /** From connect to the peer's close (or to the timeout). */
  closedAfterMs: number;
  received: Buffer;
  /** `peer`: it closed or reset; `timeout`: still open at the deadline; `enough`: `expectBytes` arrived. */
  closedBy: 'peer' | 'timeout' | 'enough';
  /** `ECONNRESET` and such, when the peer reset instead of closing. */
  error?: string;
}

/**
 * Connects, writes `bytes` in pieces, and waits (bounded) for the peer to close, collecting what
 * it sent back. Rejects only when the connection cannot be made at all.
 */
export async function sendRaw(options: SendRawOptions): Promise<SendRawResult> {
  const writes = Array.isArray(options.bytes)
    ? options.bytes
    : options.chunks === undefined
      ? [options.bytes]
      : splitWrites(options.bytes, options.chunks);
  const socket = net.connect({
    host: options.host,
    port: options.port,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const started = performance.now();
  const received: Buffer[] = [];
  let receivedLength = 0;
  let error: string | undefined;
  const { promise, resolve } = Promise.withResolvers<SendRawResult['closedBy']>();
  socket.on('data', (data) => {
    received.push(data);
    receivedLength += data.length;
    if (options.expectBytes !== undefined && receivedLength >= options.expectBytes) resolve('enough');
  });
  socket.on('error', (e: NodeJS.ErrnoException) => {
    error = e.code ?? e.message;
  });
  socket.on('close', () => resolve('peer'));
  for (const [i, write] of writes.entries()) {
    if (socket.destroyed) break;
    if (i > 0) await sleep(options.delayMs ?? 2);
    socket.write(write);
  }
  if (options.end && !socket.destroyed) socket.end();
  const timer = setTimeout(() => resolve('timeout'), options.timeoutMs ?? 2000);
  const closedBy = await promise;
  clearTimeout(timer);
  const closedAfterMs = performance.now() - started;
  socket.destroy();
  return { closedAfterMs, received: Buffer.concat(received), closedBy, ...(error ? { error } : {}) };
}

/**
 * Test ports come from a range below the kernel's ephemeral ports (32768–60999 on Linux), so an
 * outgoing connection never takes one, split per Vitest worker (`VITEST_POOL_ID`) so two files
 * running at once never pick the same one, and handed out once per process. Within its range a
 * worker starts at a random offset (the files it runs one after another do not all start at the
 * same port) and probes each candidate by binding it: a port still held by an earlier file's
 * process is skipped.
 */
const PORT_BASE = 20_000;
const PORTS_PER_WORKER = 2_400;
const slot = Number(process.env['VITEST_POOL_ID'] ?? 0) % 5;
const handedOut = new Set<number>();
let cursor = Math.floor(Math.random() * PORTS_PER_WORKER);

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port nothing listens on now and that no other caller in this test run was given. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let tries = 0; tries < PORTS_PER_WORKER; tries++) {
    const port = PORT_BASE + slot * PORTS_PER_WORKER + (cursor++ % PORTS_PER_WORKER);
    if (handedOut.has(port)) continue;
    if (await bindable(host, port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free test port left on ${host} for worker ${slot}`);
}
