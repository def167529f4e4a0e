/**
 * A small DNS message codec (RFC 1035 with EDNS0 from RFC 6891): enough for A/AAAA/CNAME
 * answers, NXDOMAIN and the OPT record HAProxy's resolvers send. Pure; the loopback responder
 * in `test/support/dns.ts` is the I/O around it.
 */
import { EncodeError } from './errors.ts';
import { formatIp, parseIPv4, parseIPv6 } from './ip.ts';

export const DnsType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  ANY: 255,
} as const;
export const DnsClass = { IN: 1 } as const;
export const DnsRcode = { NoError: 0, FormErr: 1, ServFail: 2, NXDomain: 3, NotImp: 4, Refused: 5 } as const;

export interface DnsFlags {
  /** true in responses. */
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  ad: boolean;
  cd: boolean;
  /** The header's 4-bit RCODE; EDNS extends it with `edns.extendedRcode`. */
  rcode: number;
}

export interface DnsQuestion {
  /** Lower-case is not enforced; no trailing dot. The root is `''`. */
  name: string;
  type: number;
  class: number;
}

export type DnsRecordData =
  | { kind: 'a'; address: string }
  | { kind: 'aaaa'; address: string }
  | { kind: 'cname'; target: string }
  | { kind: 'raw'; bytes: Buffer };

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: DnsRecordData;
}

/** The EDNS0 pseudo-record (OPT), lifted out of the additional section. */
export interface DnsEdns {
  udpPayloadSize: number;
  /** Upper 8 bits of the 12-bit RCODE. */
  extendedRcode: number;
  version: number;
  dnssecOk: boolean;
  options: { code: number; data: Buffer }[];
}

export interface DnsMessage {
  id: number;
  flags: DnsFlags;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  /** Additional records other than OPT. */
  additionals: DnsRecord[];
  edns?: DnsEdns;
}

export type DnsDecodeResult = { kind: 'ok'; message: DnsMessage } | { kind: 'invalid'; reason: string };

/** Normalises a name for comparison: lower case, no trailing dot. */
export function normalizeDnsName(name: string): string {
  return name.replace(/\.$/, '').toLowerCase();
}

class Reader {
  offset = 0;
  readonly data: Buffer;
  constructor(data: Buffer) {
    this.data = data;
  }
  need(n: number): void {
    if (this.offset + n > this.data.length) throw new DecodeFailure('message truncated');
  }
  u8(): number {
    this.need(1);
    return this.data[this.offset++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.data.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.data.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.data.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
}

// Internal control flow only: decodeDnsMessage turns it into an `invalid` result.
class DecodeFailure extends Error {}

/** Reads a possibly compressed name starting at `start`; returns it and the offset after it. */
function readName(data: Buffer, start: number): { name: string; next: number } {
  const labels: string[] = [];
  let offset = start;
  let next = -1;
  let jumps = 0;
  let length = 0;
  for (;;) {
    if (offset >= data.length) throw new DecodeFailure('name runs past the message');
    const len = data[offset]!;
    if ((len & 0xc0) === 0xc0) {
      if (offset + 1 >= data.length) throw new DecodeFailure('truncated compression pointer');
      if (++jumps > 64) throw new DecodeFailure('compression pointer loop');
      if (next < 0) next = offset + 2;
      offset = ((len & 0x3f) << 8) | data[offset + 1]!;
      continue;
    }
    if ((len & 0xc0) !== 0) throw new DecodeFailure(`unsupported label type 0x${len.toString(16)}`);
    if (len === 0) {
      offset += 1;
      break;
    }
    if (offset + 1 + len > data.length) throw new DecodeFailure('label runs past the message');
    length += len + 1;
    if (length > 255) throw new DecodeFailure('name longer than 255 bytes');
    labels.push(data.subarray(offset + 1, offset + 1 + len).toString('latin1'));
    offset += 1 + len;
  }
  return { name: labels.join('.'), next: next < 0 ? offset : next };
}

function readRecord(reader: Reader): DnsRecord {
  const { name, next } = readName(reader.data, reader.offset);
  reader.offset = next;
  const type = reader.u16();
  const klass = reader.u16();
  const ttl = reader.u32();
  const rdLength = reader.u16();
  const rdStart = reader.offset;
  const rdata = reader.bytes(rdLength);
  let data: DnsRecordData;
  if (type === DnsType.A && klass === DnsClass.IN) {
    if (rdLength !== 4) throw new DecodeFailure('A record data is not 4 bytes');
    data = { kind: 'a', address: formatIp(rdata) };
  } else if (type === DnsType.AAAA && klass === DnsClass.IN) {
    if (rdLength !== 16) throw new DecodeFailure('AAAA record data is not 16 bytes');
    data = { kind: 'aaaa', address: formatIp(rdata) };
  } else if (type === DnsType.CNAME) {
    const target = readName(reader.data, rdStart);
    if (target.next !== rdStart + rdLength) throw new DecodeFailure('CNAME data length mismatch');
    data = { kind: 'cname', target: target.name };
  } else {
    data = { kind: 'raw', bytes: Buffer.from(rdata) };
  }
  return { name, type, class: klass, ttl, data };
}

function readOpt(record: DnsRecord): DnsEdns {
  if (record.name !== '') throw new DecodeFailure('OPT record owner is not the root');
  const bytes = record.data.kind === 'raw' ? record.data.bytes : Buffer.alloc(0);
  const options: DnsEdns['options'] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < 4) throw new DecodeFailure('truncated EDNS option');
    const code = bytes.readUInt16BE(offset);
    const len = bytes.readUInt16BE(offset + 2);
    if (offset + 4 + len > bytes.length) throw new DecodeFailure('EDNS option overflows the OPT record');
    options.push({ code, data: Buffer.from(bytes.subarray(offset + 4, offset + 4 + len)) });
    offset += 4 + len;
  }
  return {
    udpPayloadSize: record.class,
    extendedRcode: record.ttl >>> 24,
    version: (record.ttl >>> 16) & 0xff,
    dnssecOk: (record.ttl & 0x8000) !== 0,
    options,
  };
}

/** Decodes a whole DNS message (one UDP datagram, or one TCP frame without its length prefix). Never throws. */
export function decodeDnsMessage(data: Buffer): DnsDecodeResult {
  try {
    const reader = new Reader(data);
    if (data.length < 12) return { kind: 'invalid', reason: 'shorter than a DNS header' };
    const id = reader.u16();
    const bits = reader.u16();
    const counts = [reader.u16(), reader.u16(), reader.u16(), reader.u16()] as const;
    const flags: DnsFlags = {
      qr: (bits & 0x8000) !== 0,
      opcode: (bits >> 11) & 0xf,
      aa: (bits & 0x0400) !== 0,
      tc: (bits & 0x0200) !== 0,
      rd: (bits & 0x0100) !== 0,
      ra: (bits & 0x0080) !== 0,
      ad: (bits & 0x0020) !== 0,
      cd: (bits & 0x0010) !== 0,
      rcode: bits & 0xf,
    };
    const questions: DnsQuestion[] = [];
    for (let i = 0; i < counts[0]; i++) {
      const { name, next } = readName(data, reader.offset);
      reader.offset = next;
      questions.push({ name, type: reader.u16(), class: reader.u16() });
    }
    const section = (n: number): DnsRecord[] => Array.from({ length: n }, () => readRecord(reader));
    const answers = section(counts[1]);
    const authorities = section(counts[2]);
    const additionals: DnsRecord[] = [];
    let edns: DnsEdns | undefined;
    for (const record of section(counts[3])) {
      if (record.type !== DnsType.OPT) additionals.push(record);
      else if (edns) return { kind: 'invalid', reason: 'more than one OPT record' };
      else edns = readOpt(record);
    }
    if (reader.offset !== data.length)
      return { kind: 'invalid', reason: 'trailing bytes after the last record' };
    const message: DnsMessage = { id, flags, questions, answers, authorities, additionals };
    if (edns) message.edns = edns;
    return { kind: 'ok', message };
  } catch (error) {
    if (error instanceof DecodeFailure) return { kind: 'invalid', reason: error.message };
    throw error;
  }
}

class Writer {
  private readonly parts: Buffer[] = [];
  length = 0;
  private readonly names = new Map<string, number>();
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u16(v: number): void {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.push(b);
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.push(b);
  }
  /** Writes a name, pointing back at an earlier copy of any suffix (case-insensitively). */
  name(name: string): void {
    const labels = name === '' ? [] : name.split('.');
    let total = 1;
    for (const label of labels) {
      const bytes = Buffer.byteLength(label, 'latin1');
      if (bytes === 0 || bytes > 63) throw new EncodeError(`DNS label "${label}" must be 1–63 bytes`);
      total += bytes + 1;
    }
    if (total > 255) throw new EncodeError('DNS name longer than 255 bytes');
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const at = this.names.get(suffix);
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.length < 0x4000) this.names.set(suffix, this.length);
      const label = Buffer.from(labels[i]!, 'latin1');
      this.push(Buffer.from([label.length]));
      this.push(label);
    }
    this.push(Buffer.from([0]));
  }
  record(record: DnsRecord): void {
    this.name(record.name);
    this.u16(record.type);
    this.u16(record.class);
    this.u32(record.ttl);
    const { data } = record;
    if (data.kind === 'cname') {
      const lengthAt = this.parts.length;
      this.u16(0);
      const before = this.length;
      this.name(data.target);
      this.parts[lengthAt]!.writeUInt16BE(this.length - before);
      return;
    }
    let rdata: Buffer;
    if (data.kind === 'a' || data.kind === 'aaaa') {
      const bytes = data.kind === 'a' ? parseIPv4(data.address) : parseIPv6(data.address);
      if (!bytes)
        throw new EncodeError(`${data.address} is not an ${data.kind === 'a' ? 'IPv4' : 'IPv6'} address`);
      rdata = bytes;
    } else {
      rdata = data.bytes;
    }
    if (rdata.length > 0xffff) throw new EncodeError('record data longer than 65535 bytes');
    this.u16(rdata.length);
    this.push(rdata);
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/**
 * Encodes a message, compressing repeated names. `edns`, when present, is written as an OPT
 * record after the other additional records.
 * @throws EncodeError for labels or names over the protocol's limits or bad addresses.
 */
export function encodeDnsMessage(message: DnsMessage): Buffer {
  const w = new Writer();
  const f = message.flags;
  w.u16(message.id & 0xffff);
  w.u16(
    (f.qr ? 0x8000 : 0) |
      ((f.opcode & 0xf) << 11) |
      (f.aa ? 0x0400 : 0) |
      (f.tc ? 0x0200 : 0) |
      (f.rd ? 0x0100 : 0) |
      (f.ra ? 0x0080 : 0) |
      (f.ad ? 0x0020 : 0) |
      (f.cd ? 0x0010 : 0) |
      (f.rcode & 0xf),
  );
  w.u16(message.questions.length);
  w.u16(message.answers.length);
  w.u16(message.authorities.length);
  w.u16(message.additionals.length + (message.edns ? 1 : 0));
  for (const q of message.questions) {
    w.name(q.name);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const r of message.answers) w.record(r);
  for (const r of message.authorities) w.record(r);
  for (const r of message.additionals) w.record(r);
  if (message.edns) {
    const e = message.edns;
    const options = Buffer.concat(
      e.options.flatMap((o) => {
        const head = Buffer.alloc(4);
        head.writeUInt16BE(o.code, 0);
        head.writeUInt16BE(o.data.length, 2);
        return [head, o.data];
      }),
    );
    w.record({
      name: '',
      type: DnsType.OPT,
      class: e.udpPayloadSize,
      ttl: ((e.extendedRcode & 0xff) << 24) | ((e.version & 0xff) << 16) | (e.dnssecOk ? 0x8000 : 0),
      data: { kind: 'raw', bytes: options },
    });
  }
  return w.toBuffer();
}

/** Splits a DNS-over-TCP stream (RFC 1035 §4.2.2: 2-byte length prefix) into its first message. */
export function readDnsTcpFrame(
  data: Buffer,
):
  | { kind: 'need-more' }
  | { kind: 'ok'; message: Buffer; length: number }
  | { kind: 'invalid'; reason: string } {
  if (data.length < 2) return { kind: 'need-more' };
  const size = data.readUInt16BE(0);
  if (size < 12)
    return { kind: 'invalid', reason: `TCP frame of ${size} bytes is shorter than a DNS header` };
  if (data.length < 2 + size) return { kind: 'need-more' };
  return { kind: 'ok', message: Buffer.from(data.subarray(2, 2 + size)), length: 2 + size };
}

/** Prefixes a message with its 2-byte length for DNS over TCP. */
export function frameDnsTcp(message: Buffer): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(message.length);
  return Buffer.concat([head, message]);
}

/** What a zone answers for one name: addresses of both families, and an optional TTL. */
export type DnsAnswerSet = { addresses: string[]; ttl?: number; cname?: string };

export interface DnsResponderOptions {
  /** TTL (seconds) of answers whose set has none of its own. */
  ttl: number;
  /** EDNS payload size this responder advertises (default 1232, the DNS flag day value). */
  udpPayloadSize?: number;
  /** Send over UDP: answers that do not fit the client's size are cut and TC set. */
  transport: 'udp' | 'tcp';
}

/**
 * Builds the response to `query`: `lookup(name)` returns the answer set for a name, or
 * `undefined` for NXDOMAIN. Echoes id, question, RD and (as RFC 6891 asks) answers an OPT with
 * an OPT of its own. Pure, so the responder's behaviour is unit-tested without sockets.
 */
export function answerDnsQuery(
  query: DnsMessage,
  lookup: (name: string) => DnsAnswerSet | undefined,
  options: DnsResponderOptions,
): DnsMessage {
  const flags: DnsFlags = {
    qr: true,
    opcode: query.flags.opcode,
    aa: true,
    tc: false,
    rd: query.flags.rd,
    ra: true,
    ad: false,
    cd: query.flags.cd,
    rcode: DnsRcode.NoError,
  };
  const response: DnsMessage = {
    id: query.id,
    flags,
    questions: query.questions,
    answers: [],
    authorities: [],
    additionals: [],
  };
  const ownPayload = options.udpPayloadSize ?? 1232;
  if (query.edns) {
    response.edns = {
      udpPayloadSize: ownPayload,
      extendedRcode: 0,
      version: 0,
      dnssecOk: false,
      options: [],
    };
    if (query.edns.version > 0) {
      // BADVERS is RCODE 16: upper bits in the OPT record, lower bits (0) in the header.
      response.edns.extendedRcode = 1;
      return response;
    }
  }
  if (query.flags.opcode !== 0) {
    flags.rcode = DnsRcode.NotImp;
    return response;
  }
  const question = query.questions[0];
  if (query.flags.qr || query.questions.length !== 1 || !question) {
    flags.rcode = DnsRcode.FormErr;
    return response;
  }
  if (question.class !== DnsClass.IN && question.class !== 255) {
    flags.rcode = DnsRcode.Refused;
    return response;
  }
  let owner = question.name;
  let set = lookup(normalizeDnsName(owner));
  // Follow CNAMEs inside the zone, a bounded number of times.
  for (let hops = 0; set?.cname && question.type !== DnsType.CNAME && hops < 8; hops++) {
    response.answers.push({
      name: owner,
      type: DnsType.CNAME,
      class: DnsClass.IN,
      ttl: set.ttl ?? options.ttl,
      data: { kind: 'cname', target: set.cname },
    });
    owner = set.cname;
    set = lookup(normalizeDnsName(owner));
  }
  if (!set) {
    flags.rcode = DnsRcode.NXDomain;
    return response;
  }
  const ttl = set.ttl ?? options.ttl;
  const wantA = question.type === DnsType.A || question.type === DnsType.ANY;
  const wantAAAA = question.type === DnsType.AAAA || question.type === DnsType.ANY;
  if (set.cname && question.type === DnsType.CNAME) {
    response.answers.push({
      name: owner,
      type: DnsType.CNAME,
      class: DnsClass.IN,
      ttl,
      data: { kind: 'cname', target: set.cname },
    });
  }
  for (const address of set.addresses) {
    if (wantA && parseIPv4(address)) {
      response.answers.push({
        name: owner,
        type: DnsType.A,
        class: DnsClass.IN,
        ttl,
        data: { kind: 'a', address },
      });
    } else if (wantAAAA && parseIPv6(address)) {
      response.answers.push({
        name: owner,
        type: DnsType.AAAA,
        class: DnsClass.IN,
        ttl,
        data: { kind: 'aaaa', address },
      });
    }
  }
  if (options.transport === 'udp') {
    const limit = query.edns ? Math.max(512, Math.min(query.edns.udpPayloadSize, ownPayload)) : 512;
    if (encodeDnsMessage(response).length > limit) {
      // RFC 2181 §9: a truncated answer carries TC and the client retries over TCP.
      response.answers = [];
      flags.tc = true;
    }
  }
  return response;
}
