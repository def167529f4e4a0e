/**
 * TLS ClientHello: a builder for test fixtures (SNI, ALPN, post-quantum-sized key shares, target
 * sizes, SSLv2-compatible hellos), re-framing helpers that split one hello across TLS records
 * and TCP writes, and a reader that extracts the SNI from however many records and segments
 * it arrives in (tagged results, never throws). Pure: no sockets.
 */
import { randomBytes } from 'node:crypto';
import { EncodeError } from '../../lib/net/errors.ts';

export const TlsExtension = {
  ServerName: 0x0000,
  SupportedGroups: 0x000a,
  SignatureAlgorithms: 0x000d,
  Alpn: 0x0010,
  Padding: 0x0015,
  SupportedVersions: 0x002b,
  PskKeyExchangeModes: 0x002d,
  KeyShare: 0x0033,
} as const;

export const NamedGroup = { X25519: 0x001d, Secp256r1: 0x0017, X25519MLKEM768: 0x11ec } as const;

/** Key share size of the X25519MLKEM768 hybrid browsers send (ML-KEM-768 1184 + X25519 32). */
export const HYBRID_KEY_SHARE_SIZE = 1216;
/** TLSPlaintext.length limit (RFC 8446 §5.1). */
export const MAX_RECORD_PAYLOAD = 16384;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;

export interface ClientHelloOptions {
  /** SNI host name; omit for a hello without SNI. */
  serverName?: string;
  /** ALPN protocols, e.g. `['h2', 'http/1.1']`; omitted when empty. */
  alpn?: string[];
  /** `1.3` (default) adds supported_versions and key_share; `1.2` sends neither. */
  version?: '1.2' | '1.3';
  /** key_exchange bytes of the single key share; default 32 (X25519); {@link HYBRID_KEY_SHARE_SIZE} mimics PQ hybrids. */
  keyShareSize?: number;
  /** Default X25519, or X25519MLKEM768 when `keyShareSize` is the hybrid size. */
  keyShareGroup?: number;
  /** Pad (padding extension, RFC 7685) so the whole output is exactly this many bytes. */
  targetSize?: number;
  cipherSuites?: number[];
  /** Extra extensions, appended before padding. */
  extensions?: { type: number; data: Buffer }[];
  /** Default: random. Fixed values make byte-exact fixtures. */
  random?: Buffer;
  /** Default: 32 random bytes for 1.3 (middlebox compatibility mode), empty for 1.2. */
  sessionId?: Buffer;
  /** Record payload limit used when the hello outgrows one record; default 16384. */
  maxRecordSize?: number;
  /** Legacy record-layer version; default 0x0301 as browsers send. */
  recordVersion?: number;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function vec16(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  if (body.length > 0xffff) throw new EncodeError('vector longer than 65535 bytes');
  return Buffer.concat([u16(body.length), body]);
}

function vec8(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  if (body.length > 0xff) throw new EncodeError('vector longer than 255 bytes');
  return Buffer.concat([Buffer.from([body.length]), body]);
}

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), vec16(data)]);
}

/** Frames handshake bytes as TLS records of at most `fragment` bytes each. */
function frameRecords(handshake: Buffer, fragmentSizes: number[], recordVersion: number): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  for (const size of fragmentSizes) {
    const fragment = handshake.subarray(offset, offset + size);
    offset += fragment.length;
    out.push(Buffer.from([RECORD_HANDSHAKE]), u16(recordVersion), u16(fragment.length), fragment);
  }
  return Buffer.concat(out);
}

function evenSizes(total: number, pieces: number): number[] {
  const n = Math.max(1, Math.min(pieces, total));
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 1) * total) / n) - Math.floor((i * total) / n));
}

/**
 * Builds a ClientHello as one or more TLS handshake records.
 * @example buildClientHello({ serverName: 'api.example.com', alpn: ['h2'], keyShareSize: HYBRID_KEY_SHARE_SIZE })
 * @throws EncodeError when `targetSize` is smaller than the hello needs, or a field overflows.
 */
export function buildClientHello(options: ClientHelloOptions = {}): Buffer {
  const tls13 = (options.version ?? '1.3') === '1.3';
  const keyShareSize = options.keyShareSize ?? 32;
  const group =
    options.keyShareGroup ??
    (keyShareSize === HYBRID_KEY_SHARE_SIZE ? NamedGroup.X25519MLKEM768 : NamedGroup.X25519);
  const suites =
    options.cipherSuites ?? (tls13 ? [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f] : [0xc02b, 0xc02f, 0x009c]);
  const recordVersion = options.recordVersion ?? 0x0301;
  const maxRecord = options.maxRecordSize ?? MAX_RECORD_PAYLOAD;
  const random = options.random ?? randomBytes(32);
  if (random.length !== 32) throw new EncodeError('random must be 32 bytes');
  const sessionId = options.sessionId ?? (tls13 ? randomBytes(32) : Buffer.alloc(0));

  const extensions: Buffer[] = [];
  if (options.serverName !== undefined) {
    const name = Buffer.from(options.serverName, 'latin1');
    extensions.push(extension(TlsExtension.ServerName, vec16(Buffer.from([0]), vec16(name))));
  }
  extensions.push(
    extension(
      TlsExtension.SupportedGroups,
      vec16(
        ...[group, NamedGroup.X25519, NamedGroup.Secp256r1].filter((g, i, a) => a.indexOf(g) === i).map(u16),
      ),
    ),
    extension(TlsExtension.SignatureAlgorithms, vec16(...[0x0403, 0x0804, 0x0401, 0x0503, 0x0805].map(u16))),
  );
  if (options.alpn?.length) {
    extensions.push(
      extension(TlsExtension.Alpn, vec16(...options.alpn.map((p) => vec8(Buffer.from(p, 'latin1'))))),
    );
  }
  if (tls13) {
    extensions.push(
      extension(TlsExtension.SupportedVersions, vec8(u16(0x0304), u16(0x0303))),
      extension(TlsExtension.PskKeyExchangeModes, vec8(Buffer.from([1]))),
      extension(TlsExtension.KeyShare, vec16(u16(group), vec16(randomBytes(keyShareSize)))),
    );
  }
  for (const extra of options.extensions ?? []) extensions.push(extension(extra.type, extra.data));

  const body = (padding: number | undefined): Buffer => {
    const all =
      padding === undefined
        ? extensions
        : [...extensions, extension(TlsExtension.Padding, Buffer.alloc(padding))];
    return Buffer.concat([
      u16(0x0303),
      random,
      vec8(sessionId),
      vec16(...suites.map(u16)),
      vec8(Buffer.from([0])),
      vec16(...all),
    ]);
  };
  const handshake = (b: Buffer): Buffer => {
    if (b.length > 0xffffff) throw new EncodeError('ClientHello longer than 2^24 bytes');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(b.length);
    head[0] = HANDSHAKE_CLIENT_HELLO;
    return Buffer.concat([head, b]);
  };
  const records = (hs: Buffer) => frameRecords(hs, evenSizesMax(hs.length, maxRecord), recordVersion);

  if (options.targetSize === undefined) return records(handshake(body(undefined)));
  const base = 4 + body(undefined).length;
  // total = handshake + 5 per record; the record count itself depends on the size.
  for (let count = 1; count <= 1024; count++) {
    const hsLength = options.targetSize - 5 * count;
    if (Math.ceil(hsLength / maxRecord) !== count) continue;
    const padding = hsLength - base - 4;
    if (padding < 0) break;
    return records(handshake(body(padding)));
  }
  throw new EncodeError(
    `targetSize ${options.targetSize} is smaller than the ${base + 9} bytes this hello needs`,
  );
}

function evenSizesMax(total: number, max: number): number[] {
  return Array.from({ length: Math.max(1, Math.ceil(total / max)) }, (_, i) =>
    Math.min(max, total - i * max),
  );
}

/**
 * An SSLv2-compatible ClientHello (2-byte header, no extensions, so no SNI), as very old
 * clients and some scanners send. HAProxy's `req.ssl_hello_type` recognises it; `req.ssl_sni` cannot.
 */
export function buildSslv2ClientHello(
  options: { version?: number; cipherSpecs?: number[]; challenge?: Buffer } = {},
): Buffer {
  const specs = options.cipherSpecs ?? [0x00c02b, 0x00c02f, 0x00009c];
  const challenge = options.challenge ?? randomBytes(32);
  if (challenge.length < 16 || challenge.length > 32)
    throw new EncodeError('SSLv2 challenge must be 16–32 bytes');
  const specBytes = Buffer.concat(
    specs.map((s) => Buffer.from([(s >> 16) & 0xff, (s >> 8) & 0xff, s & 0xff])),
  );
  const body = Buffer.concat([
    Buffer.from([1]),
    u16(options.version ?? 0x0303),
    u16(specBytes.length),
    u16(0),
    u16(challenge.length),
    specBytes,
    challenge,
  ]);
  if (body.length > 0x7fff) throw new EncodeError('SSLv2 hello too long');
  return Buffer.concat([u16(0x8000 | body.length), body]);
}

/** The handshake bytes carried by a run of TLS records (the record headers removed). */
export function handshakeBytes(records: Buffer): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  while (offset + 5 <= records.length) {
    const length = records.readUInt16BE(offset + 3);
    out.push(records.subarray(offset + 5, offset + 5 + length));
    offset += 5 + length;
  }
  if (offset !== records.length) throw new EncodeError('not a whole number of TLS records');
  return Buffer.concat(out);
}

/**
 * Re-frames a hello's handshake message across several TLS records: `records` equal-ish records,
 * or records with these fragment sizes (the last one takes the rest). Record headers copy the
 * first record's version.
 */
export function splitIntoRecords(hello: Buffer, records: number | number[]): Buffer {
  const handshake = handshakeBytes(hello);
  const version = hello.readUInt16BE(1);
  let sizes: number[];
  if (typeof records === 'number') {
    sizes = evenSizes(handshake.length, records);
  } else {
    sizes = [];
    let left = handshake.length;
    for (const size of records) {
      if (left <= 0) break;
      if (size <= 0) throw new EncodeError('record fragments must not be empty');
      sizes.push(Math.min(size, left));
      left -= size;
    }
    if (left > 0) sizes.push(left);
  }
  if (sizes.some((s) => s > MAX_RECORD_PAYLOAD)) throw new EncodeError('record fragment over 16384 bytes');
  return frameRecords(handshake, sizes, version);
}

/** Cuts bytes into `pieces` near-equal writes, or at these sizes (the rest in a last write). */
export function splitWrites(bytes: Buffer, pieces: number | number[]): Buffer[] {
  if (typeof pieces === 'number') {
    const out: Buffer[] = [];
    let offset = 0;
    for (const size of evenSizes(bytes.length, pieces)) {
      out.push(bytes.subarray(offset, offset + size));
      offset += size;
    }
    return out;
  }
  const out: Buffer[] = [];
  let offset = 0;
  for (const size of pieces) {
    if (offset >= bytes.length) break;
    out.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  if (offset < bytes.length) out.push(bytes.subarray(offset));
  return out;
}

/** What the reader learnt from a ClientHello. */
export interface ClientHelloInfo {
  format: 'tls' | 'sslv2';
  /** Record-layer version of the first record (0x0002 for SSLv2). */
  recordVersion: number;
  /** legacy_version from the hello body. */
  clientVersion: number;
  /** SNI host name exactly as sent (not lower-cased); undefined when absent. */
  serverName: string | undefined;
  alpn: string[];
  supportedVersions: number[];
  keyShares: { group: number; size: number }[];
  cipherSuites: number[];
  /** Extension types in the order sent. */
  extensionTypes: number[];
  /** How many TLS records the hello spanned. */
  records: number;
  /** Length of the handshake message body. */
  handshakeLength: number;
}

export type ClientHelloResult =
  | { kind: 'need-more' }
  | { kind: 'ok'; hello: ClientHelloInfo; length: number }
  | { kind: 'invalid'; reason: string };

export interface ReadClientHelloOptions {
  /** Refuse hellos whose handshake message is larger (a peer could otherwise make us buffer 16 MB). Default 65536. */
  maxLength?: number;
}

class Failure extends Error {}

class Cursor {
  offset = 0;
  readonly data: Buffer;
  readonly end: number;
  constructor(data: Buffer, start = 0, end = data.length) {
    this.data = data;
    this.offset = start;
    this.end = end;
  }
  take(n: number, what: string): Buffer {
    if (this.offset + n > this.end) throw new Failure(`${what} runs past its container`);
    const b = this.data.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
  u8(what: string): number {
    return this.take(1, what)[0]!;
  }
  u16(what: string): number {
    return this.take(2, what).readUInt16BE(0);
  }
  vec8(what: string): Cursor {
    const n = this.u8(what);
    return this.sub(n, what);
  }
  vec16(what: string): Cursor {
    const n = this.u16(what);
    return this.sub(n, what);
  }
  sub(n: number, what: string): Cursor {
    const start = this.offset;
    this.take(n, what);
    return new Cursor(this.data, start, start + n);
  }
  get left(): number {
    return this.end - this.offset;
  }
}

const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$/;

/**
 * Reads a ClientHello from the first bytes of a connection, across any number of records and
 * segments. `need-more` whenever the bytes so far are a prefix of a valid hello; `length` counts
 * the bytes of the records that carried it. Never throws.
 */
export function readClientHello(data: Buffer, options: ReadClientHelloOptions = {}): ClientHelloResult {
  try {
    if (data.length === 0) return { kind: 'need-more' };
    if (data[0]! & 0x80) return readSslv2(data);
    if (data[0] !== RECORD_HANDSHAKE) return { kind: 'invalid', reason: 'not a TLS handshake record' };
    const maxLength = options.maxLength ?? 65536;
    const fragments: Buffer[] = [];
    let collected = 0;
    let offset = 0;
    let records = 0;
    let needed = -1;
    while (needed < 0 || collected < needed) {
      if (data.length < offset + 5) return { kind: 'need-more' };
      if (data[offset] !== RECORD_HANDSHAKE) {
        return { kind: 'invalid', reason: `record type ${data[offset]} before the ClientHello was complete` };
      }
      if (data[offset + 1] !== 3) return { kind: 'invalid', reason: 'record version is not 3.x' };
      const length = data.readUInt16BE(offset + 3);
      if (length === 0) return { kind: 'invalid', reason: 'empty handshake record' };
      if (length > MAX_RECORD_PAYLOAD)
        return { kind: 'invalid', reason: `record of ${length} bytes exceeds 16384` };
      if (data.length < offset + 5 + length) {
        // Check the handshake header as soon as it is in, so garbage fails fast.
        const early = checkHandshakeHeader(
          Buffer.concat([...fragments, data.subarray(offset + 5)]),
          maxLength,
        );
        if (early) return early;
        return { kind: 'need-more' };
      }
      fragments.push(data.subarray(offset + 5, offset + 5 + length));
      collected += length;
      offset += 5 + length;
      records++;
      if (needed < 0 && collected >= 4) {
        const head = Buffer.concat(fragments);
        const bad = checkHandshakeHeader(head, maxLength);
        if (bad) return bad;
        needed = 4 + head.readUIntBE(1, 3);
      }
    }
    const handshake = Buffer.concat(fragments);
    if (handshake.length !== needed) {
      return { kind: 'invalid', reason: 'the ClientHello record carries bytes after the message' };
    }
    const hello = parseHelloBody(new Cursor(handshake, 4, needed));
    return {
      kind: 'ok',
      hello: {
        ...hello,
        format: 'tls',
        recordVersion: data.readUInt16BE(1),
        records,
        handshakeLength: needed - 4,
      },
      length: offset,
    };
  } catch (error) {
    if (error instanceof Failure) return { kind: 'invalid', reason: error.message };
    return { kind: 'invalid', reason: `reader failure: ${(error as Error).message}` };
  }
}

function checkHandshakeHeader(handshake: Buffer, maxLength: number): ClientHelloResult | undefined {
  if (handshake.length >= 1 && handshake[0] !== HANDSHAKE_CLIENT_HELLO) {
    return { kind: 'invalid', reason: `handshake type ${handshake[0]} is not ClientHello` };
  }
  if (handshake.length >= 4) {
    const length = handshake.readUIntBE(1, 3);
    if (length > maxLength)
      return { kind: 'invalid', reason: `ClientHello of ${length} bytes exceeds ${maxLength}` };
    if (length < 38) return { kind: 'invalid', reason: `ClientHello of ${length} bytes is too short` };
  }
  return undefined;
}

type BodyInfo = Omit<ClientHelloInfo, 'format' | 'recordVersion' | 'records' | 'handshakeLength'>;

function parseHelloBody(c: Cursor): BodyInfo {
  const clientVersion = c.u16('legacy_version');
  c.take(32, 'random');
  const sessionId = c.vec8('legacy_session_id');
  if (sessionId.left > 32) throw new Failure('session id longer than 32 bytes');
  const suites = c.vec16('cipher_suites');
  if (suites.left === 0 || suites.left % 2) throw new Failure('cipher_suites length is empty or odd');
  const cipherSuites: number[] = [];
  while (suites.left) cipherSuites.push(suites.u16('cipher suite'));
  const compression = c.vec8('legacy_compression_methods');
  if (compression.left === 0) throw new Failure('no compression methods');
  const info: BodyInfo = {
    clientVersion,
    serverName: undefined,
    alpn: [],
    supportedVersions: [],
    keyShares: [],
    cipherSuites,
    extensionTypes: [],
  };
  if (c.left === 0) return info;
  const extensions = c.vec16('extensions');
  if (c.left !== 0) throw new Failure('bytes after the extensions');
  while (extensions.left) {
    const type = extensions.u16('extension type');
    const data = extensions.vec16('extension');
    if (info.extensionTypes.includes(type)) throw new Failure(`duplicate extension 0x${type.toString(16)}`);
    info.extensionTypes.push(type);
    if (type === TlsExtension.ServerName) info.serverName = readServerName(data);
    else if (type === TlsExtension.Alpn) info.alpn = readAlpn(data);
    else if (type === TlsExtension.SupportedVersions) {
      const list = data.vec8('supported_versions');
      if (list.left === 0 || list.left % 2) throw new Failure('supported_versions length is empty or odd');
      while (list.left) info.supportedVersions.push(list.u16('version'));
      if (data.left) throw new Failure('bytes after supported_versions');
    } else if (type === TlsExtension.KeyShare) {
      const list = data.vec16('key_share');
      while (list.left) {
        const group = list.u16('key share group');
        info.keyShares.push({ group, size: list.vec16('key_exchange').left });
      }
      if (data.left) throw new Failure('bytes after key_share');
    }
  }
  return info;
}

function readServerName(data: Cursor): string | undefined {
  const list = data.vec16('server_name_list');
  if (data.left) throw new Failure('bytes after server_name_list');
  if (list.left === 0) throw new Failure('empty server_name_list');
  let name: string | undefined;
  while (list.left) {
    const nameType = list.u8('server name type');
    const value = list.vec16('server name');
    if (nameType !== 0) continue;
    if (name !== undefined) throw new Failure('two host names in server_name');
    const bytes = value.take(value.left, 'server name');
    const text = bytes.toString('latin1');
    if (bytes.length === 0 || bytes.length > 253 || !HOST_NAME.test(text))
      throw new Failure('server name is not a host name');
    name = text;
  }
  return name;
}

function readAlpn(data: Cursor): string[] {
  const list = data.vec16('protocol_name_list');
  if (data.left) throw new Failure('bytes after protocol_name_list');
  if (list.left === 0) throw new Failure('empty protocol_name_list');
  const protocols: string[] = [];
  while (list.left) {
    const p = list.vec8('protocol name');
    if (p.left === 0) throw new Failure('empty ALPN protocol name');
    protocols.push(p.take(p.left, 'protocol name').toString('latin1'));
  }
  return protocols;
}

function readSslv2(data: Buffer): ClientHelloResult {
  if (data.length < 3) return { kind: 'need-more' };
  const length = data.readUInt16BE(0) & 0x7fff;
  if (data[2] !== 1) return { kind: 'invalid', reason: 'SSLv2 record is not a CLIENT-HELLO' };
  if (length < 9) return { kind: 'invalid', reason: 'SSLv2 CLIENT-HELLO too short' };
  if (data.length < 2 + length) return { kind: 'need-more' };
  const c = new Cursor(data, 3, 2 + length);
  const clientVersion = c.u16('version');
  const specLength = c.u16('cipher spec length');
  const sessionLength = c.u16('session id length');
  const challengeLength = c.u16('challenge length');
  if (specLength === 0 || specLength % 3) throw new Failure('SSLv2 cipher specs not a multiple of 3');
  if (challengeLength < 16 || challengeLength > 32) throw new Failure('SSLv2 challenge must be 16–32 bytes');
  if (sessionLength !== 0 && sessionLength !== 16)
    throw new Failure('SSLv2 session id must be 0 or 16 bytes');
  if (c.left !== specLength + sessionLength + challengeLength)
    throw new Failure('SSLv2 lengths do not add up');
  const specs = c.take(specLength, 'cipher specs');
  const cipherSuites: number[] = [];
  for (let i = 0; i < specs.length; i += 3) cipherSuites.push(specs.readUIntBE(i, 3));
  return {
    kind: 'ok',
    hello: {
      format: 'sslv2',
      recordVersion: 0x0002,
      clientVersion,
      serverName: undefined,
      alpn: [],
      supportedVersions: [],
      keyShares: [],
      cipherSuites,
      extensionTypes: [],
      records: 1,
      handshakeLength: length,
    },
    length: 2 + length,
  };
}

/**
 * Just the SNI: `ok` with `serverName` (undefined when the hello has none).
 * @example readSni(firstBytes) // { kind: 'ok', serverName: 'api.example.com', length: 517 }
 */
export function readSni(
  data: Buffer,
  options?: ReadClientHelloOptions,
):
  | { kind: 'need-more' }
  | { kind: 'ok'; serverName: string | undefined; length: number }
  | { kind: 'invalid'; reason: string } {
  const result = readClientHello(data, options);
  if (result.kind !== 'ok') return result;
  return { kind: 'ok', serverName: result.hello.serverName, length: result.length };
}

/** A hello shaped like a post-quantum browser's (X25519MLKEM768 key share, ~1.4 KB): more than one segment at small MSS. */
export function postQuantumHello(
  serverName: string,
  options: { alpn?: string[]; targetSize?: number } = {},
): Buffer {
  return buildClientHello({
    serverName,
    keyShareSize: HYBRID_KEY_SHARE_SIZE,
    alpn: options.alpn ?? ['h2', 'http/1.1'],
    ...(options.targetSize === undefined ? {} : { targetSize: options.targetSize }),
  });
}
