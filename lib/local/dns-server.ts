/**
 * The embedded mode's stand-in for the VPC resolver: a loopback DNS responder that answers the
 * route names of a local fleet (A/AAAA from a table, NXDOMAIN otherwise) over UDP and TCP on one
 * port, so HAProxy's `resolvers` section and its destination guard run exactly as in a VPC.
 * The message codec is `lib/net/dns.ts` (pure, unit-tested); this file only holds the sockets.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import {
  answerDnsQuery,
  type DnsAnswerSet,
  DnsRcode,
  decodeDnsMessage,
  encodeDnsMessage,
  frameDnsTcp,
  normalizeDnsName,
  readDnsTcpFrame,
} from '../net/dns.ts';

/** name → addresses (IPv4 and IPv6 mixed: A answers take the v4 ones, AAAA the v6 ones). */
export type LocalDnsRecords = Record<string, string[]>;

export interface LocalDnsServerOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default 0 (ephemeral; UDP takes the same number as TCP). */
  port?: number;
  records: LocalDnsRecords;
  /** TTL of answers in seconds. Default 5. */
  ttl?: number;
}

export interface LocalDnsServer {
  readonly host: string;
  readonly port: number;
  /** `host:port` as HAProxy's `nameserver` line and the fleet config's `resolvers.nameservers` take it. */
  readonly address: string;
  /** Queries answered so far, per lower-cased name. */
  queries(name: string): number;
  setRecords(records: LocalDnsRecords): void;
  close(): Promise<void>;
}

function tableLookup(records: LocalDnsRecords): (name: string) => DnsAnswerSet | undefined {
  const table = new Map<string, string[]>();
  for (const [name, addresses] of Object.entries(records)) table.set(normalizeDnsName(name), addresses);
  return (name) => {
    const addresses = table.get(name);
    return addresses === undefined ? undefined : { addresses };
  };
}

/**
 * Starts the responder on loopback.
 * @example
 * const dns = await startLocalDnsServer({ records: { 'api.demo.test': ['127.0.0.1'] } });
 * config.resolvers.nameservers = [dns.address];
 */
export async function startLocalDnsServer(options: LocalDnsServerOptions): Promise<LocalDnsServer> {
  const host = options.host ?? '127.0.0.1';
  const ttl = options.ttl ?? 5;
  let lookup = tableLookup(options.records);
  const counts = new Map<string, number>();

  const respond = (datagram: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined => {
    const decoded = decodeDnsMessage(datagram);
    if (decoded.kind === 'invalid') {
      if (datagram.length < 12) return undefined;
      // FORMERR with the query's id, so the client does not wait for its timeout.
      const formErr = Buffer.alloc(12);
      datagram.copy(formErr, 0, 0, 2);
      formErr.writeUInt16BE(0x8000 | DnsRcode.FormErr, 2);
      return formErr;
    }
    const question = decoded.message.questions[0];
    if (question !== undefined) {
      const name = normalizeDnsName(question.name);
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    return encodeDnsMessage(answerDnsQuery(decoded.message, lookup, { ttl, transport }));
  };

  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      // Each pass consumes one frame or returns: bounded by the bytes received.
      for (;;) {
        const frame = readDnsTcpFrame(pending);
        if (frame.kind === 'need-more') return;
        if (frame.kind === 'invalid') {
          socket.destroy();
          return;
        }
        pending = pending.subarray(frame.length);
        const answer = respond(frame.message, 'tcp');
        if (answer !== undefined) socket.write(frameDnsTcp(answer));
      }
    });
  });
  const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  udp.on('message', (message, peer) => {
    const answer = respond(message, 'udp');
    if (answer !== undefined) udp.send(answer, peer.port, peer.address);
  });
  udp.on('error', () => {});

  const port = await bindSamePort(host, options.port ?? 0, udp, tcp);
  return {
    host,
    port,
    address: net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`,
    queries: (name) => counts.get(normalizeDnsName(name)) ?? 0,
    setRecords(records) {
      lookup = tableLookup(records);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

/** TCP on an ephemeral port first, then UDP on the same number; a few attempts if UDP's is taken. */
async function bindSamePort(host: string, port: number, udp: dgram.Socket, tcp: net.Server): Promise<number> {
  const bindUdp = (p: number) =>
    new Promise<number>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      udp.once('error', onError);
      udp.bind(p, host, () => {
        udp.off('error', onError);
        resolve(udp.address().port);
      });
    });
  for (let attempt = 0; ; attempt++) {
    const tcpPort = await new Promise<number>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, host, () => {
        tcp.off('error', reject);
        resolve((tcp.address() as net.AddressInfo).port);
      });
    });
    try {
      return await bindUdp(tcpPort);
    } catch (error) {
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      if (port !== 0 || attempt >= 10) throw error;
    }
  }
}
