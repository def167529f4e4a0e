/**
 * PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy and AWS NLB speak them
 * (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt). Pure: Buffers in, Buffers or
 * tagged results out, no sockets.
 */
import { EncodeError } from './errors.ts';
import { formatIp, parseIPv4, parseIPv6 } from './ip.ts';

/** The 12 bytes every v2 header starts with. */
export const PROXY_V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** v1 headers are at most 107 bytes including the CRLF (spec §2.1). */
export const PROXY_V1_MAX_LENGTH = 107;

/** Well-known v2 TLV types (spec §2.2.1–2.2.8), plus the AWS one NLB adds for PrivateLink. */
export const ProxyTlvType = {
  Alpn: 0x01,
  Authority: 0x02,
  Crc32c: 0x03,
  Noop: 0x04,
  UniqueId: 0x05,
  Ssl: 0x20,
  Netns: 0x30,
  Aws: 0xea,
} as const;

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

export interface ProxyEndpoint {
  address: string;
  port: number;
}

/**
 * A decoded (or to-be-encoded) header. v1 has no LOCAL command: its `UNKNOWN` line means the
 * same thing to a receiver (use the connection's own addresses), so it decodes as `local`.
 */
export interface ProxyHeader {
  version: 1 | 2;
  command: 'proxy' | 'local';
  family: 'inet' | 'inet6' | 'unix' | 'unspec';
  transport: 'stream' | 'dgram' | 'unspec';
  /** Present for `inet`/`inet6` with command `proxy`. */
  source?: ProxyEndpoint;
  destination?: ProxyEndpoint;
  /** v2 only; in wire order. A CRC32C TLV, when present, has been checked. */
  tlvs: ProxyTlv[];
}

export type ProxyDecodeResult =
  | { kind: 'need-more' }
  | { kind: 'ok'; header: ProxyHeader; length: number }
  | { kind: 'invalid'; reason: string };

/** What the encoder needs; `family`/`transport` default from the addresses (TCP). */
export interface ProxyEncodeInput {
  command?: 'proxy' | 'local';
  family?: ProxyHeader['family'];
  transport?: ProxyHeader['transport'];
  source?: ProxyEndpoint;
  destination?: ProxyEndpoint;
  tlvs?: ProxyTlv[];
  /** v2: append a CRC32C TLV over the whole header, as a sender that wants integrity checks does. */
  crc32c?: boolean;
}

const FAMILY_CODES = { unspec: 0, inet: 1, inet6: 2, unix: 3 } as const;
const TRANSPORT_CODES = { unspec: 0, stream: 1, dgram: 2 } as const;
const FAMILIES = ['unspec', 'inet', 'inet6', 'unix'] as const;
const TRANSPORTS = ['unspec', 'stream', 'dgram'] as const;
const ADDRESS_BLOCK = { unspec: 0, inet: 12, inet6: 36, unix: 216 } as const;

function addressBytes(endpoint: ProxyEndpoint, family: 'inet' | 'inet6', which: string): Buffer {
  const bytes = family === 'inet' ? parseIPv4(endpoint.address) : parseIPv6(endpoint.address);
  if (!bytes)
    throw new EncodeError(
      `${which} address ${endpoint.address} is not ${family === 'inet' ? 'IPv4' : 'IPv6'}`,
    );
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 65535) {
    throw new EncodeError(`${which} port ${endpoint.port} is out of range`);
  }
  return bytes;
}

function inferFamily(input: ProxyEncodeInput): ProxyHeader['family'] {
  if (input.family) return input.family;
  if ((input.command ?? 'proxy') === 'local' || !input.source) return 'unspec';
  return parseIPv4(input.source.address) ? 'inet' : 'inet6';
}

/**
 * Encodes a v2 header.
 * @example encodeProxyV2({ source: { address: '203.0.113.7', port: 5555 }, destination: { address: '127.0.0.1', port: 443 } })
 * @throws EncodeError for addresses that do not fit the family or a header over 65 535 bytes.
 */
export function encodeProxyV2(input: ProxyEncodeInput): Buffer {
  const command = input.command ?? 'proxy';
  const family = inferFamily(input);
  const transport = input.transport ?? (family === 'unspec' ? 'unspec' : 'stream');
  let addresses = Buffer.alloc(0);
  if (family === 'inet' || family === 'inet6') {
    if (!input.source || !input.destination)
      throw new EncodeError(`${family} needs a source and a destination`);
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(input.source.port & 0xffff, 0);
    ports.writeUInt16BE(input.destination.port & 0xffff, 2);
    addresses = Buffer.concat([
      addressBytes(input.source, family, 'source'),
      addressBytes(input.destination, family, 'destination'),
      ports,
    ]);
  } else if (family === 'unix') {
    addresses = Buffer.alloc(ADDRESS_BLOCK.unix);
  }
  const tlvParts: Buffer[] = [];
  for (const tlv of input.tlvs ?? []) {
    if (tlv.type < 0 || tlv.type > 0xff || tlv.value.length > 0xffff)
      throw new EncodeError('TLV out of range');
    const head = Buffer.alloc(3);
    head.writeUInt8(tlv.type, 0);
    head.writeUInt16BE(tlv.value.length, 1);
    tlvParts.push(head, tlv.value);
  }
  if (input.crc32c) tlvParts.push(Buffer.from([ProxyTlvType.Crc32c, 0, 4, 0, 0, 0, 0]));
  const body = Buffer.concat([addresses, ...tlvParts]);
  if (body.length > 0xffff)
    throw new EncodeError(`PROXY v2 header body of ${body.length} bytes exceeds 65535`);
  const head = Buffer.alloc(16);
  PROXY_V2_SIGNATURE.copy(head, 0);
  head.writeUInt8(0x20 | (command === 'local' ? 0 : 1), 12);
  head.writeUInt8((FAMILY_CODES[family] << 4) | TRANSPORT_CODES[transport], 13);
  head.writeUInt16BE(body.length, 14);
  const header = Buffer.concat([head, body]);
  if (input.crc32c) header.writeUInt32BE(crc32c(header), header.length - 4);
  return header;
}

/**
 * Encodes a v1 line: `PROXY TCP4|TCP6 src dst sport dport\r\n`, or `PROXY UNKNOWN\r\n` for a
 * `local` command or `unspec` family.
 * @throws EncodeError for UDP/UNIX (v1 cannot carry them) or addresses that do not fit.
 */
export function encodeProxyV1(input: ProxyEncodeInput): Buffer {
  const family = inferFamily(input);
  if ((input.command ?? 'proxy') === 'local' || family === 'unspec')
    return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  if (family === 'unix' || (input.transport ?? 'stream') !== 'stream') {
    throw new EncodeError('PROXY v1 carries only TCP over IPv4 or IPv6');
  }
  if (!input.source || !input.destination)
    throw new EncodeError(`${family} needs a source and a destination`);
  const src = formatIp(addressBytes(input.source, family, 'source'));
  const dst = formatIp(addressBytes(input.destination, family, 'destination'));
  const proto = family === 'inet' ? 'TCP4' : 'TCP6';
  return Buffer.from(
    `PROXY ${proto} ${src} ${dst} ${input.source.port} ${input.destination.port}\r\n`,
    'latin1',
  );
}

function isPrefixOf(data: Buffer, full: Buffer): boolean {
  const n = Math.min(data.length, full.length);
  return data.subarray(0, n).equals(full.subarray(0, n));
}

/**
 * Reads a v1 or v2 header from the start of `data` (the first bytes of a connection).
 * `need-more` while every byte so far could still start a valid header; `length` is the number of
 * bytes the header occupies, the payload follows. Never throws.
 */
export function decodeProxyHeader(data: Buffer): ProxyDecodeResult {
  if (data.length === 0) return { kind: 'need-more' };
  if (data[0] === 0x0d) {
    if (!isPrefixOf(data, PROXY_V2_SIGNATURE)) return { kind: 'invalid', reason: 'bad PROXY v2 signature' };
    return decodeV2(data);
  }
  if (data[0] === 0x50) {
    if (!isPrefixOf(data, V1_PREFIX)) return { kind: 'invalid', reason: 'bad PROXY v1 signature' };
    return decodeV1(data);
  }
  return { kind: 'invalid', reason: 'no PROXY header signature' };
}

function decodeV2(data: Buffer): ProxyDecodeResult {
  if (data.length < 16) return { kind: 'need-more' };
  const versionCommand = data[12]!;
  if (versionCommand >> 4 !== 2)
    return { kind: 'invalid', reason: `unsupported PROXY version ${versionCommand >> 4}` };
  const commandCode = versionCommand & 0x0f;
  if (commandCode > 1) return { kind: 'invalid', reason: `unknown PROXY v2 command ${commandCode}` };
  const familyCode = data[13]! >> 4;
  const transportCode = data[13]! & 0x0f;
  const family = FAMILIES[familyCode];
  const transport = TRANSPORTS[transportCode];
  if (!family || !transport)
    return { kind: 'invalid', reason: `unknown PROXY v2 family/transport 0x${data[13]!.toString(16)}` };
  const bodyLength = data.readUInt16BE(14);
  const length = 16 + bodyLength;
  const command = commandCode === 0 ? 'local' : 'proxy';
  // LOCAL headers may carry an address block the receiver must skip, so only PROXY needs one.
  const addressLength = command === 'proxy' ? ADDRESS_BLOCK[family] : 0;
  if (bodyLength < addressLength) {
    return {
      kind: 'invalid',
      reason: `PROXY v2 length ${bodyLength} is shorter than the ${family} address block`,
    };
  }
  if (data.length < length) return { kind: 'need-more' };
  const header: ProxyHeader = { version: 2, command, family, transport, tlvs: [] };
  if (command === 'proxy' && (family === 'inet' || family === 'inet6')) {
    const size = family === 'inet' ? 4 : 16;
    const base = 16 + 2 * size;
    header.source = { address: formatIp(data.subarray(16, 16 + size)), port: data.readUInt16BE(base) };
    header.destination = {
      address: formatIp(data.subarray(16 + size, base)),
      port: data.readUInt16BE(base + 2),
    };
  }
  // TLVs follow the family's address block. A LOCAL receiver discards the whole block (spec
  // §2.2), so there a malformed TLV area is not an error, only left unread.
  const tlvs = readTlvs(data, 16 + (bodyLength >= ADDRESS_BLOCK[family] ? ADDRESS_BLOCK[family] : 0), length);
  if (typeof tlvs === 'string') {
    if (command === 'proxy') return { kind: 'invalid', reason: tlvs };
  } else {
    header.tlvs = tlvs;
  }
  return { kind: 'ok', header, length };
}

function readTlvs(data: Buffer, start: number, end: number): ProxyTlv[] | string {
  const tlvs: ProxyTlv[] = [];
  let offset = start;
  let crcAt = -1;
  while (offset < end) {
    if (end - offset < 3) return 'truncated PROXY v2 TLV header';
    const type = data[offset]!;
    const tlvLength = data.readUInt16BE(offset + 1);
    if (offset + 3 + tlvLength > end)
      return `PROXY v2 TLV 0x${type.toString(16)} overflows the header length`;
    if (type === ProxyTlvType.Crc32c) {
      if (tlvLength !== 4) return 'PROXY v2 CRC32C TLV must be 4 bytes';
      crcAt = offset + 3;
    } else {
      tlvs.push({ type, value: Buffer.from(data.subarray(offset + 3, offset + 3 + tlvLength)) });
    }
    offset += 3 + tlvLength;
  }
  if (crcAt >= 0) {
    const copy = Buffer.from(data.subarray(0, end));
    const expected = copy.readUInt32BE(crcAt);
    copy.writeUInt32BE(0, crcAt);
    if (crc32c(copy) !== expected) return 'PROXY v2 CRC32C mismatch';
  }
  return tlvs;
}

const PORT = /^(0|[1-9]\d{0,4})$/;

function decodeV1(data: Buffer): ProxyDecodeResult {
  const window = data.subarray(0, PROXY_V1_MAX_LENGTH);
  const lf = window.indexOf(0x0a);
  if (lf < 0) {
    return data.length >= PROXY_V1_MAX_LENGTH
      ? { kind: 'invalid', reason: `PROXY v1 line longer than ${PROXY_V1_MAX_LENGTH} bytes` }
      : { kind: 'need-more' };
  }
  if (lf === 0 || window[lf - 1] !== 0x0d)
    return { kind: 'invalid', reason: 'PROXY v1 line does not end in CRLF' };
  const length = lf + 1;
  const line = window.subarray(0, lf - 1).toString('latin1');
  const parts = line.split(' ');
  const local = { version: 1, command: 'local', family: 'unspec', transport: 'unspec', tlvs: [] } as const;
  if (parts[1] === 'UNKNOWN') return { kind: 'ok', header: { ...local, tlvs: [] }, length };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) {
    return { kind: 'invalid', reason: 'malformed PROXY v1 line' };
  }
  const family = parts[1] === 'TCP4' ? 'inet' : 'inet6';
  const parse = family === 'inet' ? parseIPv4 : parseIPv6;
  const src = parse(parts[2]!);
  const dst = parse(parts[3]!);
  if (!src || !dst) return { kind: 'invalid', reason: `PROXY v1 addresses are not ${parts[1]}` };
  if (
    !PORT.test(parts[4]!) ||
    !PORT.test(parts[5]!) ||
    Number(parts[4]) > 65535 ||
    Number(parts[5]) > 65535
  ) {
    return { kind: 'invalid', reason: 'PROXY v1 port out of range' };
  }
  return {
    kind: 'ok',
    header: {
      version: 1,
      command: 'proxy',
      family,
      transport: 'stream',
      source: { address: formatIp(src), port: Number(parts[4]) },
      destination: { address: formatIp(dst), port: Number(parts[5]) },
      tlvs: [],
    },
    length,
  };
}

let crcTable: Uint32Array | undefined;

/** CRC32C (Castagnoli), the checksum the PP2_TYPE_CRC32C TLV carries. */
export function crc32c(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** The TLV AWS NLB adds for PrivateLink connections: subtype 0x01 followed by the VPC endpoint id. */
export function awsVpceTlv(vpceId: string): ProxyTlv {
  return {
    type: ProxyTlvType.Aws,
    value: Buffer.concat([Buffer.from([0x01]), Buffer.from(vpceId, 'ascii')]),
  };
}
