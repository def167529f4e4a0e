/**
 * `checkedIssuedBundle`, the checks an issued certificate passes before it is staged, used by
 * StageCertificate and by `init`'s first issuance; and `init` refusing what StageCertificate
 * refuses (a CA that signed other names), writing no certificate.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initFleet } from '../../cli/commands/init.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import {
  type CertificateAuthorityMaterial,
  certificateInfo,
  createCertificateAuthority,
  generateKey,
  issueCertificate,
} from '../../lib/pki/index.ts';
import type { CertificateAuthority } from '../../lib/ports.ts';
import { checkedIssuedBundle } from '../../lib/rotation/certificate-bundle.ts';

let root: CertificateAuthorityMaterial;
let other: CertificateAuthorityMaterial;
let dir: string;
beforeAll(async () => {
  root = await createCertificateAuthority({ commonName: 'Bundle Test Root' });
  other = await createCertificateAuthority({ commonName: 'Someone Else' });
  dir = await mkdtemp(join(tmpdir(), 'portcullis-bundle-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function leafFor(ca: CertificateAuthorityMaterial, dns: string[]) {
  const key = await generateKey();
  const issued = await issueCertificate(ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: dns[0] ?? 'leaf',
    dns,
    usage: 'server',
  });
  return { key, issued };
}

describe('checkedIssuedBundle', () => {
  it('returns the bundle document of a certificate that matches its key, chains to the trust bundle and covers the names', async () => {
    const { key, issued } = await leafFor(root, ['api.test', 'www.api.test']);
    const bundle = checkedIssuedBundle({
      certificateId: 'cert-1',
      issued,
      privateKeyPem: key.privateKeyPem,
      trustBundlePem: root.certificatePem,
      dns: ['api.test', 'www.api.test'],
      at: new Date(),
    });
    expect(bundle).toMatchObject({
      certificateId: 'cert-1',
      serial: issued.serial,
      chainPem: issued.chainPem,
    });
    expect(bundle.notAfter).toBe(certificateInfo(issued.certificatePem).notAfter.toISOString());
  });

  it.each([
    [
      'key-mismatch',
      'another key',
      async () => ({ ...(await leafFor(root, ['api.test'])), key: await generateKey() }),
    ],
    ['untrusted-chain', 'another CA', () => leafFor(other, ['api.test'])],
    ['san-mismatch', 'fewer names', () => leafFor(root, ['www.api.test'])],
  ])('refuses %s (%s)', async (code, _what, make) => {
    const { key, issued } = await make();
    let error: unknown;
    try {
      checkedIssuedBundle({
        certificateId: 'cert-2',
        issued,
        privateKeyPem: key.privateKeyPem,
        trustBundlePem: root.certificatePem,
        dns: ['api.test'],
        at: new Date(),
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ name: 'CertificateValidationError', code });
    expect(String((error as Error).message)).toContain('cert-2');
  });

  it('refuses a certificate that is not valid yet or any more at the given time', async () => {
    const { key, issued } = await leafFor(root, ['api.test']);
    const input = {
      certificateId: 'c',
      issued,
      privateKeyPem: key.privateKeyPem,
      trustBundlePem: root.certificatePem,
      dns: ['api.test'],
    };
    const info = certificateInfo(issued.certificatePem);
    expect(() =>
      checkedIssuedBundle({ ...input, at: new Date(info.notAfter.getTime() + 86_400_000) }),
    ).toThrow(expect.objectContaining({ code: 'expired' }));
  });
});

describe('init', () => {
  it('refuses a first certificate the CA signed for other names, as StageCertificate would, and writes none', async () => {
    const store = await FileSecretStore.open(join(dir, 'store'));
    const local = await LocalAuthority.open(join(dir, 'ca'));
    // A CA that drops the last requested name (a template or policy that narrows names).
    const narrowing: CertificateAuthority = {
      issue: (request) =>
        local.issue({ ...request, sans: { ...request.sans, dns: request.sans.dns.slice(0, -1) } }),
      get: (id) => local.get(id),
      revoke: (id, serial, reason) => local.revoke(id, serial, reason),
      caCertificates: () => local.caCertificates(),
    };
    const fleet = 'bundle';
    const config = {
      fleet,
      routes: [],
      certificates: [
        {
          name: 'api',
          secretId: `portcullis/${fleet}/cert/api`,
          commonName: 'api.bundle.test',
          dns: ['api.bundle.test', 'www.bundle.test'],
          usage: 'server',
          validityDays: 30,
        },
      ],
      trust: { secretId: `portcullis/${fleet}/trust` },
      nudgeKey: { secretId: `portcullis/${fleet}/nudge-key` },
      allowlist: { source: { secretId: `portcullis/${fleet}/allowlist` } },
    };
    await expect(
      initFleet({
        store,
        authority: narrowing,
        fleet,
        fleetConfigText: JSON.stringify(config),
        allowlist: ['203.0.113.0/24'],
      }),
    ).rejects.toMatchObject({ name: 'CertificateValidationError', code: 'san-mismatch' });
    await expect(store.get(`portcullis/${fleet}/cert/api`)).rejects.toMatchObject({ name: 'NotFoundError' });
  });
});
