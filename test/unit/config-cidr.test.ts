import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cidrContains,
  cidrContainsAddress,
  cidrOf,
  normaliseAllowlist,
  normaliseCidr,
  parseCidr,
} from '../../lib/allowlist/index.ts';
import { parseIp } from '../../lib/net/ip.ts';

describe('parseCidr', () => {
  const good: Array<[string, string]> = [
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['192.168.1.7', '192.168.1.7/32'],
    [' 203.0.113.9/24 ', '203.0.113.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['FD00:EC2:80::1/64', 'fd00:ec2:80::/64'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1/128'],
    ['2001:0db8:0000:0000:0001:0000:0000:0001/128', '2001:db8::1:0:0:1/128'],
    ['::/0', '::/0'],
    ['::1', '::1/128'],
    ['::ffff:10.0.0.1/128', '::ffff:10.0.0.1/128'],
    ['fd00:ec2::254/128', 'fd00:ec2::254/128'],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1/128'],
  ];
  it.each(good)('normalises %s to %s', (input, expected) => {
    expect(normaliseCidr(input)).toBe(expected);
  });

  const bad = [
    '',
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/08',
    '010.0.0.1',
    '10.0.0',
    '10.0.0.0.0',
    '256.0.0.1',
    '127.1',
    '0x7f.0.0.1',
    '2130706433',
    '::1/129',
    '1::2::3',
    'fe80::1%eth0',
    '12345::',
    '1:2:3:4:5:6:7:8:9',
    'example.com',
    '10.0.0.0/',
  ];
  it.each(bad)('refuses %j', (input) => {
    expect(parseCidr(input).kind).toBe('invalid');
  });
});

describe('cidrContains', () => {
  const net = (text: string) => {
    const parsed = parseCidr(text);
    if (parsed.kind !== 'ok') throw new Error(text);
    return parsed.cidr;
  };
  it('contains narrower networks of the same family only', () => {
    expect(cidrContains(net('10.0.0.0/8'), net('10.2.0.0/16'))).toBe(true);
    expect(cidrContains(net('10.2.0.0/16'), net('10.0.0.0/8'))).toBe(false);
    expect(cidrContains(net('0.0.0.0/0'), net('::/128'))).toBe(false);
    expect(cidrContains(net('fd00:ec2:80::/64'), net('fd00:ec2:80::1234'))).toBe(true);
    expect(cidrContains(net('fd00:ec2:80::/64'), net('fd00:ec2:81::1'))).toBe(false);
  });
  it('tests single addresses', () => {
    expect(cidrContainsAddress(net('169.254.171.0/24'), parseIp('169.254.171.9')!)).toBe(true);
    expect(cidrContainsAddress(net('169.254.171.0/24'), parseIp('169.254.169.254')!)).toBe(false);
  });
});

const v4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
const anyCidr = fc.oneof(
  fc.tuple(v4, fc.integer({ min: 0, max: 32 })),
  fc.tuple(v6, fc.integer({ min: 0, max: 128 })),
);

describe('CIDR properties', () => {
  it('normalises idempotently', () => {
    fc.assert(
      fc.property(anyCidr, ([bytes, prefix]) => {
        const once = cidrOf(bytes, prefix).text;
        expect(normaliseCidr(once)).toBe(once);
      }),
    );
  });
  it('contains every address it was built from, and itself', () => {
    fc.assert(
      fc.property(anyCidr, ([bytes, prefix]) => {
        const cidr = cidrOf(bytes, prefix);
        expect(cidrContainsAddress(cidr, bytes)).toBe(true);
        expect(cidrContains(cidr, cidr)).toBe(true);
      }),
    );
  });
  it('never contains a network with a shorter prefix', () => {
    fc.assert(
      fc.property(anyCidr, fc.integer({ min: 1, max: 128 }), ([bytes, prefix], shorter) => {
        fc.pre(shorter <= prefix);
        const inner = cidrOf(bytes, prefix - shorter);
        expect(cidrContains(cidrOf(bytes, prefix), inner)).toBe(false);
      }),
    );
  });
});

describe('normaliseAllowlist', () => {
  it('de-duplicates, orders IPv4 first and clears host bits', () => {
    const result = normaliseAllowlist(['2001:db8::1', '10.1.0.0/16', '10.1.2.3/16', '192.0.2.1']);
    expect(result.kind === 'ok' && result.cidrs.map((c) => c.text)).toEqual([
      '10.1.0.0/16',
      '192.0.2.1/32',
      '2001:db8::1/128',
    ]);
  });
  it('refuses /0 unless allowed, and reports the index of each bad entry', () => {
    const result = normaliseAllowlist(['10.0.0.0/8', '0.0.0.0/0', 'nope']);
    expect(result.kind).toBe('invalid');
    expect(result.kind === 'invalid' && result.issues).toEqual([
      expect.stringMatching(/^1: 0\.0\.0\.0\/0 allows every address/),
      expect.stringMatching(/^2: not an IPv4 or IPv6 address/),
    ]);
    expect(normaliseAllowlist(['::/0'], { allowAll0: true }).kind).toBe('ok');
  });
  it('bounds the number of entries', () => {
    const entries = Array.from({ length: 11 }, (_, i) => `10.0.0.${i}`);
    const result = normaliseAllowlist(entries, { maxEntries: 10 });
    expect(result.kind === 'invalid' && result.issues).toEqual([
      '11 entries exceed the limit of 10 (allowlist.maxEntries)',
    ]);
  });
  it('accepts an empty list (deny everyone)', () => {
    expect(normaliseAllowlist([])).toEqual({ kind: 'ok', cidrs: [] });
  });
});
