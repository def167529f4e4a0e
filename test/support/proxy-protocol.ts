/**
 * PROXY header builders for tests that play the NLB. Addresses are `host:port` strings
 * (`[v6]:port` for IPv6); the family follows from them.
 */
import { EncodeError } from '../../lib/net/errors.ts';
import { parseHostPort } from '../../lib/net/ip.ts';
import {
  encodeProxyV1,
  encodeProxyV2,
  type ProxyEndpoint,
  type ProxyTlv,
} from '../../lib/net/proxy-protocol.ts';

export {
  awsVpceTlv,
  decodeProxyHeader,
  encodeProxyV1,
  encodeProxyV2,
  type ProxyHeader,
  type ProxyTlv,
  ProxyTlvType,
} from '../../lib/net/proxy-protocol.ts';

function endpoint(text: string): ProxyEndpoint {
  const parsed = parseHostPort(text);
  if (!parsed) throw new EncodeError(`"${text}" is not host:port`);
  return { address: parsed.host, port: parsed.port };
}

/**
 * A v2 PROXY header for a TCP connection.
 * @example proxyV2({ source: '203.0.113.7:5555', destination: '127.0.0.1:443' })
 */
export function proxyV2(options: {
  source: string;
  destination: string;
  tlvs?: ProxyTlv[];
  crc32c?: boolean;
}): Buffer {
  return encodeProxyV2({
    source: endpoint(options.source),
    destination: endpoint(options.destination),
    tlvs: options.tlvs ?? [],
    crc32c: options.crc32c ?? false,
  });
}

/** The v2 LOCAL header AWS NLB health checks send: no addresses, the receiver uses the connection's own. */
export function proxyV2Local(options: { tlvs?: ProxyTlv[] } = {}): Buffer {
  return encodeProxyV2({ command: 'local', tlvs: options.tlvs ?? [] });
}

/** A v1 `PROXY TCP4|TCP6 …` line. */
export function proxyV1(options: { source: string; destination: string }): Buffer {
  return encodeProxyV1({ source: endpoint(options.source), destination: endpoint(options.destination) });
}

/** `PROXY UNKNOWN\r\n`. */
export function proxyV1Unknown(): Buffer {
  return encodeProxyV1({ command: 'local' });
}
