import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, createCrl, generateKey, parsePemBundle } from '../../lib/pki/index.ts';
import { pemBegin, pemEnd } from '../support/pem.ts';

let certPem: string;
let keyPem: string;
let crlPem: string;

beforeAll(async () => {
  const key = await generateKey();
  const ca = await createCertificateAuthority({ commonName: 'PEM Test CA', key });
  certPem = ca.certificatePem;
  keyPem = key.privateKeyPem;
  crlPem = await createCrl(ca, []);
});

/** The base64 lines of a PEM block: what must never appear in a reason. */
const bodyLines = (pem: string) =>
  pem.split('\n').filter((line) => line.length > 8 && !line.startsWith('-----'));

describe('parsePemBundle', () => {
  it('reads certificates in order, one key and CRLs, ignoring text between blocks', () => {
    const other = certPem;
    const result = parsePemBundle(`# leaf\n${certPem}\nsubject=whatever\n${other}${keyPem}${crlPem}`);
    expect(result.kind).toBe('ok');
    if (result.kind !== 'ok') return;
    expect(result.certificates).toHaveLength(2);
    expect(result.certificates[0]?.x509.subject).toBe('CN=PEM Test CA');
    expect(result.privateKey?.key.asymmetricKeyType).toBe('ec');
    expect(result.crls).toHaveLength(1);
  });

  it('accepts CRLF line endings, bytes and an EC PARAMETERS block', () => {
    const text = `-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n${certPem}`;
    const result = parsePemBundle(Buffer.from(text.replace(/\n/g, '\r\n')));
    expect(result.kind).toBe('ok');
  });

  it('reads SEC1 and PKCS#1 private keys and re-encodes them as PKCS#8', async () => {
    const { createPrivateKey } = await import('node:crypto');
    const sec1 = createPrivateKey(keyPem).export({ type: 'sec1', format: 'pem' }).toString();
    const result = parsePemBundle(sec1);
    expect(result.kind === 'ok' && result.privateKey?.pem.startsWith(pemBegin('PRIVATE KEY'))).toBe(true);
    const rsa = createPrivateKey((await generateKey({ kind: 'rsa', bits: 2048 })).privateKeyPem)
      .export({ type: 'pkcs1', format: 'pem' })
      .toString();
    expect(parsePemBundle(rsa).kind).toBe('ok');
  });

  const truncate = (pem: string) => pem.slice(0, Math.floor(pem.length / 2));
  const cases: [string, () => string, RegExp][] = [
    ['empty input', () => '', /no PEM blocks/],
    ['whitespace only', () => '  \n\n ', /no PEM blocks/],
    ['garbage', () => 'hello world, this is not a certificate', /no PEM blocks/],
    ['a truncated certificate', () => truncate(certPem), /truncated/],
    ['a certificate without END', () => certPem.replace(/-----END CERTIFICATE-----\n/, ''), /truncated/],
    ['an END without BEGIN', () => '-----END CERTIFICATE-----\n', /without a BEGIN/],
    ['mismatched labels', () => certPem.replace('END CERTIFICATE', 'END PRIVATE KEY'), /different label/],
    [
      'a malformed header',
      () => '-----BEGIN certificate-----\nAAAA\n-----END certificate-----\n',
      /malformed/,
    ],
    [
      'an unknown label',
      () => '-----BEGIN PGP MESSAGE-----\nAAAA\n-----END PGP MESSAGE-----\n',
      /unexpected/,
    ],
    ['invalid base64', () => certPem.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!'), /invalid base64/],
    [
      'base64 that is not DER',
      () => '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      /not a valid/,
    ],
    ['an empty block', () => '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n', /invalid base64/],
    ['two private keys', () => `${certPem}${keyPem}${keyPem}`, /more than one private key/],
    [
      'an encrypted PKCS#8 key',
      () => `${pemBegin('ENCRYPTED PRIVATE KEY')}\nAAAA\n${pemEnd('ENCRYPTED PRIVATE KEY')}\n`,
      /encrypted/,
    ],
    [
      'a legacy encrypted key',
      () =>
        `${pemBegin('RSA PRIVATE KEY')}\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n${pemEnd('RSA PRIVATE KEY')}\n`,
      /encrypted/,
    ],
    [
      'a corrupted key',
      () => keyPem.replace(/\n[A-Za-z0-9+/]{8}/, '\nAAAAAAAA'),
      /not a readable private key/,
    ],
  ];

  it.each(cases)('refuses %s with a reason', (_name, input, reason) => {
    const result = parsePemBundle(input());
    expect(result).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(reason) });
  });

  it('refuses input over the size limit', () => {
    expect(parsePemBundle(certPem, { maxBytes: 100 })).toMatchObject({ kind: 'invalid' });
    expect(parsePemBundle(certPem.repeat(3), { maxCertificates: 2 })).toMatchObject({ kind: 'invalid' });
  });

  it('never throws on random strings or bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 400 }), fc.uint8Array({ maxLength: 400 })), (input) => {
        const result = parsePemBundle(input);
        expect(['ok', 'invalid']).toContain(result.kind);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on random PEM-looking text', () => {
    const line = fc.oneof(
      fc.constantFrom(
        '-----BEGIN CERTIFICATE-----',
        '-----END CERTIFICATE-----',
        pemBegin('PRIVATE KEY'),
        pemEnd('PRIVATE KEY'),
        '-----BEGIN X509 CRL-----',
        '-----END X509 CRL-----',
        'MIIB',
        '====',
        '',
      ),
      fc.base64String({ maxLength: 64 }),
      fc.string({ maxLength: 20 }),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), (lines) => {
        expect(['ok', 'invalid']).toContain(parsePemBundle(lines.join('\n')).kind);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws and never quotes key material when a real bundle is cut or corrupted', () => {
    const secretLines = () => bodyLines(keyPem);
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), (cut, at, byte) => {
        const bundle = `${certPem}${keyPem}`;
        const position = at % bundle.length;
        const mutated = `${bundle.slice(0, position)}${String.fromCharCode(byte)}${bundle.slice(position + 1)}`;
        for (const input of [bundle.slice(0, cut % bundle.length), mutated]) {
          const result = parsePemBundle(input);
          if (result.kind === 'invalid') {
            for (const secret of secretLines()) expect(result.reason).not.toContain(secret.slice(0, 16));
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
