/**
 * A loopback DNS responder for tests and the local demo: answers A/AAAA (and follows CNAMEs)
 * from a table or a function, NXDOMAIN for unknown names, over UDP and TCP on the same port.
 * Good enough to be HAProxy's `resolvers` nameserver (EDNS0 OPT echoed, id and question matched).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import {
  answerDnsQuery,
  type DnsAnswerSet,
  DnsClass,
  type DnsEdns,
  type DnsFlags,
  type DnsMessage,
  DnsRcode,
  decodeDnsMessage,
  encodeDnsMessage,
  frameDnsTcp,
  normalizeDnsName,
  readDnsTcpFrame,
} from '../../lib/net/dns.ts';

export { type DnsAnswerSet, DnsRcode, DnsType } from '../../lib/net/dns.ts';

/** The flags of a query as stub resolvers and HAProxy send it: recursion desired, nothing else. */
export const QUERY_FLAGS: Readonly<DnsFlags> = {
  qr: false,
  opcode: 0,
  aa: false,
  tc: false,
  rd: true,
  ra: false,
  ad: false,
  cd: false,
  rcode: 0,
};

/** The EDNS0 OPT record HAProxy 2.6 adds by default (512-byte payload, version 0, no options). */
export const QUERY_EDNS: Readonly<DnsEdns> = {
  udpPayloadSize: 512,
  extendedRcode: 0,
  version: 0,
  dnssecOk: false,
  options: [],
};

/**
 * A query for one name: one IN question, no records, EDNS only when given. Every call returns
 * fresh objects, so a test may change the message it gets.
 * @example encodeDnsMessage(dnsQuery('api.internal', DnsType.A, { id: 7, edns: QUERY_EDNS }))
 */
export function dnsQuery(
  name: string,
  type: number,
  options: { id?: number; edns?: DnsEdns } = {},
): DnsMessage {
  const message: DnsMessage = {
    id: options.id ?? 0x1234,
    flags: { ...QUERY_FLAGS },
    questions: [{ name, type, class: DnsClass.IN }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (options.edns) message.edns = { ...options.edns, options: [...options.edns.options] };
  return message;
}

/** name → addresses (IPv4 and IPv6 mixed; A answers take the v4 ones, AAAA the v6 ones), or a full answer set. */
export type DnsRecordTable = Record<string, string[] | DnsAnswerSet>;
/** Called per query; `undefined` → NXDOMAIN, `[]` → the name exists with no address of that family. */
export type DnsRecordSource = DnsRecordTable | ((name: string) => string[] | DnsAnswerSet | undefined);

/** How to misbehave, to test resolver failure handling. */
export type DnsFailureMode = 'servfail' | 'refused' | 'drop';

export interface DnsServerOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  records: DnsRecordSource;
  /** TTL of answers, seconds; default 5. */
  ttl?: number;
  /** Also listen on TCP (same port). Default true. */
  tcp?: boolean;
}

export interface QueryLogEntry {
  name: string;
  type: number;
  transport: 'udp' | 'tcp';
  hadEdns: boolean;
  rcode: number;
}

export interface DnsServer {
  host: string;
  port: number;
  /** `host:port`, as `dns.Resolver#setServers` and HAProxy's `nameserver` take it (v6 hosts bracketed). */
  address: string;
  /** Queries received for `name` (case-insensitive), optionally only of one type (`DnsType.A`…). */
  queries(name: string, type?: number): number;
  /** Every query answered (or dropped), in arrival order. */
  log: QueryLogEntry[];
  setRecords(records: DnsRecordSource): void;
  /** Makes every following query fail this way; `undefined` answers normally again. */
  setFailure(mode: DnsFailureMode | undefined): void;
  close(): Promise<void>;
}

function lookupIn(source: DnsRecordSource, name: string): DnsAnswerSet | undefined {
  let found: string[] | DnsAnswerSet | undefined;
  if (typeof source === 'function') {
    found = source(name);
  } else {
    for (const [key, value] of Object.entries(source)) {
      if (normalizeDnsName(key) === name) found = value;
    }
  }
  if (found === undefined) return undefined;
  return Array.isArray(found) ? { addresses: found } : found;
}

/**
 * Starts the responder.
 * @example
 * const dns = await startDnsServer({ records: { 'api.internal': ['169.254.171.5', 'fd00:ec2:80::5'] } });
 * resolver.setServers([dns.address]); … await dns.close();
 */
export async function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  const host = options.host ?? '127.0.0.1';
  const ttl = options.ttl ?? 5;
  let records = options.records;
  let failure: DnsFailureMode | undefined;
  const log: QueryLogEntry[] = [];
  const counts = new Map<string, number>();

  const respond = (datagram: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined => {
    const decoded = decodeDnsMessage(datagram);
    if (decoded.kind === 'invalid') {
      if (datagram.length < 12) return undefined;
      // Still answer FORMERR with the id so the client does not wait for a timeout.
      const formErr = Buffer.alloc(12);
      datagram.copy(formErr, 0, 0, 2);
      formErr.writeUInt16BE(0x8000 | DnsRcode.FormErr, 2);
      return formErr;
    }
    const query = decoded.message;
    // Never answer a response: two responders must not be able to ping-pong.
    if (query.flags.qr) return undefined;
    const question = query.questions[0];
    if (question) {
      const key = `${normalizeDnsName(question.name)}\u0000${question.type}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const entry: QueryLogEntry = {
      name: question ? normalizeDnsName(question.name) : '',
      type: question?.type ?? 0,
      transport,
      hadEdns: query.edns !== undefined,
      rcode: 0,
    };
    log.push(entry);
    if (failure === 'drop') {
      entry.rcode = -1;
      return undefined;
    }
    const response = answerDnsQuery(query, (name) => lookupIn(records, name), { ttl, transport });
    if (failure) {
      response.answers = [];
      response.flags.rcode = failure === 'servfail' ? DnsRcode.ServFail : DnsRcode.Refused;
    }
    entry.rcode = response.flags.rcode;
    return encodeDnsMessage(response);
  };

  const tcpSockets = new Set<net.Socket>();
  const tcpServer =
    options.tcp === false
      ? undefined
      : net.createServer((socket) => {
          tcpSockets.add(socket);
          socket.on('close', () => tcpSockets.delete(socket));
          socket.on('error', () => socket.destroy());
          let pending = Buffer.alloc(0);
          socket.on('data', (chunk) => {
            pending = Buffer.concat([pending, chunk]);
            // Bounded: each pass consumes a frame or stops.
            for (;;) {
              const frame = readDnsTcpFrame(pending);
              if (frame.kind === 'need-more') return;
              if (frame.kind === 'invalid') {
                socket.destroy();
                return;
              }
              pending = pending.subarray(frame.length);
              const answer = respond(frame.message, 'tcp');
              if (answer) socket.write(frameDnsTcp(answer));
            }
          });
        });
  const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  udp.on('message', (msg, rinfo) => {
    const answer = respond(msg, 'udp');
    if (answer) udp.send(answer, rinfo.port, rinfo.address);
  });
  udp.on('error', () => {});

  const port = await bindBoth(host, options.port ?? 0, udp, tcpServer);
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
    setRecords(next) {
      records = next;
    },
    setFailure(mode) {
      failure = mode;
    },
    async close() {
      for (const socket of tcpSockets) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        tcpServer ? new Promise<void>((resolve) => tcpServer.close(() => resolve())) : undefined,
      ]);
    },
  };
}

/** TCP first on an ephemeral port, then UDP on the same number; retried a few times if UDP's is taken. */
async function bindBoth(
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
  if (!tcp) return bindUdp(port);
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
