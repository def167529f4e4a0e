/**
 * The embedded mode's upstream services: echo servers on loopback standing in for the VPC Lattice
 * services behind a fleet. One kind speaks TLS and can demand a client certificate (the
 * service behind an mTLS route, or a passthrough service doing mTLS end to end with the client);
 * the other speaks plain TCP (an app on localhost behind a terminate route). Each echoes every
 * byte back, so a client can check that a long-lived session still carries data both ways.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface UpstreamTlsOptions {
  /** Server certificate chain (PEM, leaf first). */
  certificatePem: string;
  /** Secret: never log it. */
  keyPem: string;
  /** CA bundle that client certificates must chain to; required with `requireClientCertificate`. */
  caPem?: string;
  /** Refuse the handshake unless the client presents a certificate that chains to `caPem`. */
  requireClientCertificate?: boolean;
}

export interface LocalUpstreamOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  /** Present: a TLS echo server; absent: plain TCP echo. */
  tls?: UpstreamTlsOptions;
}

export interface UpstreamCounters {
  /** Connections accepted (TLS: handshakes completed). */
  accepted: number;
  /** TLS handshakes the server failed (no or untrusted client certificate, …). */
  handshakeFailures: number;
  /** Connections currently open. */
  open: number;
  /** Bytes echoed. */
  bytes: number;
  /** Subject CN of the last client certificate seen (TLS with client certificates). */
  lastClientCommonName?: string;
}

export interface LocalUpstream {
  readonly host: string;
  readonly port: number;
  counters(): UpstreamCounters;
  /** Stops accepting, destroys open connections. */
  close(): Promise<void>;
}

function commonNameOf(socket: tls.TLSSocket): string | undefined {
  const subject = socket.getPeerCertificate()?.subject as { CN?: string | string[] } | undefined;
  const cn = subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}

/**
 * Starts an echo upstream.
 * @example
 * const api = await startLocalUpstream({ tls: { certificatePem, keyPem, caPem, requireClientCertificate: true } });
 * // route upstream port: api.port
 */
export async function startLocalUpstream(options: LocalUpstreamOptions = {}): Promise<LocalUpstream> {
  const host = options.host ?? '127.0.0.1';
  const counters: UpstreamCounters = { accepted: 0, handshakeFailures: 0, open: 0, bytes: 0 };
  const sockets = new Set<net.Socket>();

  const serve = (socket: net.Socket) => {
    counters.accepted += 1;
    counters.open += 1;
    sockets.add(socket);
    if (socket instanceof tls.TLSSocket) {
      const cn = commonNameOf(socket);
      if (cn !== undefined) counters.lastClientCommonName = cn;
    }
    socket.on('data', (chunk: Buffer) => {
      counters.bytes += chunk.length;
      socket.write(chunk);
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      counters.open -= 1;
      sockets.delete(socket);
    });
  };

  let server: net.Server;
  if (options.tls !== undefined) {
    const t = options.tls;
    if (t.requireClientCertificate === true && t.caPem === undefined) {
      throw new Error('a TLS upstream that requires client certificates needs caPem');
    }
    const secure = tls.createServer(
      {
        cert: t.certificatePem,
        key: t.keyPem,
        ...(t.caPem === undefined ? {} : { ca: t.caPem }),
        requestCert: t.requireClientCertificate === true,
        rejectUnauthorized: t.requireClientCertificate === true,
      },
      serve,
    );
    secure.on('tlsClientError', (_error, socket) => {
      counters.handshakeFailures += 1;
      socket.destroy();
    });
    server = secure;
  } else {
    server = net.createServer(serve);
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
  return {
    host,
    port,
    counters: () => ({ ...counters }),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
