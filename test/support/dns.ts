/**
 * DNS for tests: the loopback responder of `lib/local/dns-server.ts` under its test names
 * (`startDnsServer`, `DnsServer`), and the queries stub resolvers and HAProxy send.
 */
import { DnsClass, type DnsEdns, type DnsFlags, type DnsMessage } from '../../lib/net/dns.ts';

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

/** The responder is the product's (`lib/local/dns-server.ts`); these are its names in tests. */
export {
  type DnsFailureMode,
  type DnsRecordSource,
  type DnsRecordTable,
  type LocalDnsServer as DnsServer,
  type LocalDnsServerOptions as DnsServerOptions,
  type QueryLogEntry,
  startLocalDnsServer as startDnsServer,
} from '../../embedded/dns-server.ts';
