import { generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type CertificateAuthorityMaterial,
  certificateInfo,
  checkKeyPolicy,
  checkValidity,
  coversHostnames,
  createCertificateAuthority,
  createCrl,
  generateKey,
  type IssueCertificateOptions,
  issueCertificate,
  type KeyPair,
  keyMatchesCertificate,
  validateCrl,
  validateServingBundle,
  validateTrustBundle,
  verifyChain,
} from '../../lib/pki/index.ts';

const day = 86_400_000;
const now = new Date();

let root: CertificateAuthorityMaterial;
let issuing: CertificateAuthorityMaterial;
let otherRoot: CertificateAuthorityMaterial;
let key: KeyPair;
let otherKey: KeyPair;

beforeAll(async () => {
  root = await createCertificateAuthority({ commonName: 'Validation Root' });
  issuing = await createCertificateAuthority({ commonName: 'Validation Issuing CA', issuer: root });
  otherRoot = await createCertificateAuthority({ commonName: 'Somebody Else Root' });
  key = await generateKey();
  otherKey = await generateKey();
});

async function leaf(
  overrides: Partial<IssueCertificateOptions> & {
    ca?: CertificateAuthorityMaterial;
    publicKeyPem?: string;
  } = {},
) {
  const { ca = issuing, ...options } = overrides;
  return issueCertificate(ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: 'api.example.com',
    dns: ['api.example.com', '*.svc.example.com'],
    usage: 'server',
    ...options,
  });
}

describe('validateServingBundle', () => {
  it('accepts a valid leaf, chain, key and names, and describes the leaf', async () => {
    const issued = await leaf();
    const result = validateServingBundle({
      chainPem: issued.certificatePem + issued.chainPem,
      keyPem: key.privateKeyPem,
      trustBundlePem: root.certificatePem,
      hostnames: ['api.example.com', 'orders.svc.example.com'],
      at: now,
    });
    expect(result).toMatchObject({
      kind: 'ok',
      info: { serial: issued.serial, keyType: 'ec-P-256', isCa: false },
    });
  });

  it('accepts the key inside the chain file, as HAProxy stores it', async () => {
    const issued = await leaf();
    const result = validateServingBundle({
      chainPem: issued.certificatePem + issued.chainPem + key.privateKeyPem,
      trustBundlePem: root.certificatePem,
      hostnames: ['api.example.com'],
      at: now,
    });
    expect(result.kind).toBe('ok');
  });

  type Case = [string, () => Promise<Parameters<typeof validateServingBundle>[0]>, string];
  const base = async (issued: Awaited<ReturnType<typeof leaf>>, keyPem = key.privateKeyPem) => ({
    chainPem: issued.certificatePem + issued.chainPem,
    keyPem,
    trustBundlePem: root.certificatePem,
    hostnames: ['api.example.com'],
    at: now,
  });
  const cases: Case[] = [
    [
      'garbage instead of a chain',
      async () => ({ ...(await base(await leaf())), chainPem: 'nope' }),
      'pem-invalid',
    ],
    ['a truncated key', async () => base(await leaf(), key.privateKeyPem.slice(0, 80)), 'pem-invalid'],
    [
      'an unreadable trust bundle',
      async () => ({ ...(await base(await leaf())), trustBundlePem: '' }),
      'pem-invalid',
    ],
    ['the wrong key', async () => base(await leaf(), otherKey.privateKeyPem), 'key-mismatch'],
    [
      'a leaf whose notAfter has passed',
      async () =>
        base(
          await leaf({
            notBefore: new Date(now.getTime() - 3 * day),
            notAfter: new Date(now.getTime() - day),
          }),
        ),
      'expired',
    ],
    [
      'a leaf that starts tomorrow',
      async () => base(await leaf({ notBefore: new Date(now.getTime() + day), validityDays: 10 })),
      'not-yet-valid',
    ],
    ['a leaf from another CA', async () => base(await leaf({ ca: otherRoot })), 'untrusted-chain'],
    [
      'a chain without its intermediate',
      async () => ({ ...(await base(await leaf())), chainPem: (await leaf()).certificatePem }),
      'untrusted-chain',
    ],
    [
      'names the leaf does not cover',
      async () => ({ ...(await base(await leaf())), hostnames: ['api.example.com', 'a.b.svc.example.com'] }),
      'san-mismatch',
    ],
    [
      'an RSA-1024 key',
      async () => {
        const weak = generateKeyPairSync('rsa', {
          modulusLength: 1024,
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        });
        return base(await leaf({ publicKeyPem: weak.publicKey }), weak.privateKey);
      },
      'weak-key',
    ],
  ];

  it.each(cases)('refuses %s', async (_name, input, code) => {
    const result = validateServingBundle(await input());
    expect(result).toMatchObject({ kind: 'invalid', code });
  });

  it('refuses a client-only leaf for serving and a server-only leaf for origination (TLS peers refuse the purpose)', async () => {
    const clientOnly = await leaf({ usage: 'client' });
    expect(validateServingBundle({ ...(await base(clientOnly)), usage: 'server' })).toMatchObject({
      kind: 'invalid',
      code: 'wrong-usage',
    });
    const serverOnly = await leaf();
    expect(
      validateServingBundle({ ...(await base(serverOnly)), hostnames: [], usage: 'client' }),
    ).toMatchObject({ kind: 'invalid', code: 'wrong-usage' });
    const both = await leaf({ usage: 'both' });
    expect(validateServingBundle({ ...(await base(both)), usage: 'server' }).kind).toBe('ok');
    expect(validateServingBundle({ ...(await base(both)), hostnames: [], usage: 'client' }).kind).toBe('ok');
  });

  it('never puts key material in a reason', async () => {
    const issued = await leaf();
    const broken = key.privateKeyPem.replace(/\n[A-Za-z0-9+/]{8}/, '\nAAAAAAAA');
    const result = validateServingBundle({ ...(await base(issued)), keyPem: broken });
    expect(result.kind).toBe('invalid');
    const secretLines = key.privateKeyPem
      .split('\n')
      .filter((line) => line.length > 8 && !line.startsWith('-'));
    for (const line of secretLines) expect(JSON.stringify(result)).not.toContain(line.slice(0, 16));
  });
});

describe('verifyChain', () => {
  it('builds a path from unordered and surplus certificates to a root', async () => {
    const issued = await leaf();
    const result = verifyChain(
      issued.certificatePem,
      [otherRoot.certificatePem, issued.chainPem, root.certificatePem],
      root.certificatePem,
      { at: now },
    );
    expect(result.kind).toBe('ok');
    if (result.kind === 'ok')
      expect(result.path.map((c) => c.subject)).toEqual([
        'CN=api.example.com',
        'CN=Validation Issuing CA',
        'CN=Validation Root',
      ]);
  });

  it('accepts an intermediate as the trust anchor', async () => {
    const issued = await leaf();
    expect(verifyChain(issued.certificatePem, [], issuing.certificatePem, { at: now }).kind).toBe('ok');
  });

  it('refuses an issuer that is not a CA', async () => {
    const holder = await generateKey();
    const notCa = await issueCertificate(root, {
      publicKeyPem: holder.publicKeyPem,
      commonName: 'not-a-ca',
      usage: 'server',
    });
    const signedByLeaf = await issueCertificate(
      { certificatePem: notCa.certificatePem, privateKeyPem: holder.privateKeyPem, chainPem: '' },
      {
        publicKeyPem: key.publicKeyPem,
        commonName: 'victim.example',
        dns: ['victim.example'],
        usage: 'server',
      },
    );
    const result = verifyChain(signedByLeaf.certificatePem, [notCa.certificatePem], root.certificatePem, {
      at: now,
    });
    expect(result).toMatchObject({
      kind: 'invalid',
      code: 'untrusted-chain',
      reason: expect.stringMatching(/not a CA/),
    });
  });

  it('refuses a chain longer than an issuer path length allows', async () => {
    const mid = await createCertificateAuthority({ commonName: 'Mid', issuer: root, pathLength: 0 });
    const low = await createCertificateAuthority({ commonName: 'Low', issuer: mid });
    const issued = await leaf({ ca: low });
    const result = verifyChain(
      issued.certificatePem,
      [low.certificatePem, mid.certificatePem],
      root.certificatePem,
      { at: now },
    );
    expect(result).toMatchObject({
      kind: 'invalid',
      code: 'untrusted-chain',
      reason: expect.stringMatching(/allows 0/),
    });
  });

  it('refuses an expired intermediate', async () => {
    const old = await createCertificateAuthority({
      commonName: 'Old Issuing CA',
      issuer: root,
      notBefore: new Date(now.getTime() - 10 * day),
      notAfter: new Date(now.getTime() - day),
    });
    const issued = await leaf({ ca: old, notBefore: new Date(now.getTime() - 5 * day), validityDays: 30 });
    const result = verifyChain(issued.certificatePem, issued.chainPem, root.certificatePem, { at: now });
    expect(result).toMatchObject({
      kind: 'invalid',
      code: 'expired',
      reason: expect.stringMatching(/Old Issuing CA/),
    });
  });

  it('refuses an expired anchor even when the chain repeats it', async () => {
    const old = await createCertificateAuthority({
      commonName: 'Expired Anchor CA',
      issuer: root,
      notBefore: new Date(now.getTime() - 10 * day),
      notAfter: new Date(now.getTime() - day),
    });
    const issued = await leaf({ ca: old, notBefore: new Date(now.getTime() - 5 * day), validityDays: 30 });
    const result = verifyChain(issued.certificatePem, old.certificatePem, old.certificatePem, { at: now });
    expect(result).toMatchObject({ kind: 'invalid', code: 'expired' });
  });

  it('refuses a path longer than maxDepth', async () => {
    const issued = await leaf();
    expect(
      verifyChain(issued.certificatePem, issued.chainPem, root.certificatePem, { at: now, maxDepth: 2 }),
    ).toMatchObject({
      code: 'untrusted-chain',
    });
    expect(
      verifyChain(issued.certificatePem, issued.chainPem, root.certificatePem, { at: now, maxDepth: 3 }).kind,
    ).toBe('ok');
  });

  it('refuses when the trust bundle is empty', async () => {
    const issued = await leaf();
    expect(verifyChain(issued.certificatePem, issued.chainPem, [], { at: now })).toMatchObject({
      code: 'untrusted-chain',
    });
  });
});

describe('checkValidity', () => {
  it('allows the configured skew around notBefore and notAfter', async () => {
    const notBefore = new Date(now.getTime() + 30_000);
    const issued = await leaf({ notBefore, notAfter: new Date(notBefore.getTime() + day) });
    expect(checkValidity(issued.certificatePem, { at: now, skewSeconds: 60 }).kind).toBe('ok');
    expect(checkValidity(issued.certificatePem, { at: now, skewSeconds: 10 })).toMatchObject({
      code: 'not-yet-valid',
    });
    const after = new Date(notBefore.getTime() + day + 30_000);
    expect(checkValidity(issued.certificatePem, { at: after, skewSeconds: 60 }).kind).toBe('ok');
    expect(checkValidity(issued.certificatePem, { at: after, skewSeconds: 0 })).toMatchObject({
      code: 'expired',
    });
  });
});

describe('checkKeyPolicy', () => {
  const keyOf = (type: 'rsa' | 'ec' | 'ed25519', option?: number | string) => {
    const pair =
      type === 'rsa'
        ? generateKeyPairSync('rsa', { modulusLength: option as number })
        : type === 'ec'
          ? generateKeyPairSync('ec', { namedCurve: option as string })
          : generateKeyPairSync('ed25519');
    return pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  };

  it.each([
    ['ECDSA P-256', () => keyOf('ec', 'P-256'), 'ok'],
    ['ECDSA P-384', () => keyOf('ec', 'P-384'), 'ok'],
    ['RSA 2048', () => keyOf('rsa', 2048), 'ok'],
    ['ECDSA P-521', () => keyOf('ec', 'P-521'), 'invalid'],
    ['ECDSA secp256k1', () => keyOf('ec', 'secp256k1'), 'invalid'],
    ['RSA 1024', () => keyOf('rsa', 1024), 'invalid'],
    ['Ed25519', () => keyOf('ed25519'), 'invalid'],
  ])('judges %s as %s', (_name, pem, kind) => {
    expect(checkKeyPolicy(pem()).kind).toBe(kind);
  });

  it('reads the key of a certificate and of a private key', async () => {
    const issued = await leaf();
    expect(checkKeyPolicy(issued.certificatePem)).toMatchObject({ kind: 'ok', keyType: 'ec-P-256' });
    expect(checkKeyPolicy(key.privateKeyPem)).toMatchObject({ kind: 'ok', keyType: 'ec-P-256' });
    expect(checkKeyPolicy('not a key')).toMatchObject({ kind: 'invalid', code: 'pem-invalid' });
  });
});

describe('keyMatchesCertificate', () => {
  it('tells the certificate key from another, and never throws', async () => {
    const issued = await leaf();
    expect(keyMatchesCertificate(key.privateKeyPem, issued.certificatePem)).toBe(true);
    expect(keyMatchesCertificate(key.publicKeyPem, issued.certificatePem)).toBe(true);
    expect(keyMatchesCertificate(otherKey.privateKeyPem, issued.certificatePem)).toBe(false);
    expect(keyMatchesCertificate('garbage', issued.certificatePem)).toBe(false);
    expect(keyMatchesCertificate(key.privateKeyPem, 'garbage')).toBe(false);
  });
});

describe('coversHostnames', () => {
  it('matches DNS names by RFC 6125 and IP literals against IP SANs only', async () => {
    const issued = await leaf({ dns: ['api.example.com', '*.svc.example.com'], ip: ['10.0.0.1', '::1'] });
    expect(
      coversHostnames(issued.certificatePem, ['API.example.com.', 'x.svc.example.com', '10.0.0.1', '0:0::1']),
    ).toEqual({
      covered: true,
      missing: [],
    });
    expect(
      coversHostnames(issued.certificatePem, ['svc.example.com', '10.0.0.2', 'a.b.svc.example.com']),
    ).toEqual({
      covered: false,
      missing: ['svc.example.com', '10.0.0.2', 'a.b.svc.example.com'],
    });
  });

  it('ignores the subject common name', async () => {
    const issued = await leaf({ commonName: 'cn-only.example.com', dns: [] });
    expect(coversHostnames(issued.certificatePem, ['cn-only.example.com']).covered).toBe(false);
  });
});

describe('certificateInfo', () => {
  it('describes serial, fingerprint, validity, names and key', async () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date('2026-04-01T00:00:00Z');
    const issued = await leaf({ notBefore, notAfter, uri: ['spiffe://portcullis/api'], serial: '00:0A:BC' });
    const info = certificateInfo(issued.certificatePem);
    expect(info).toMatchObject({
      serial: 'abc',
      notBefore,
      notAfter,
      subject: 'CN=api.example.com',
      issuer: 'CN=Validation Issuing CA',
      dns: ['api.example.com', '*.svc.example.com'],
      uri: ['spiffe://portcullis/api'],
      keyType: 'ec-P-256',
      isCa: false,
    });
    expect(info.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('throws a CertificateValidationError on something that is not a certificate', () => {
    expect(() => certificateInfo('nope')).toThrow(
      expect.objectContaining({ name: 'CertificateValidationError', code: 'pem-invalid' }),
    );
  });
});

describe('validateTrustBundle', () => {
  it('accepts CA certificates and describes them', () => {
    const result = validateTrustBundle(root.certificatePem + issuing.certificatePem, { at: now });
    expect(result).toMatchObject({
      kind: 'ok',
      certificates: [{ subject: 'CN=Validation Root' }, { subject: 'CN=Validation Issuing CA' }],
    });
  });

  it.each([
    ['garbage', () => 'nope', 'pem-invalid'],
    ['a private key', () => root.certificatePem + key.privateKeyPem, 'private-key-present'],
  ])('refuses %s', (_name, input, code) => {
    expect(validateTrustBundle(input())).toMatchObject({ kind: 'invalid', code });
  });

  it('refuses a leaf certificate and an expired CA', async () => {
    expect(validateTrustBundle((await leaf()).certificatePem)).toMatchObject({ code: 'not-ca' });
    const expired = await createCertificateAuthority({
      commonName: 'Expired Root',
      notBefore: new Date(now.getTime() - 10 * day),
      notAfter: new Date(now.getTime() - day),
    });
    expect(validateTrustBundle(expired.certificatePem, { at: now })).toMatchObject({ code: 'expired' });
  });
});

describe('validateCrl', () => {
  it('accepts a CRL signed by a trusted CA and lists its serials', async () => {
    const crl = await createCrl(issuing, [{ serial: 'AB:CD', revokedAt: now, reason: 'SUPERSEDED' }]);
    const result = await validateCrl(crl, [root.certificatePem, issuing.certificatePem], { at: now });
    expect(result).toMatchObject({
      kind: 'ok',
      crls: [{ issuer: 'CN=Validation Issuing CA', revokedSerials: ['abcd'] }],
    });
  });

  it('refuses a CRL from a CA outside the list', async () => {
    const crl = await createCrl(otherRoot, []);
    expect(await validateCrl(crl, root.certificatePem, { at: now })).toMatchObject({ code: 'untrusted-crl' });
  });

  it('refuses a CRL from an impostor with the same name', async () => {
    const impostor = await createCertificateAuthority({ commonName: 'Validation Root' });
    const crl = await createCrl(impostor, []);
    expect(await validateCrl(crl, root.certificatePem, { at: now })).toMatchObject({ code: 'untrusted-crl' });
  });

  it('refuses a CRL past its nextUpdate', async () => {
    const crl = await createCrl(root, [], {
      thisUpdate: new Date(now.getTime() - 10 * day),
      nextUpdate: new Date(now.getTime() - day),
    });
    expect(await validateCrl(crl, root.certificatePem, { at: now })).toMatchObject({ code: 'stale-crl' });
  });

  it('requires a CRL for every CA when asked, as HAProxy does once a crl-file is set', async () => {
    const issuingOnly = await createCrl(issuing, []);
    const cas = [root.certificatePem, issuing.certificatePem];
    expect((await validateCrl(issuingOnly, cas, { at: now })).kind).toBe('ok');
    expect(await validateCrl(issuingOnly, cas, { at: now, requireEveryCa: true })).toMatchObject({
      code: 'crl-missing',
      reason: expect.stringMatching(/Validation Root/),
    });
    const both = issuingOnly + (await createCrl(root, []));
    expect((await validateCrl(both, cas, { at: now, requireEveryCa: true })).kind).toBe('ok');
  });

  it('refuses certificates where a CRL belongs', async () => {
    expect(await validateCrl(root.certificatePem, root.certificatePem)).toMatchObject({
      code: 'pem-invalid',
    });
  });
});
