import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import {
  certificateInfo,
  createCsr,
  generateKey,
  type KeyPair,
  validateCrl,
  validateServingBundle,
} from '../../lib/pki/index.ts';
import { type IssueRequest, RevocationReason } from '../../lib/ports.ts';

let dir: string;
let key: KeyPair;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-local-ca-'));
  key = await generateKey();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function request(overrides: Partial<IssueRequest> = {}): Promise<IssueRequest> {
  return {
    csrPem: await createCsr(key, { commonName: 'ignored' }),
    commonName: 'api.example.com',
    sans: { dns: ['api.example.com'], uri: ['spiffe://portcullis/api'] },
    validityDays: 30,
    idempotencyToken: 'exec-1-api',
    usage: 'server',
    ...overrides,
  };
}

describe('LocalAuthority', () => {
  it('creates a CA on first open with its key readable by the owner only', async () => {
    const authority = await LocalAuthority.open(dir);
    const anchor = new X509Certificate(await authority.caCertificates());
    expect(anchor.ca).toBe(true);
    expect((await stat(join(dir, 'ca', 'key.pem'))).mode & 0o777).toBe(0o600);
  });

  it('issues a certificate that serves the requested names with the CSR key', async () => {
    const authority = await LocalAuthority.open(dir);
    const { certificateId } = await authority.issue(await request());
    expect(certificateId).toMatch(/^local:[0-9a-f-]{36}$/);
    const issued = await authority.get(certificateId);
    const result = validateServingBundle({
      chainPem: issued.certificatePem + issued.chainPem,
      keyPem: key.privateKeyPem,
      trustBundlePem: await authority.trustAnchorPem(),
      hostnames: ['api.example.com'],
    });
    expect(result).toMatchObject({
      kind: 'ok',
      info: { uri: ['spiffe://portcullis/api'], subject: 'CN=api.example.com' },
    });
  });

  it('returns the same certificate for the same token and issues no second one', async () => {
    const authority = await LocalAuthority.open(dir);
    const first = await authority.issue(await request());
    // A new CSR for the same key (ECDSA signatures differ each time) is the same request.
    const again = await authority.issue(await request());
    expect(again.certificateId).toBe(first.certificateId);
    expect(await readdir(join(dir, 'issued'))).toHaveLength(1);
  });

  it('refuses the same token with a different request', async () => {
    const authority = await LocalAuthority.open(dir);
    await authority.issue(await request());
    key = await generateKey();
    await expect(authority.issue(await request())).rejects.toMatchObject({ name: 'ConflictError' });
    await expect(
      authority.issue(await request({ sans: { dns: ['other.example.com'] } })),
    ).rejects.toMatchObject({
      name: 'ConflictError',
    });
  });

  it('issues concurrently without losing or duplicating certificates', async () => {
    const authority = await LocalAuthority.open(dir);
    const requests = await Promise.all(
      [1, 2, 3, 1, 2, 3].map((n) => request({ idempotencyToken: `token-${n}` })),
    );
    const ids = await Promise.all(requests.map((r) => authority.issue(r)));
    expect(new Set(ids.map((id) => id.certificateId)).size).toBe(3);
    expect(await readdir(join(dir, 'issued'))).toHaveLength(3);
  });

  it.each([
    [
      'a weak key',
      async () => {
        const { generateKeyPairSync } = await import('node:crypto');
        const weak = generateKeyPairSync('rsa', {
          modulusLength: 1024,
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        });
        return request({
          csrPem: await createCsr(
            { privateKeyPem: weak.privateKey, publicKeyPem: weak.publicKey },
            { commonName: 'weak' },
          ),
        });
      },
    ],
    [
      'a tampered CSR',
      async () => request({ csrPem: (await request()).csrPem.replace(/\n[A-Za-z0-9+/]{4}/, '\nAAAA') }),
    ],
    ['a zero validity', async () => request({ validityDays: 0 })],
    ['a validity beyond the CA', async () => request({ validityDays: 800 })],
    ['a bad DNS name', async () => request({ sans: { dns: ['not a name'] } })],
    ['no names at all', async () => request({ sans: { dns: [] } })],
    ['an over-long token', async () => request({ idempotencyToken: 'x'.repeat(37) })],
  ])('refuses %s with a ValidationError', async (_name, make) => {
    const authority = await LocalAuthority.open(dir, { caValidityDays: 365 });
    await expect(authority.issue(await make())).rejects.toMatchObject({
      name: 'ValidationError',
    });
  });

  it('answers CertificateNotReady for the configured number of polls, then the certificate', async () => {
    const authority = await LocalAuthority.open(dir, { readyAfterPolls: 2 });
    const { certificateId } = await authority.issue(await request());
    await expect(authority.get(certificateId)).rejects.toMatchObject({ name: 'CertificateNotReady' });
    await expect(authority.get(certificateId)).rejects.toMatchObject({ name: 'CertificateNotReady' });
    await expect(authority.get(certificateId)).resolves.toMatchObject({ certificatePem: expect.any(String) });
  });

  it('answers NotFoundError for unknown and malformed ids', async () => {
    const authority = await LocalAuthority.open(dir);
    await expect(authority.get('local:00000000-0000-0000-0000-000000000000')).rejects.toMatchObject({
      name: 'NotFoundError',
    });
    await expect(authority.get('../../etc/passwd')).rejects.toMatchObject({ name: 'NotFoundError' });
    await expect(
      authority.revoke('arn:aws:acm-pca:x', '01', RevocationReason.Superseded),
    ).rejects.toMatchObject({
      name: 'NotFoundError',
    });
  });

  it('revokes idempotently and lists the serial in a CRL the CA signed', async () => {
    const authority = await LocalAuthority.open(dir);
    const { certificateId } = await authority.issue(await request());
    const kept = await authority.issue(await request({ idempotencyToken: 'exec-1-other' }));
    const serial = certificateInfo((await authority.get(certificateId)).certificatePem).serial;
    const colonUpper = serial.toUpperCase().match(/../g)!.join(':');
    await authority.revoke(certificateId, colonUpper, RevocationReason.KeyCompromise);
    await authority.revoke(certificateId, serial, RevocationReason.Superseded);
    const crl = await validateCrl(await authority.crlPem(), await authority.caCertificates());
    expect(crl.kind).toBe('ok');
    if (crl.kind !== 'ok') return;
    expect(crl.crls[0]?.revokedSerials).toEqual([serial]);
    const keptSerial = certificateInfo((await authority.get(kept.certificateId)).certificatePem).serial;
    expect(crl.crls[0]?.revokedSerials).not.toContain(keptSerial);
    expect((await authority.record(certificateId)).revocation?.reason).toBe('KEY_COMPROMISE');
  });

  it('refuses to revoke with a serial that is not the certificate\u2019s', async () => {
    const authority = await LocalAuthority.open(dir);
    const { certificateId } = await authority.issue(await request());
    await expect(
      authority.revoke(certificateId, 'abcdef', RevocationReason.Superseded),
    ).rejects.toMatchObject({
      name: 'ValidationError',
    });
  });

  it('reopens from disk with the same CA, certificates and revocations', async () => {
    const first = await LocalAuthority.open(dir);
    const { certificateId } = await first.issue(await request());
    const serial = certificateInfo((await first.get(certificateId)).certificatePem).serial;
    await first.revoke(certificateId, serial, RevocationReason.Superseded);

    const reopened = await LocalAuthority.open(dir);
    expect(await reopened.caCertificates()).toBe(await first.caCertificates());
    expect((await reopened.get(certificateId)).certificatePem).toBe(
      (await first.get(certificateId)).certificatePem,
    );
    expect((await reopened.issue(await request())).certificateId).toBe(certificateId);
    const crl = await validateCrl(await reopened.crlPem(), await reopened.caCertificates());
    expect(crl).toMatchObject({ kind: 'ok', crls: [{ revokedSerials: [serial] }] });
  });

  it('ends up with one CA when opened twice at once', async () => {
    const [a, b] = await Promise.all([LocalAuthority.open(dir), LocalAuthority.open(dir)]);
    expect(await a.caCertificates()).toBe(await b.caCertificates());
    expect((await readdir(dir)).filter((name) => name.startsWith('.ca-'))).toEqual([]);
  });

  it('picks up a revocation made by another instance in its CRL', async () => {
    const a = await LocalAuthority.open(dir);
    const b = await LocalAuthority.open(dir);
    const { certificateId } = await a.issue(await request());
    const serial = certificateInfo((await a.get(certificateId)).certificatePem).serial;
    await a.crlPem();
    await b.revoke(certificateId, serial, RevocationReason.Superseded);
    const crl = await validateCrl(await a.crlPem(), await a.caCertificates());
    expect(crl).toMatchObject({ kind: 'ok', crls: [{ revokedSerials: [serial] }] });
  });

  it('can issue from an intermediate and return it as the chain', async () => {
    const authority = await LocalAuthority.open(dir, { intermediate: true });
    const { certificateId } = await authority.issue(await request());
    const issued = await authority.get(certificateId);
    expect(issued.chainPem).not.toBe('');
    const chain = (await authority.caCertificates()).match(/-----BEGIN CERTIFICATE-----/g);
    expect(chain).toHaveLength(2);
    const result = validateServingBundle({
      chainPem: issued.certificatePem + issued.chainPem,
      keyPem: key.privateKeyPem,
      trustBundlePem: await authority.trustAnchorPem(),
      hostnames: ['api.example.com'],
    });
    expect(result.kind).toBe('ok');
    const crl = await validateCrl(await authority.crlPem(), await authority.caCertificates(), {
      requireEveryCa: true,
    });
    expect(crl).toMatchObject({ kind: 'ok', crls: [{ revokedSerials: [] }, { revokedSerials: [] }] });
    expect((await stat(join(dir, 'ca', 'root-key.pem'))).mode & 0o777).toBe(0o600);
  });

  it('renews a CRL past half its lifetime', async () => {
    let now = new Date();
    const authority = await LocalAuthority.open(dir, { crlValidityDays: 2, now: () => now });
    const before = await authority.crlPem();
    expect(await authority.crlPem()).toBe(before);
    now = new Date(now.getTime() + 1.5 * 86_400_000);
    const after = await authority.crlPem();
    expect(after).not.toBe(before);
    expect((await validateCrl(after, await authority.caCertificates(), { at: now })).kind).toBe('ok');
  });
});
