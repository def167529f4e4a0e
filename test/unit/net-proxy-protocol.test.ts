import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIp, parseIp } from '../../lib/net/ip.ts';
import {
  awsVpceTlv,
  crc32c,
  decodeProxyHeader,
  encodeProxyV1,
  encodeProxyV2,
  PROXY_V2_SIGNATURE,
  type ProxyHeader,
  ProxyTlvType,
} from '../../lib/net/proxy-protocol.ts';
import { proxyV1, proxyV1Unknown, proxyV2, proxyV2Local } from '../support/proxy-protocol.ts';

const SIG = PROXY_V2_SIGNATURE.toString('hex');
const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const ascii = (text: string) => Buffer.from(text, 'latin1');

describe('encodeProxyV2', () => {
  it('writes the TCP4 header byte for byte as the spec lays it out', () => {
    const header = proxyV2({ source: '203.0.113.7:5555', destination: '127.0.0.1:443' });
    expect(header.toString('hex')).toBe(`${SIG}21110 00ccb007107 7f000001 15b3 01bb`.replace(/\s+/g, ''));
  });

  it('writes TCP6 with a 36-byte address block', () => {
    const header = proxyV2({ source: '[2001:db8::1]:40000', destination: '[::1]:8443' });
    expect(header.subarray(12, 16).toString('hex')).toBe('21210024');
    expect(header.length).toBe(16 + 36);
    expect(header.subarray(16, 32).toString('hex')).toBe('20010db8000000000000000000000001');
  });

  it('writes LOCAL with family UNSPEC and no body, as NLB health checks do', () => {
    expect(proxyV2Local().toString('hex')).toBe(`${SIG}20000000`);
  });

  it('appends TLVs and a CRC32C that the decoder verifies', () => {
    const header = proxyV2({
      source: '10.0.0.1:1',
      destination: '10.0.0.2:2',
      tlvs: [awsVpceTlv('vpce-0123'), { type: ProxyTlvType.Authority, value: ascii('api.example.com') }],
      crc32c: true,
    });
    const decoded = decodeProxyHeader(header);
    expect(decoded).toMatchObject({ kind: 'ok', length: header.length });
    if (decoded.kind !== 'ok') return;
    expect(decoded.header.tlvs.map((t) => [t.type, t.value.toString('latin1')])).toEqual([
      [0xea, '\u0001vpce-0123'],
      [0x02, 'api.example.com'],
    ]);
  });

  it.each([
    [{ source: { address: '10.0.0.1', port: 1 }, destination: { address: '::1', port: 2 } }, /not IPv4/],
    [
      { source: { address: '10.0.0.1', port: 70000 }, destination: { address: '10.0.0.2', port: 2 } },
      /out of range/,
    ],
    [{ family: 'inet' as const, source: { address: '10.0.0.1', port: 1 } }, /source and a destination/],
  ])('refuses input the header cannot carry (%#)', (input, message) => {
    expect(() => encodeProxyV2(input)).toThrow(message);
    try {
      encodeProxyV2(input);
    } catch (error) {
      expect((error as Error).name).toBe('EncodeError');
    }
  });
});

describe('encodeProxyV1', () => {
  it.each([
    [
      proxyV1({ source: '192.0.2.1:56324', destination: '192.0.2.2:443' }),
      'PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n',
    ],
    [
      proxyV1({ source: '[2001:DB8:0:0::7]:1', destination: '[::1]:2' }),
      'PROXY TCP6 2001:db8::7 ::1 1 2\r\n',
    ],
    [proxyV1Unknown(), 'PROXY UNKNOWN\r\n'],
  ])('writes %s', (bytes, text) => {
    expect(bytes.toString('latin1')).toBe(text);
  });

  it('refuses UDP, which v1 cannot carry', () => {
    expect(() =>
      encodeProxyV1({
        transport: 'dgram',
        source: { address: '1.1.1.1', port: 1 },
        destination: { address: '2.2.2.2', port: 2 },
      }),
    ).toThrow(/only TCP/);
  });
});

describe('decodeProxyHeader', () => {
  const v2 = (rest: string) => hex(`${SIG}${rest}`);
  const cases: {
    name: string;
    bytes: Buffer;
    expected: ReturnType<typeof decodeProxyHeader> | { kind: 'invalid'; reason: RegExp };
  }[] = [
    { name: 'nothing yet', bytes: Buffer.alloc(0), expected: { kind: 'need-more' } },
    {
      name: 'part of the v2 signature',
      bytes: PROXY_V2_SIGNATURE.subarray(0, 7),
      expected: { kind: 'need-more' },
    },
    { name: 'v2 header without its body', bytes: v2('2111000c cb007107'), expected: { kind: 'need-more' } },
    { name: 'part of a v1 line', bytes: ascii('PROXY TCP4 1.2.3.4'), expected: { kind: 'need-more' } },
    {
      name: 'a v2 TCP4 header followed by payload',
      bytes: Buffer.concat([v2('2111000c cb007107 7f000001 15b3 01bb'), ascii('\u0016\u0003\u0001')]),
      expected: {
        kind: 'ok',
        length: 28,
        header: {
          version: 2,
          command: 'proxy',
          family: 'inet',
          transport: 'stream',
          source: { address: '203.0.113.7', port: 5555 },
          destination: { address: '127.0.0.1', port: 443 },
          tlvs: [],
        },
      },
    },
    {
      name: 'a v2 LOCAL header with an address block to skip',
      bytes: v2('2011000c 00000000 00000000 0000 0000'),
      expected: {
        kind: 'ok',
        length: 28,
        header: { version: 2, command: 'local', family: 'inet', transport: 'stream', tlvs: [] },
      },
    },
    {
      name: 'a v2 UDP6 header',
      bytes: v2(`2122 0024 ${'00'.repeat(15)}01 fe80${'00'.repeat(13)}02 0035 0036`),
      expected: {
        kind: 'ok',
        length: 52,
        header: {
          version: 2,
          command: 'proxy',
          family: 'inet6',
          transport: 'dgram',
          source: { address: '::1', port: 53 },
          destination: { address: 'fe80::2', port: 54 },
          tlvs: [],
        },
      },
    },
    {
      name: 'a v1 TCP6 line',
      bytes: ascii('PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 1 65535\r\nGET'),
      expected: {
        kind: 'ok',
        length: 48,
        header: {
          version: 1,
          command: 'proxy',
          family: 'inet6',
          transport: 'stream',
          source: { address: '::ffff:10.0.0.1', port: 1 },
          destination: { address: '2001:db8::1', port: 65535 },
          tlvs: [],
        },
      },
    },
    {
      name: 'v1 UNKNOWN with trailing words the receiver ignores',
      bytes: ascii('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'),
      expected: {
        kind: 'ok',
        length: 35,
        header: { version: 1, command: 'local', family: 'unspec', transport: 'unspec', tlvs: [] },
      },
    },
    {
      name: 'a TLS record (no PROXY header)',
      bytes: hex('160301'),
      expected: { kind: 'invalid', reason: /no PROXY header/ },
    },
    {
      name: 'a bad v2 signature',
      bytes: hex('0d0a0d0a000d0a5155495420'),
      expected: { kind: 'invalid', reason: /bad PROXY v2 signature/ },
    },
    {
      name: 'a bad v1 signature',
      bytes: ascii('PROXZ TCP4'),
      expected: { kind: 'invalid', reason: /bad PROXY v1 signature/ },
    },
    {
      name: 'v2 signature with version 1',
      bytes: v2('11110000'),
      expected: { kind: 'invalid', reason: /unsupported PROXY version 1/ },
    },
    {
      name: 'v2 signature with version 3',
      bytes: v2('31110000'),
      expected: { kind: 'invalid', reason: /unsupported PROXY version 3/ },
    },
    {
      name: 'an unknown v2 command',
      bytes: v2('22110000'),
      expected: { kind: 'invalid', reason: /unknown PROXY v2 command/ },
    },
    { name: 'an unknown family', bytes: v2('21410000'), expected: { kind: 'invalid', reason: /family/ } },
    {
      name: 'a length shorter than the TCP4 address block',
      bytes: v2('21110008 cb007107 7f000001'),
      expected: { kind: 'invalid', reason: /shorter than the inet address block/ },
    },
    {
      name: 'a TLV that overflows the header length',
      bytes: v2('21110010 cb007107 7f000001 15b3 01bb 02 0009 6162'),
      expected: { kind: 'invalid', reason: /overflows the header length/ },
    },
    {
      name: 'a truncated TLV header',
      bytes: v2('2111000e cb007107 7f000001 15b3 01bb 0200'),
      expected: { kind: 'invalid', reason: /truncated PROXY v2 TLV/ },
    },
    {
      name: 'a CRC32C that does not match',
      bytes: v2('21110013 cb007107 7f000001 15b3 01bb 03 0004 deadbeef'),
      expected: { kind: 'invalid', reason: /CRC32C mismatch/ },
    },
    {
      name: 'a v1 line past 107 bytes without CRLF',
      bytes: ascii(`PROXY TCP6 ${'a'.repeat(100)}`),
      expected: { kind: 'invalid', reason: /longer than 107/ },
    },
    {
      name: 'a v1 line ending in a bare LF',
      bytes: ascii('PROXY UNKNOWN\n'),
      expected: { kind: 'invalid', reason: /CRLF/ },
    },
    {
      name: 'a v1 TCP4 line with IPv6 addresses',
      bytes: ascii('PROXY TCP4 ::1 ::2 1 2\r\n'),
      expected: { kind: 'invalid', reason: /not TCP4/ },
    },
    {
      name: 'a v1 port with a leading zero',
      bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'),
      expected: { kind: 'invalid', reason: /port/ },
    },
    {
      name: 'a v1 port above 65535',
      bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'),
      expected: { kind: 'invalid', reason: /port/ },
    },
    {
      name: 'a v1 line missing a field',
      bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'),
      expected: { kind: 'invalid', reason: /malformed/ },
    },
  ];

  it.each(cases)('reads $name', ({ bytes, expected }) => {
    const result = decodeProxyHeader(bytes);
    if (expected.kind === 'invalid') {
      expect(result.kind).toBe('invalid');
      expect(result.kind === 'invalid' && result.reason).toMatch(expected.reason as RegExp);
    } else {
      expect(result).toEqual(expected);
    }
  });

  it('asks for more on every strict prefix of a valid header', () => {
    for (const header of [
      proxyV2({
        source: '[2001:db8::1]:1',
        destination: '[2001:db8::2]:2',
        tlvs: [awsVpceTlv('vpce-1')],
        crc32c: true,
      }),
      proxyV1({ source: '192.0.2.1:1', destination: '192.0.2.2:2' }),
    ]) {
      for (let n = 0; n < header.length; n++)
        expect(decodeProxyHeader(header.subarray(0, n))).toEqual({ kind: 'need-more' });
    }
  });
});

describe('crc32c', () => {
  it('matches the Castagnoli check value', () => {
    expect(crc32c(ascii('123456789'))).toBe(0xe3069283);
  });
});

const canonical = (address: string) => formatIp(parseIp(address)!);
const ipv4 = fc.ipV4();
const ipv6 = fc.ipV6();
const port = fc.integer({ min: 0, max: 65535 });
const tlv = fc.record({
  type: fc.integer({ min: 0, max: 255 }).filter((t) => t !== ProxyTlvType.Crc32c),
  value: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
});

describe('PROXY codec properties', () => {
  it('decodes what it encodes, for v1 and v2, with any payload after the header', () => {
    const header = fc.oneof(
      fc.record({ family: fc.constant('inet' as const), s: ipv4, d: ipv4, sp: port, dp: port }),
      fc.record({ family: fc.constant('inet6' as const), s: ipv6, d: ipv6, sp: port, dp: port }),
    );
    fc.assert(
      fc.property(
        header,
        fc.array(tlv, { maxLength: 4 }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 20 }),
        (h, tlvs, crc, tail) => {
          const source = { address: h.s, port: h.sp };
          const destination = { address: h.d, port: h.dp };
          const payload = Buffer.from(tail);
          const two = encodeProxyV2({ source, destination, tlvs, crc32c: crc });
          const one = encodeProxyV1({ source, destination });
          const r2 = decodeProxyHeader(Buffer.concat([two, payload]));
          const r1 = decodeProxyHeader(Buffer.concat([one, payload]));
          const expected = (version: 1 | 2, withTlvs: typeof tlvs): ProxyHeader => ({
            version,
            command: 'proxy',
            family: h.family,
            transport: 'stream',
            source: { address: canonical(h.s), port: h.sp },
            destination: { address: canonical(h.d), port: h.dp },
            tlvs: withTlvs,
          });
          expect(r2).toEqual({ kind: 'ok', length: two.length, header: expected(2, tlvs) });
          expect(r1).toEqual({ kind: 'ok', length: one.length, header: expected(1, []) });
        },
      ),
    );
  });

  it('decodes LOCAL headers it encodes', () => {
    fc.assert(
      fc.property(fc.array(tlv, { maxLength: 4 }), (tlvs) => {
        const result = decodeProxyHeader(encodeProxyV2({ command: 'local', tlvs }));
        expect(result).toMatchObject({ kind: 'ok', header: { command: 'local', family: 'unspec', tlvs } });
      }),
    );
  });

  it('never throws on random bytes, or on random bytes after a valid signature', () => {
    const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
    const prefixed = fc.oneof(
      bytes,
      bytes.map((b) => Buffer.concat([PROXY_V2_SIGNATURE, b])),
      bytes.map((b) => Buffer.concat([ascii('PROXY '), b])),
    );
    fc.assert(
      fc.property(prefixed, (data) => {
        const result = decodeProxyHeader(data);
        expect(['need-more', 'ok', 'invalid']).toContain(result.kind);
        if (result.kind === 'ok') expect(result.length).toBeLessThanOrEqual(data.length);
      }),
      { numRuns: 2000 },
    );
  });
});
