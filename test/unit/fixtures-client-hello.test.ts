import { Duplex } from 'node:stream';
import tls from 'node:tls';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildClientHello,
  buildSslv2ClientHello,
  HYBRID_KEY_SHARE_SIZE,
  handshakeBytes,
  NamedGroup,
  readClientHello,
  readSni,
  splitIntoRecords,
  splitWrites,
  TlsExtension,
} from '../support/client-hello.ts';

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const fixed = { random: Buffer.alloc(32, 7), sessionId: Buffer.alloc(0) };

/** The first flight node:tls itself sends, captured without any socket. */
async function realClientHello(servername: string): Promise<Buffer> {
  const { promise, resolve } = Promise.withResolvers<Buffer>();
  const wire = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      resolve(Buffer.from(chunk));
      callback();
    },
  });
  const client = tls.connect({ socket: wire, servername, ALPNProtocols: ['h2', 'http/1.1'] });
  client.on('error', () => {});
  try {
    return await promise;
  } finally {
    client.destroy();
  }
}

describe('buildClientHello', () => {
  it('builds a TLS 1.3 hello the reader takes apart field by field', () => {
    const result = readClientHello(
      buildClientHello({ serverName: 'api.example.com', alpn: ['h2', 'http/1.1'] }),
    );
    expect(result).toMatchObject({
      kind: 'ok',
      hello: {
        format: 'tls',
        recordVersion: 0x0301,
        clientVersion: 0x0303,
        serverName: 'api.example.com',
        alpn: ['h2', 'http/1.1'],
        supportedVersions: [0x0304, 0x0303],
        keyShares: [{ group: NamedGroup.X25519, size: 32 }],
        records: 1,
      },
    });
  });

  it('builds a post-quantum-sized hello that no longer fits a typical first segment', () => {
    const hello = buildClientHello({ serverName: 'pq.example.com', keyShareSize: HYBRID_KEY_SHARE_SIZE });
    expect(hello.length).toBeGreaterThan(1300);
    expect(readClientHello(hello)).toMatchObject({
      kind: 'ok',
      hello: { keyShares: [{ group: NamedGroup.X25519MLKEM768, size: 1216 }] },
    });
  });

  it.each([600, 1500, 16389, 20000, 40000])(
    'pads to exactly %i bytes, in as many records as needed',
    (size) => {
      const hello = buildClientHello({ serverName: 'a.example', targetSize: size });
      expect(hello.length).toBe(size);
      const result = readClientHello(hello);
      expect(result).toMatchObject({ kind: 'ok', length: size, hello: { serverName: 'a.example' } });
      expect(result.kind === 'ok' && result.hello.extensionTypes.at(-1)).toBe(TlsExtension.Padding);
    },
  );

  it('refuses a target size smaller than the hello', () => {
    expect(() => buildClientHello({ serverName: 'a.example', targetSize: 100 })).toThrow(/smaller than/);
  });

  it('builds hellos without SNI, and TLS 1.2 hellos without key shares', () => {
    expect(readSni(buildClientHello())).toMatchObject({ kind: 'ok', serverName: undefined });
    expect(readClientHello(buildClientHello({ version: '1.2', serverName: 'old.example' }))).toMatchObject({
      kind: 'ok',
      hello: { serverName: 'old.example', keyShares: [], supportedVersions: [] },
    });
  });

  it('is byte-exact given its random inputs', () => {
    const hello = buildClientHello({ ...fixed, version: '1.2', serverName: 'a.b', cipherSuites: [0xc02f] });
    expect(hello.toString('hex')).toBe(
      [
        '16 0301 0055', // handshake record, 85 bytes
        '01 000051 0303', // ClientHello, 81 bytes, legacy_version TLS 1.2
        '07'.repeat(32), // random
        '00 0002 c02f 01 00', // no session id, one suite, null compression
        '0026', // 38 bytes of extensions
        '0000 0008 0006 00 0003 612e62', // server_name a.b
        '000a 0006 0004 001d 0017', // supported_groups
        '000d 000c 000a 0403 0804 0401 0503 0805', // signature_algorithms
      ]
        .join('')
        .replace(/\s+/g, ''),
    );
  });
});

describe('buildSslv2ClientHello', () => {
  it('builds a v2-framed hello the reader recognises, without SNI', () => {
    const hello = buildSslv2ClientHello({
      cipherSpecs: [0x010080, 0x00c02f],
      challenge: Buffer.alloc(16, 1),
    });
    expect(hello.subarray(0, 3).toString('hex')).toBe('801f01');
    expect(readClientHello(hello)).toEqual({
      kind: 'ok',
      length: hello.length,
      hello: {
        format: 'sslv2',
        recordVersion: 2,
        clientVersion: 0x0303,
        serverName: undefined,
        alpn: [],
        supportedVersions: [],
        keyShares: [],
        cipherSuites: [0x010080, 0x00c02f],
        extensionTypes: [],
        records: 1,
        handshakeLength: 31,
      },
    });
  });
});

describe('readClientHello', () => {
  it('reads the SNI of the ClientHello node:tls really sends', async () => {
    const hello = await realClientHello('real.example.com');
    expect(readClientHello(hello)).toMatchObject({
      kind: 'ok',
      length: hello.length,
      hello: { serverName: 'real.example.com', alpn: ['h2', 'http/1.1'] },
    });
  });

  const good = buildClientHello({ serverName: 'api.example.com', ...fixed });
  const body = handshakeBytes(good);
  const record = (payload: Buffer, type = 0x16, version = '0301') =>
    Buffer.concat([
      Buffer.from([type]),
      hex(version),
      hex(payload.length.toString(16).padStart(4, '0')),
      payload,
    ]);
  const withSni = (sniExtension: Buffer) => {
    // A 1.2-shaped body with a single extension, so fixtures stay short and readable.
    const hs = Buffer.concat([
      hex('0303'),
      Buffer.alloc(32),
      hex('00 0002 c02f 01 00'),
      hex(sniExtension.length.toString(16).padStart(4, '0')),
      sniExtension,
    ]);
    return record(Buffer.concat([hex('01'), hex(hs.length.toString(16).padStart(6, '0')), hs]));
  };

  it.each([
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\n'), /not a TLS handshake/],
    ['an alert record', hex('15 0303 0002 0228'), /not a TLS handshake/],
    ['a ServerHello', record(Buffer.concat([hex('02'), body.subarray(1)])), /not ClientHello/],
    ['record version 2.x', record(body, 0x16, '0201'), /not 3\.x/],
    ['a record over 16384 bytes', hex('16 0301 4001'), /exceeds 16384/],
    ['an empty record', hex('16 0301 0000'), /empty handshake record/],
    ['a handshake over the size limit', record(hex('01 100000')), /exceeds 65536/],
    ['a message shorter than any hello', record(hex('01 000004 03030000')), /too short/],
    [
      'an alert between fragments',
      Buffer.concat([record(body.subarray(0, 10)), hex('15 0303 0002 0228')]),
      /record type 21/,
    ],
    [
      'bytes after the hello in its record',
      record(Buffer.concat([body, hex('00')])),
      /bytes after the message/,
    ],
    ['an SNI list that overflows', withSni(hex('0000 0009 0007 00 0009 616263')), /runs past/],
    ['an empty SNI list', withSni(hex('0000 0002 0000')), /empty server_name_list/],
    ['an SNI with a space', withSni(hex('0000 0008 0006 00 0003 612062')), /not a host name/],
    ['an SNI with a NUL', withSni(hex('0000 0008 0006 00 0003 610062')), /not a host name/],
    ['two host names', withSni(hex('0000 000a 0008 00 0001 61 00 0001 62')), /two host names/],
    [
      'a duplicate extension',
      withSni(hex('0000 0008 0006 00 0003 616263 0000 0008 0006 00 0003 616263')),
      /duplicate extension/,
    ],
    ['an SSLv2 SERVER-HELLO', hex('8010 04'), /not a CLIENT-HELLO/],
  ])('calls %s invalid', (_name, bytes, reason) => {
    const result = readClientHello(bytes);
    expect(result.kind).toBe('invalid');
    expect(result.kind === 'invalid' && result.reason).toMatch(reason);
  });

  it('reads an SNI with a single valid fixture', () => {
    expect(readSni(withSni(hex('0000 0008 0006 00 0003 616263')))).toMatchObject({
      kind: 'ok',
      serverName: 'abc',
    });
  });

  it('asks for more on every strict prefix of a valid hello', () => {
    for (const hello of [good, splitIntoRecords(good, 5), buildSslv2ClientHello()]) {
      for (let n = 0; n < hello.length; n++)
        expect(readClientHello(hello.subarray(0, n))).toEqual({ kind: 'need-more' });
    }
  });

  it('refuses a hello over a caller-chosen size before it arrives', () => {
    const big = buildClientHello({ serverName: 'a.example', targetSize: 5000 });
    expect(readClientHello(big.subarray(0, 20), { maxLength: 4096 })).toMatchObject({ kind: 'invalid' });
  });
});

describe('splitIntoRecords and splitWrites', () => {
  const hello = buildClientHello({ serverName: 'split.example.com', keyShareSize: HYBRID_KEY_SHARE_SIZE });

  it('re-frames one handshake message across records of the given sizes', () => {
    const split = splitIntoRecords(hello, [1, 2, 100]);
    expect(handshakeBytes(split)).toEqual(handshakeBytes(hello));
    expect(split.readUInt16BE(3)).toBe(1);
    expect(readClientHello(split)).toMatchObject({ kind: 'ok', length: split.length, hello: { records: 4 } });
    expect(splitIntoRecords(hello, 3).length).toBe(hello.length + 10);
  });

  it('cuts bytes into writes that concatenate back', () => {
    const lengths = splitWrites(hello, 4).map((b) => b.length);
    expect(lengths.reduce((a, b) => a + b)).toBe(hello.length);
    expect(Math.max(...lengths) - Math.min(...lengths)).toBeLessThanOrEqual(1);
    expect(Buffer.concat(splitWrites(hello, [3, 5]))).toEqual(hello);
    expect(splitWrites(hello, [3, 5]).length).toBe(3);
  });
});

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/);
const hostName = fc.array(label, { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));

describe('ClientHello properties', () => {
  it('reads back the SNI it built, whatever the shape of the hello', () => {
    fc.assert(
      fc.property(
        hostName,
        fc.constantFrom('1.2' as const, '1.3' as const),
        fc.integer({ min: 0, max: 2000 }),
        fc.array(fc.constantFrom('h2', 'http/1.1', 'x'), { maxLength: 3 }),
        (serverName, version, keyShareSize, alpn) => {
          const result = readSni(buildClientHello({ serverName, version, keyShareSize, alpn }));
          expect(result).toMatchObject({ kind: 'ok', serverName });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads the same SNI from any split into records and writes, once every byte is in', () => {
    fc.assert(
      fc.property(
        hostName,
        fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 10 }),
        (serverName, recordSizes, writeSizes) => {
          const hello = buildClientHello({ serverName, keyShareSize: HYBRID_KEY_SHARE_SIZE });
          const reframed = splitIntoRecords(hello, recordSizes);
          let seen = Buffer.alloc(0);
          const writes = splitWrites(reframed, writeSizes);
          for (const [i, write] of writes.entries()) {
            seen = Buffer.concat([seen, write]);
            const result = readSni(seen);
            if (i < writes.length - 1) expect(result).toEqual({ kind: 'need-more' });
            else expect(result).toEqual({ kind: 'ok', serverName, length: reframed.length });
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('never throws on random bytes or on corrupted hellos', () => {
    const base = buildClientHello({ serverName: 'fuzz.example.com', alpn: ['h2'] });
    const corrupted = fc
      .array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      })
      .map((edits) => {
        const copy = Buffer.from(base);
        for (const [at, byte] of edits) copy[at] = byte;
        return copy;
      });
    const random = fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a));
    const headed = random.map((b) => Buffer.concat([hex('16 0301'), b]));
    fc.assert(
      fc.property(fc.oneof(random, corrupted, headed), (bytes) => {
        const result = readClientHello(bytes);
        expect(['need-more', 'ok', 'invalid']).toContain(result.kind);
        if (result.kind === 'invalid') expect(result.reason).not.toMatch(/reader failure/);
      }),
      { numRuns: 3000 },
    );
  });
});
