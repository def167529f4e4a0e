/**
 * The embedded mode's stand-in for the VPC resolver, also the tests' DNS fixture: a loopback
 * responder that answers A/AAAA (following CNAMEs) from a table or a function, NXDOMAIN for
 * unknown names, over UDP and TCP on one port, so HAProxy's `resolvers` section and its
 * destination guard run exactly as in a VPC (EDNS0 OPT echoed, id and question matched). It can
 * be told to fail (SERVFAIL, REFUSED, silence) and logs every query, for resolver-failure tests.
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
} from '../lib/net/dns.ts';

/** name → addresses (IPv4 and IPv6 mixed: A answers take the v4 ones, AAAA the v6 ones). */
export type LocalDnsRecords = Record<string, string[]>;
/** name → addresses, or a full answer set (CNAME chains, TTLs). */
export type DnsRecordTable = Record<string, string[] | DnsAnswerSet>;
/** A table, or a function called per query: `undefined` → NXDOMAIN, `[]` → the name exists with no address of that family. */
export type DnsRecordSource = DnsRecordTable | ((name: string) => string[] | DnsAnswerSet | undefined);

/** How to misbehave, to test resolver failure handling. */
export type DnsFailureMode = 'servfail' | 'refused' | 'drop';

export interface LocalDnsServerOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default 0 (ephemeral; UDP takes the same number as TCP). */
  port?: number;
  records: DnsRecordSource;
  /** TTL of answers in seconds. Default 5. */
  ttl?: number;
  /** Also listen on TCP (same port). Default true. */
  tcp?: boolean;
}

/** One query received. */
export interface QueryLogEntry {
  /** Lower-cased, without the trailing dot. */
  name: string;
  type: number;
  transport: 'udp' | 'tcp';
  hadEdns: boolean;
  /** The answer's RCODE; -1 when the query was dropped. */
  rcode: number;
}

export interface LocalDnsServer {
  readonly host: string;
  readonly port: number;
  /** `host:port` as HAProxy's `nameserver` line, `dns.Resolver#setServers` and the fleet config's `resolvers.nameservers` take it (v6 hosts bracketed). */
  readonly address: string;
  /** Queries received for `name` (case-insensitive), optionally only of one type (`DnsType.A`…). */
  queries(name: string, type?: number): number;
  /** Queries answered (or dropped), in arrival order: the last {@link QUERY_LOG_LIMIT}. */
  readonly log: QueryLogEntry[];
  setRecords(records: DnsRecordSource): void;
  /** Makes every following query fail this way; `undefined` answers normally again. */
  setFailure(mode: DnsFailureMode | undefined): void;
  close(): Promise<void>;
}

/** Entries kept in {@link LocalDnsServer.log}: a demo left running must not grow without bound. */
export const QUERY_LOG_LIMIT = 10_000;

function lookupFor(source: DnsRecordSource): (name: string) => DnsAnswerSet | undefined {
  const asSet = (found: string[] | DnsAnswerSet | undefined) =>
    found === undefined ? undefined : Array.isArray(found) ? { addresses: found } : found;
  if (typeof source === 'function') return (name) => asSet(source(name));
  const table = new Map<string, string[] | DnsAnswerSet>();
  for (const [name, value] of Object.entries(source)) table.set(normalizeDnsName(name), value);
  return (name) => asSet(table.get(name));
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
  let lookup = lookupFor(options.records);
  let failure: DnsFailureMode | undefined;
  const log: QueryLogEntry[] = [];
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
    const query = decoded.message;
    // Never answer a response: two responders must not be able to ping-pong.
    if (query.flags.qr) return undefined;
    const question = query.questions[0];
    const entry: QueryLogEntry = {
      name: question ? normalizeDnsName(question.name) : '',
      type: question?.type ?? 0,
      transport,
      hadEdns: query.edns !== undefined,
      rcode: 0,
    };
    if (question) {
      const key = `${entry.name}\u0000${entry.type}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    log.push(entry);
    if (log.length > QUERY_LOG_LIMIT) log.shift();
    if (failure === 'drop') {
      entry.rcode = -1;
      return undefined;
    }
    const response = answerDnsQuery(query, lookup, { ttl, transport });
    if (failure) {
      response.answers = [];
      response.flags.rcode = failure === 'servfail' ? DnsRcode.ServFail : DnsRcode.Refused;
    }
    entry.rcode = response.flags.rcode;
    return encodeDnsMessage(response);
  };

  const sockets = new Set<net.Socket>();
  const tcp =
    options.tcp === false
      ? undefined
      : net.createServer((socket) => {
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
    log,
    queries(name, type) {
      const wanted = normalizeDnsName(name);
      let n = 0;
      for (const [key, count] of counts) {
        const [qname, qtype] = key.split('\u0000');
        if (qname === wanted && (type === undefined || Number(qtype) === type)) n += count;
      }
      return n;
    },
    setRecords(records) {
      lookup = lookupFor(records);
    },
    setFailure(mode) {
      failure = mode;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        tcp ? new Promise<void>((resolve) => tcp.close(() => resolve())) : undefined,
      ]);
    },
  };
}

/** TCP on an ephemeral port first, then UDP on the same number; a few attempts if UDP's is taken. */
async function bindSamePort(
  host: string,
  port: number,
  udp: dgram.Socket,
  tcp: net.Server | undefined,
): Promise<number> {
  const bindUdp = (p: number) =>
    new Promise<number>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      udp.once('error', onError);
      udp.bind(p, host, () => {
        udp.off('error', onError);
        resolve(udp.address().port);
      });
    });
  if (tcp === undefined) return bindUdp(port);
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
