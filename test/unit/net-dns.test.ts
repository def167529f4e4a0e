import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  answerDnsQuery,
  type DnsAnswerSet,
  DnsClass,
  type DnsMessage,
  DnsRcode,
  type DnsRecord,
  DnsType,
  decodeDnsMessage,
  encodeDnsMessage,
  frameDnsTcp,
  readDnsTcpFrame,
} from '../../lib/net/dns.ts';
import { dnsQuery, QUERY_EDNS, QUERY_FLAGS } from '../support/dns.ts';

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

// An A query for api.internal as HAProxy 2.6 sends it: RD set, one question, an OPT RR with
// its accepted_payload_size (512 by default) in the additional section.
const HAPROXY_A_QUERY = hex(`
  abcd 0100 0001 0000 0000 0001
  03617069 08696e7465726e616c 00 0001 0001
  00 0029 0200 00000000 0000`);

describe('decodeDnsMessage', () => {
  it('reads a HAProxy-style query with its OPT record', () => {
    expect(decodeDnsMessage(HAPROXY_A_QUERY)).toEqual({
      kind: 'ok',
      message: {
        id: 0xabcd,
        flags: QUERY_FLAGS,
        questions: [{ name: 'api.internal', type: DnsType.A, class: DnsClass.IN }],
        answers: [],
        authorities: [],
        additionals: [],
        edns: QUERY_EDNS,
      },
    });
  });

  it('follows compression pointers in answers and CNAME targets', () => {
    const response = hex(`
      0001 8180 0001 0002 0000 0000
      03777777 076578616d706c65 00 0001 0001
      c00c 0005 0001 0000003c 0006 03617069 c010
      c029 0001 0001 0000003c 0004 0a000005`);
    const decoded = decodeDnsMessage(response);
    expect(decoded.kind).toBe('ok');
    if (decoded.kind !== 'ok') return;
    expect(decoded.message.answers).toEqual([
      {
        name: 'www.example',
        type: DnsType.CNAME,
        class: 1,
        ttl: 60,
        data: { kind: 'cname', target: 'api.example' },
      },
      { name: 'api.example', type: DnsType.A, class: 1, ttl: 60, data: { kind: 'a', address: '10.0.0.5' } },
    ]);
  });

  it.each([
    ['shorter than a header', hex('abcd0100'), /shorter than a DNS header/],
    ['a question cut short', hex('abcd 0100 0001 0000 0000 0000 03617069'), /runs past|truncated/],
    ['a pointer loop', hex('abcd 0100 0001 0000 0000 0000 c00c 0001 0001'), /loop/],
    [
      'an A record of 5 bytes',
      hex('abcd 8100 0000 0001 0000 0000 00 0001 0001 00000001 0005 0102030405'),
      /not 4 bytes/,
    ],
    ['trailing bytes', Buffer.concat([HAPROXY_A_QUERY, hex('00')]), /trailing/],
    [
      'two OPT records',
      hex('abcd 0100 0000 0000 0000 0002 00 0029 0200 00000000 0000 00 0029 0200 00000000 0000'),
      /more than one OPT/,
    ],
    ['an extended label type', hex('abcd 0100 0001 0000 0000 0000 40 0001 0001'), /label type/],
  ])('calls %s invalid', (_name, bytes, reason) => {
    const result = decodeDnsMessage(bytes);
    expect(result.kind).toBe('invalid');
    expect(result.kind === 'invalid' && result.reason).toMatch(reason);
  });

  it('never throws on random bytes or corrupted queries', () => {
    const corrupted = fc
      .tuple(fc.nat(HAPROXY_A_QUERY.length - 1), fc.integer({ min: 0, max: 255 }))
      .map(([at, byte]) => {
        const copy = Buffer.from(HAPROXY_A_QUERY);
        copy[at] = byte;
        return copy;
      });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
          corrupted,
        ),
        (bytes) => {
          expect(['ok', 'invalid']).toContain(decodeDnsMessage(bytes).kind);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const dnsName = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.'));

describe('encodeDnsMessage', () => {
  it('round-trips messages through the decoder', () => {
    const record = fc.oneof(
      fc.record({ name: dnsName, address: fc.ipV4(), ttl: fc.nat() }).map(({ name, address, ttl }) => ({
        name,
        type: DnsType.A,
        class: DnsClass.IN,
        ttl,
        data: { kind: 'a' as const, address },
      })),
      fc.record({ name: dnsName, target: dnsName, ttl: fc.nat() }).map(({ name, target, ttl }) => ({
        name,
        type: DnsType.CNAME,
        class: DnsClass.IN,
        ttl,
        data: { kind: 'cname' as const, target },
      })),
    );
    const message = fc.record({
      id: fc.integer({ min: 0, max: 0xffff }),
      flags: fc.record({
        qr: fc.boolean(),
        opcode: fc.integer({ min: 0, max: 15 }),
        aa: fc.boolean(),
        tc: fc.boolean(),
        rd: fc.boolean(),
        ra: fc.boolean(),
        ad: fc.boolean(),
        cd: fc.boolean(),
        rcode: fc.integer({ min: 0, max: 15 }),
      }),
      questions: fc.array(
        fc.record({ name: dnsName, type: fc.constantFrom(1, 28, 33), class: fc.constant(1) }),
        {
          maxLength: 2,
        },
      ),
      answers: fc.array(record, { maxLength: 4 }),
      authorities: fc.constant<DnsRecord[]>([]),
      additionals: fc.array(record, { maxLength: 2 }),
    });
    fc.assert(
      fc.property(message, fc.option(fc.integer({ min: 512, max: 4096 }), { nil: undefined }), (m, size) => {
        const input: DnsMessage =
          size === undefined ? m : { ...m, edns: { ...QUERY_EDNS, udpPayloadSize: size } };
        expect(decodeDnsMessage(encodeDnsMessage(input))).toEqual({ kind: 'ok', message: input });
      }),
    );
  });

  it('compresses a repeated owner name into a pointer to the question', () => {
    const response = answerDnsQuery(
      dnsQuery('api.internal', DnsType.A),
      () => ({ addresses: ['10.0.0.1'] }),
      {
        ttl: 5,
        transport: 'udp',
      },
    );
    const bytes = encodeDnsMessage(response);
    // header 12 + question 18 + answer (pointer 2 + 10 + 4)
    expect(bytes.length).toBe(12 + 18 + 16);
    expect(bytes.subarray(30, 32).toString('hex')).toBe('c00c');
  });

  it('refuses labels longer than 63 bytes', () => {
    expect(() => encodeDnsMessage(dnsQuery(`${'a'.repeat(64)}.internal`, DnsType.A))).toThrow(/1–63 bytes/);
  });
});

describe('answerDnsQuery', () => {
  const zone: Record<string, DnsAnswerSet> = {
    'api.internal': { addresses: ['169.254.171.5', 'fd00:ec2:80::5', '169.254.171.6'] },
    'v4only.internal': { addresses: ['10.0.0.1'], ttl: 60 },
    'alias.internal': { addresses: [], cname: 'api.internal' },
  };
  const lookup = (name: string) => zone[name];
  const answer = (q: DnsMessage, transport: 'udp' | 'tcp' = 'udp') =>
    answerDnsQuery(q, lookup, { ttl: 5, transport });

  it('answers A with the IPv4 addresses, echoing id, question and RD', () => {
    const response = answer(dnsQuery('API.Internal', DnsType.A));
    expect(response).toMatchObject({ id: 0x1234, flags: { qr: true, aa: true, rd: true, rcode: 0 } });
    expect(response.questions).toEqual([{ name: 'API.Internal', type: DnsType.A, class: DnsClass.IN }]);
    expect(response.answers.map((a) => [a.name, a.ttl, a.data])).toEqual([
      ['API.Internal', 5, { kind: 'a', address: '169.254.171.5' }],
      ['API.Internal', 5, { kind: 'a', address: '169.254.171.6' }],
    ]);
  });

  it('answers AAAA with the IPv6 addresses and a per-name TTL', () => {
    expect(answer(dnsQuery('api.internal', DnsType.AAAA)).answers.map((a) => a.data)).toEqual([
      { kind: 'aaaa', address: 'fd00:ec2:80::5' },
    ]);
    expect(answer(dnsQuery('v4only.internal', DnsType.A)).answers[0]?.ttl).toBe(60);
  });

  it('answers NOERROR with no records when the name has no address of that family', () => {
    const response = answer(dnsQuery('v4only.internal', DnsType.AAAA));
    expect(response.flags.rcode).toBe(DnsRcode.NoError);
    expect(response.answers).toEqual([]);
  });

  it('answers NXDOMAIN for unknown names', () => {
    expect(answer(dnsQuery('nope.internal', DnsType.A)).flags.rcode).toBe(DnsRcode.NXDomain);
  });

  it('follows CNAMEs inside the zone', () => {
    expect(answer(dnsQuery('alias.internal', DnsType.A)).answers.map((a) => a.type)).toEqual([
      DnsType.CNAME,
      DnsType.A,
      DnsType.A,
    ]);
  });

  it('answers an OPT record with its own OPT record, and BADVERS for EDNS versions above 0', () => {
    expect(answer(dnsQuery('api.internal', DnsType.A, { edns: QUERY_EDNS })).edns).toEqual({
      ...QUERY_EDNS,
      udpPayloadSize: 1232,
    });
    expect(answer(dnsQuery('api.internal', DnsType.A)).edns).toBeUndefined();
    const badvers = answer(dnsQuery('api.internal', DnsType.A, { edns: { ...QUERY_EDNS, version: 1 } }));
    expect(badvers.edns?.extendedRcode).toBe(1);
    expect(badvers.answers).toEqual([]);
  });

  it('answers FORMERR for two questions and NOTIMP for other opcodes', () => {
    const two = dnsQuery('api.internal', DnsType.A);
    two.questions.push({ name: 'v4only.internal', type: DnsType.A, class: DnsClass.IN });
    expect(answer(two).flags.rcode).toBe(DnsRcode.FormErr);
    const notify = dnsQuery('api.internal', DnsType.A);
    notify.flags.opcode = 4;
    expect(answer(notify).flags.rcode).toBe(DnsRcode.NotImp);
  });

  it('sets TC instead of sending a UDP answer larger than the client accepts, and sends it whole over TCP', () => {
    const many = Array.from({ length: 40 }, (_, i) => `2001:db8::${i + 1}`);
    const big = (q: DnsMessage, transport: 'udp' | 'tcp') =>
      answerDnsQuery(q, () => ({ addresses: many }), { ttl: 5, transport });
    const udp = big(dnsQuery('big.internal', DnsType.AAAA), 'udp');
    expect(udp.flags.tc).toBe(true);
    expect(udp.answers).toEqual([]);
    expect(
      big(dnsQuery('big.internal', DnsType.AAAA, { edns: { ...QUERY_EDNS, udpPayloadSize: 4096 } }), 'udp')
        .answers,
    ).toHaveLength(40);
    expect(big(dnsQuery('big.internal', DnsType.AAAA), 'tcp').answers).toHaveLength(40);
  });
});

describe('DNS over TCP framing', () => {
  it('reads a frame once its bytes are in, and asks for more before', () => {
    const framed = frameDnsTcp(HAPROXY_A_QUERY);
    for (let n = 0; n < framed.length; n++)
      expect(readDnsTcpFrame(framed.subarray(0, n)).kind).toBe('need-more');
    expect(readDnsTcpFrame(Buffer.concat([framed, framed]))).toEqual({
      kind: 'ok',
      message: HAPROXY_A_QUERY,
      length: framed.length,
    });
    expect(readDnsTcpFrame(hex('0003 000000')).kind).toBe('invalid');
  });
});
