import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  matchesHostname,
  normaliseHostname,
  normaliseSerial,
  randomSerial,
  sameSerial,
} from '../../lib/pki/index.ts';

describe('matchesHostname', () => {
  it.each([
    ['api.example.com', 'api.example.com', true],
    ['API.Example.COM', 'api.example.com', true],
    ['api.example.com.', 'api.example.com', true],
    ['api.example.com', 'api.example.com.', true],
    ['api.example.com', 'www.example.com', false],
    ['*.example.com', 'api.example.com', true],
    ['*.example.com', 'API.EXAMPLE.COM.', true],
    ['*.example.com', 'a.b.example.com', false],
    ['*.example.com', 'example.com', false],
    ['*.example.com', '.example.com', false],
    ['*.com', 'example.com', false],
    ['*.', 'example', false],
    ['*', 'example', false],
    ['f*.example.com', 'foo.example.com', false],
    ['*o.example.com', 'foo.example.com', false],
    ['a.*.example.com', 'a.b.example.com', false],
    ['**.example.com', 'a.example.com', false],
    ['*.*.example.com', 'a.b.example.com', false],
    ['*.example.com', '*.example.com', true],
    ['api.example.com', '*.example.com', false],
    ['*.example.com', '*.other.com', false],
    ['*.example.com', '127.0.0.1', false],
    ['*.0.0.1', '127.0.0.1', false],
    ['exa mple.com', 'exa mple.com', false],
    ['', '', false],
    ['-bad.example.com', '-bad.example.com', false],
  ])('pattern %j against %j → %s', (pattern, hostname, expected) => {
    expect(matchesHostname(pattern, hostname)).toBe(expected);
  });

  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
  // The top-level label is alphabetic, as real TLDs are, so no generated name is an IPv4 literal.
  const tld = fc.stringMatching(/^[a-z]{2,6}$/);
  const suffix = fc
    .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), tld)
    .map(([labels, top]) => [...labels, top].join('.'));

  it('matches exactly one extra left-most label under a wildcard', () => {
    fc.assert(
      fc.property(label, label, suffix, (first, second, rest) => {
        expect(matchesHostname(`*.${rest}`, `${first}.${rest}`)).toBe(true);
        expect(matchesHostname(`*.${rest}`, `${first}.${second}.${rest}`)).toBe(false);
        expect(matchesHostname(`*.${rest}`, rest)).toBe(false);
      }),
    );
  });

  it('ignores case and one trailing dot on either side', () => {
    fc.assert(
      fc.property(label, suffix, fc.boolean(), fc.boolean(), (first, rest, dotPattern, dotHost) => {
        const host = `${first}.${rest}`;
        const pattern = `*.${rest}`.toUpperCase() + (dotPattern ? '.' : '');
        expect(matchesHostname(pattern, host.toUpperCase() + (dotHost ? '.' : ''))).toBe(true);
        expect(matchesHostname(host.toUpperCase(), host + (dotHost ? '.' : ''))).toBe(true);
      }),
    );
  });

  it('never lets a partial-label wildcard or a wildcard over one label match', () => {
    fc.assert(
      fc.property(label, label, suffix, (prefix, single, rest) => {
        expect(matchesHostname(`${prefix}*.${rest}`, `${prefix}x.${rest}`)).toBe(false);
        expect(matchesHostname(`*${prefix}.${rest}`, `x${prefix}.${rest}`)).toBe(false);
        expect(matchesHostname(`*.${single}`, `${prefix}.${single}`)).toBe(false);
      }),
    );
  });

  it('matches a non-wildcard pattern only against the same name', () => {
    fc.assert(
      fc.property(suffix, suffix, (a, b) => {
        expect(matchesHostname(a, b)).toBe(a === b);
      }),
    );
  });
});

describe('normaliseHostname', () => {
  it('lowercases and strips one trailing dot', () => {
    expect(normaliseHostname('WWW.Example.COM.')).toBe('www.example.com');
  });

  it.each(['', '.', 'a..b', 'a.b..', `${'a'.repeat(64)}.com`, 'exa mple.com', '*.example.com'])(
    'refuses %j',
    (name) => {
      expect(normaliseHostname(name)).toBeUndefined();
    },
  );

  it('accepts a whole left-most wildcard label only when asked to', () => {
    expect(normaliseHostname('*.Example.com', { allowWildcard: true })).toBe('*.example.com');
    expect(normaliseHostname('a.*.example.com', { allowWildcard: true })).toBeUndefined();
  });
});

describe('normaliseSerial', () => {
  it.each([
    ['AB:CD:EF', 'abcdef'],
    ['00:AB:CD', 'abcd'],
    ['0x00FF', 'ff'],
    ['  ab cd ef ', 'abcdef'],
    ['0001', '1'],
    ['00', '0'],
    ['7F-00', '7f00'],
  ])('normalises %j to %j', (input, expected) => {
    expect(normaliseSerial(input)).toBe(expected);
  });

  it.each(['', ':', 'xyz', '12g4', '0x', 'a'.repeat(129)])('refuses %j', (input) => {
    expect(normaliseSerial(input)).toBeUndefined();
  });

  const hexBytes = fc.uint8Array({ minLength: 1, maxLength: 20 });
  const colonUpper = (bytes: Uint8Array) =>
    [...bytes].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');

  it('gives the same serial for every presentation of the same number', () => {
    fc.assert(
      fc.property(hexBytes, fc.nat({ max: 3 }), (bytes, zeros) => {
        const plain = Buffer.from(bytes).toString('hex');
        const expected = BigInt(`0x${plain}`).toString(16);
        expect(normaliseSerial(plain)).toBe(expected);
        expect(normaliseSerial(colonUpper(bytes))).toBe(expected);
        expect(normaliseSerial(`${'00:'.repeat(zeros)}${colonUpper(bytes)}`)).toBe(expected);
        expect(sameSerial(plain.toUpperCase(), colonUpper(bytes))).toBe(true);
      }),
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(fc.string(), (input) => {
        const once = normaliseSerial(input);
        if (once !== undefined) expect(normaliseSerial(once)).toBe(once);
      }),
    );
  });
});

describe('randomSerial', () => {
  it('returns 16 positive bytes as lowercase hex already in normal form', () => {
    for (let i = 0; i < 200; i += 1) {
      const serial = randomSerial();
      expect(serial).toMatch(/^[1-7][0-9a-f]{31}$/);
      expect(normaliseSerial(serial)).toBe(serial);
    }
  });
});
