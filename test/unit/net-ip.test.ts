import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIp, parseHostPort, parseIPv4, parseIPv6, parseIp } from '../../lib/net/ip.ts';

describe('parseIp and formatIp', () => {
  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['fd00:ec2::254', 'fd00:ec2::254'],
    ['1:0:1:1:1:1:1:1', '1:0:1:1:1:1:1:1'],
  ])('reads %s and writes it as %s', (text, canonical) => {
    expect(formatIp(parseIp(text)!)).toBe(canonical);
  });

  it.each(['01.2.3.4', '256.1.1.1', '1.2.3', '1:2:3:4:5:6:7:8:9', '1::2::3', 'fe80::1%eth0', 'g::1', ''])(
    'refuses %j',
    (text) => {
      expect(parseIp(text)).toBeUndefined();
    },
  );

  it('agrees with fast-check addresses and is idempotent', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (address) => {
        const bytes = parseIp(address);
        expect(bytes).toBeDefined();
        expect(parseIp(formatIp(bytes!))).toEqual(bytes);
        expect(formatIp(parseIp(formatIp(bytes!))!)).toBe(formatIp(bytes!));
      }),
    );
    expect(parseIPv4('::1')).toBeUndefined();
    expect(parseIPv6('1.2.3.4')).toBeUndefined();
  });

  it('formats any 4 or 16 bytes as text that parses back to the same bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 4, maxLength: 4 }),
          fc.uint8Array({ minLength: 16, maxLength: 16 }),
        ),
        (bytes) => {
          expect(Array.from(parseIp(formatIp(bytes))!)).toEqual(Array.from(bytes));
        },
      ),
    );
  });

  it('agrees with node:net on what an address is', async () => {
    const { isIP } = await import('node:net');
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (text) => {
        expect(parseIp(text)?.length).toBe(isIP(text) === 4 ? 4 : 16);
      }),
    );
  });
});

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:443', { host: '127.0.0.1', port: 443 }],
    ['[::1]:8443', { host: '::1', port: 8443 }],
    ['localhost:53', { host: 'localhost', port: 53 }],
    ['::1:443', undefined],
    ['127.0.0.1:65536', undefined],
    ['127.0.0.1', undefined],
  ])('splits %s', (text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });
});
