/**
 * Pure wire codecs shared by tests and product code: PROXY protocol v1/v2, DNS messages, IP
 * address text. No sockets here. (The ClientHello parser that runs is HAProxy Lua, rendered by
 * `proxy/haproxy/render-lua.ts`; the TypeScript ClientHello builder and reader the gateway tests
 * check it against live in `test/support/client-hello.ts`.)
 */
export {
  answerDnsQuery,
  type DnsAnswerSet,
  DnsClass,
  type DnsDecodeResult,
  type DnsEdns,
  type DnsFlags,
  type DnsMessage,
  type DnsQuestion,
  DnsRcode,
  type DnsRecord,
  type DnsRecordData,
  type DnsResponderOptions,
  DnsType,
  decodeDnsMessage,
  encodeDnsMessage,
  frameDnsTcp,
  normalizeDnsName,
  readDnsTcpFrame,
} from './dns.ts';
export { EncodeError } from './errors.ts';
export { formatIp, parseHostPort, parseIPv4, parseIPv6, parseIp } from './ip.ts';
export {
  awsVpceTlv,
  crc32c,
  decodeProxyHeader,
  encodeProxyV1,
  encodeProxyV2,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
  type ProxyDecodeResult,
  type ProxyEncodeInput,
  type ProxyEndpoint,
  type ProxyHeader,
  type ProxyTlv,
  ProxyTlvType,
} from './proxy-protocol.ts';
