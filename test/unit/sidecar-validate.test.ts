import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type CertificateAuthorityMaterial,
  createCertificateAuthority,
  createCrl,
  generateKey,
  issueCertificate,
} from '../../lib/pki/index.ts';
import { parseStickTable, renderMetrics, tlsCountersFrom } from '../../proxy/sidecar/metrics.ts';
import { initialState } from '../../proxy/sidecar/state.ts';
import {
  checkAllowlistDocument,
  checkCertificateDocument,
  checkFleetDocument,
  checkNudgeKeyDocument,
  checkTrustDocument,
} from '../../proxy/sidecar/validate.ts';
import { pemBegin } from '../support/pem.ts';

const NAME = 'api.validate.test';
const NOW = new Date();

let ca: CertificateAuthorityMaterial;
let other: CertificateAuthorityMaterial;
let good: { cert: string; key: string; serial: string };

async function leaf(
  authority: CertificateAuthorityMaterial,
  options: { dns?: string[]; notBefore?: Date; notAfter?: Date } = {},
) {
  const key = await generateKey();
  const issued = await issueCertificate(authority, {
    publicKeyPem: key.publicKeyPem,
    commonName: NAME,
    dns: options.dns ?? [NAME],
    usage: 'server',
    ...(options.notBefore ? { notBefore: options.notBefore } : {}),
    ...(options.notAfter ? { notAfter: options.notAfter } : {}),
  });
  return { cert: issued.certificatePem, key: key.privateKeyPem, serial: issued.serial };
}

const doc = (c: { cert: string; key: string; serial: string }) =>
  JSON.stringify({
    certificatePem: c.cert,
    chainPem: '',
    privateKeyPem: c.key,
    serial: c.serial,
    notAfter: new Date(Date.now() + 86_400_000).toISOString(),
  });

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'Validate CA' });
  other = await createCertificateAuthority({ commonName: 'Other CA' });
  good = await leaf(ca);
});

describe('checkCertificateDocument', () => {
  const check = (text: string) =>
    checkCertificateDocument(text, {
      hostnames: [NAME],
      trustPem: ca.certificatePem,
      at: NOW,
      usage: 'server',
    });

  it('refuses a serving certificate as the client certificate of origination (wrong-usage)', () => {
    const result = checkCertificateDocument(doc(good), {
      hostnames: [],
      trustPem: ca.certificatePem,
      at: NOW,
      usage: 'client',
    });
    expect(result).toMatchObject({ kind: 'invalid', code: 'wrong-usage' });
  });

  it('accepts a valid bundle and returns chain plus key for HAProxy with the serial', () => {
    const result = check(doc(good));
    expect(result.kind).toBe('ok');
    if (result.kind !== 'ok') return;
    expect(result.value.serial).toBe(good.serial);
    expect(result.value.pem).toMatch(
      new RegExp(`^-----BEGIN CERTIFICATE-----[\\s\\S]+${pemBegin('PRIVATE KEY')}`),
    );
  });

  const cases: { name: string; code: string; text: () => Promise<string> }[] = [
    { name: 'garbage instead of JSON', code: 'json-invalid', text: async () => 'not json' },
    {
      name: 'the placeholder before the first issue',
      code: 'placeholder',
      text: async () => '{"kind":"portcullis/placeholder"}',
    },
    {
      name: 'a document without a key',
      code: 'document-invalid',
      text: async () => JSON.stringify({ certificatePem: good.cert }),
    },
    {
      name: 'a truncated certificate',
      code: 'pem-invalid',
      text: async () => doc({ ...good, cert: good.cert.slice(0, 200) }),
    },
    {
      name: 'a key of another certificate',
      code: 'key-mismatch',
      text: async () => doc({ ...good, key: (await leaf(ca)).key }),
    },
    {
      name: 'an expired certificate',
      code: 'expired',
      text: async () =>
        doc(
          await leaf(ca, {
            notBefore: new Date(Date.now() - 3 * 86_400_000),
            notAfter: new Date(Date.now() - 86_400_000),
          }),
        ),
    },
    {
      name: 'a certificate not valid yet',
      code: 'not-yet-valid',
      text: async () =>
        doc(
          await leaf(ca, {
            notBefore: new Date(Date.now() + 86_400_000),
            notAfter: new Date(Date.now() + 3 * 86_400_000),
          }),
        ),
    },
    { name: 'a chain to another CA', code: 'untrusted-chain', text: async () => doc(await leaf(other)) },
    {
      name: 'names that miss the route',
      code: 'san-mismatch',
      text: async () => doc(await leaf(ca, { dns: ['else.test'] })),
    },
    {
      name: 'an RSA 1024 key',
      code: 'weak-key',
      text: async () => {
        const pair = generateKeyPairSync('rsa', { modulusLength: 1024 });
        const issued = await issueCertificate(ca, {
          publicKeyPem: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
          commonName: NAME,
          dns: [NAME],
          usage: 'server',
        });
        return doc({
          cert: issued.certificatePem,
          key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
          serial: issued.serial,
        });
      },
    },
  ];
  it.each(cases)('refuses $name with $code, never quoting the key', async ({ code, text }) => {
    const result = check(await text());
    expect(result).toMatchObject({ kind: 'invalid', code });
    if (result.kind === 'invalid') expect(result.reason).not.toContain('PRIVATE KEY');
  });
});

describe('checkTrustDocument', () => {
  it('accepts CA certificates with a CRL from each of them', async () => {
    const crl = (await createCrl(ca, [])) + (await createCrl(other, []));
    const result = await checkTrustDocument(
      JSON.stringify({ caBundlePem: ca.certificatePem + other.certificatePem, crlPem: crl }),
      { at: NOW },
    );
    expect(result).toMatchObject({ kind: 'ok', value: { caCount: 2 } });
  });

  it('refuses a bundle holding a leaf (not-ca) and one holding a key', async () => {
    expect(await checkTrustDocument(JSON.stringify({ caBundlePem: good.cert }), { at: NOW })).toMatchObject({
      code: 'not-ca',
    });
    expect(
      await checkTrustDocument(JSON.stringify({ caBundlePem: ca.certificatePem + good.key }), { at: NOW }),
    ).toMatchObject({ kind: 'invalid' });
  });

  it('refuses CRLs that leave a CA of the bundle without one (HAProxy would refuse its clients)', async () => {
    const crl = await createCrl(ca, []);
    const result = await checkTrustDocument(
      JSON.stringify({ caBundlePem: ca.certificatePem + other.certificatePem, crlPem: crl }),
      { at: NOW },
    );
    expect(result).toMatchObject({ kind: 'invalid', code: 'crl-missing' });
  });

  it('refuses a CRL signed by a CA outside the bundle', async () => {
    const crl = await createCrl(other, []);
    const result = await checkTrustDocument(JSON.stringify({ caBundlePem: ca.certificatePem, crlPem: crl }), {
      at: NOW,
    });
    expect(result).toMatchObject({ kind: 'invalid', code: 'untrusted-crl' });
  });

  it('refuses a bundle that would strand a certificate in service', async () => {
    const result = await checkTrustDocument(JSON.stringify({ caBundlePem: other.certificatePem }), {
      at: NOW,
      serving: [{ name: 'api', chainPem: good.cert }],
    });
    expect(result).toMatchObject({ kind: 'invalid', code: 'untrusted-chain' });
  });
});

describe('checkAllowlistDocument', () => {
  const policy = { allowAll0: false, maxEntries: 3 };
  const cases: { name: string; text: string; code?: string; cidrs?: string[] }[] = [
    {
      name: 'normalises, de-duplicates and orders entries',
      text: JSON.stringify({ cidrs: ['10.1.2.3/8', '::1', '10.0.0.0/8', '192.168.0.1'] }),
      cidrs: ['10.0.0.0/8', '192.168.0.1/32', '::1/128'],
    },
    { name: 'an empty list (deny everyone)', text: JSON.stringify({ cidrs: [] }), cidrs: [] },
    { name: 'garbage JSON', text: '{"cidrs": [', code: 'json-invalid' },
    { name: 'a document without cidrs', text: '{"reason":"x"}', code: 'document-invalid' },
    { name: 'an invalid CIDR', text: JSON.stringify({ cidrs: ['10.0.0.0/33'] }), code: 'cidr-invalid' },
    { name: 'a hostname', text: JSON.stringify({ cidrs: ['example.com'] }), code: 'cidr-invalid' },
    { name: 'an IPv4 /0', text: JSON.stringify({ cidrs: ['0.0.0.0/0'] }), code: 'cidr-too-broad' },
    { name: 'an IPv6 /0', text: JSON.stringify({ cidrs: ['::/0'] }), code: 'cidr-too-broad' },
    {
      name: 'more entries than the bound',
      text: JSON.stringify({ cidrs: ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'] }),
      code: 'too-many-entries',
    },
  ];
  it.each(cases)('$name', ({ text, code, cidrs }) => {
    const result = checkAllowlistDocument(text, policy);
    if (code === undefined) expect(result).toEqual({ kind: 'ok', value: { cidrs } });
    else expect(result).toMatchObject({ kind: 'invalid', code });
  });

  it('accepts /0 when the fleet config allows it', () => {
    expect(
      checkAllowlistDocument(JSON.stringify({ cidrs: ['0.0.0.0/0'] }), { ...policy, allowAll0: true }),
    ).toEqual({
      kind: 'ok',
      value: { cidrs: ['0.0.0.0/0'] },
    });
  });

  it('answers every input with ok or a coded refusal, never a throw', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 45 }), { maxLength: 6 }), (entries) => {
        const result = checkAllowlistDocument(JSON.stringify({ cidrs: entries }), policy);
        return (
          result.kind === 'ok' || ['cidr-invalid', 'cidr-too-broad', 'too-many-entries'].includes(result.code)
        );
      }),
    );
  });
});

describe('checkFleetDocument and checkNudgeKeyDocument', () => {
  it('reads YAML or JSON fleet configs and refuses schema violations with config-invalid', () => {
    expect(checkFleetDocument('fleet: demo\n').kind).toBe('ok');
    expect(checkFleetDocument('{"fleet":"Bad Name"}')).toMatchObject({
      kind: 'invalid',
      code: 'config-invalid',
    });
    expect(checkFleetDocument('fleet: [')).toMatchObject({ kind: 'invalid', code: 'json-invalid' });
  });

  it('refuses a terminate route whose certificate is not declared', () => {
    const text = JSON.stringify({
      fleet: 'demo',
      trust: { secretId: 't' },
      routes: [
        {
          mode: 'terminate',
          serverName: 'a.test',
          certificate: 'nope',
          upstream: { kind: 'local', port: 8080 },
        },
      ],
    });
    const result = checkFleetDocument(text);
    expect(result).toMatchObject({ kind: 'invalid', code: 'config-invalid' });
    if (result.kind === 'invalid') expect(result.reason).toContain('routes.0.certificate');
  });

  it('accepts a 32-byte nudge key and refuses a short one', () => {
    expect(checkNudgeKeyDocument(JSON.stringify({ key: Buffer.alloc(32, 1).toString('base64') })).kind).toBe(
      'ok',
    );
    expect(checkNudgeKeyDocument(JSON.stringify({ key: 'c2hvcnQ=' }))).toMatchObject({
      code: 'document-invalid',
    });
  });
});

describe('metrics', () => {
  it('parses show table output into per-route TLS counters', () => {
    const table = [
      '# table: st_terminate, type: string, size:16, used:2',
      '0x55d0c0a1b2c8: key=api.test use=0 exp=0 gpc0=7 gpc1=2 gpc2=1 gpc3=0 gpc4=3',
      '0x55d0c0a1b3d0: key=*.wild.test use=1 exp=0 gpc0=1 gpc1=0 gpc2=0 gpc3=0 gpc4=0',
      '',
    ].join('\n');
    const counters = tlsCountersFrom(parseStickTable(table));
    expect(counters['api.test']).toEqual({
      handshake: 7,
      noCertificate: 2,
      failVerifyNoCert: 1,
      failVerifyError: 0,
      failVerifySan: 3,
    });
    const text = renderMetrics(initialState(), { tls: counters });
    expect(text).toContain('portcullis_tls_fail_verify_san_total{route="api.test"} 3');
    expect(text).toContain('portcullis_tls_handshakes_total{route="*.wild.test"} 1');
    expect(text).toContain('portcullis_sidecar_ready 0');
  });
});
