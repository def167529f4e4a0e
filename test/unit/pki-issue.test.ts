import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CertificateValidationError,
  createCertificateAuthority,
  createCrl,
  createCsr,
  generateKey,
  issueCertificate,
  normaliseSerial,
  readCsr,
} from '../../lib/pki/index.ts';
import { x509 } from '../../lib/pki/x509.ts';
import { pemBegin } from '../support/pem.ts';

describe('generateKey', () => {
  it('generates an ECDSA P-256 key by default, as PKCS#8 and SPKI PEM', async () => {
    const key = await generateKey();
    expect(key.privateKeyPem).toContain(pemBegin('PRIVATE KEY'));
    expect(key.publicKeyPem).toContain('-----BEGIN PUBLIC KEY-----');
  });

  it.each([
    [{ kind: 'ec', curve: 'P-384' } as const, 'ec'],
    [{ kind: 'rsa', bits: 2048 } as const, 'rsa'],
  ])('generates %o keys', async (spec, type) => {
    const key = await generateKey(spec);
    const leafCa = await createCertificateAuthority({ commonName: 'Key Test CA', key });
    expect(new X509Certificate(leafCa.certificatePem).publicKey.asymmetricKeyType).toBe(type);
  });
});

describe('createCertificateAuthority', () => {
  it('creates a self-signed root CA with keyCertSign and an empty chain', async () => {
    const root = await createCertificateAuthority({ commonName: 'Portcullis Test Root' });
    const cert = new X509Certificate(root.certificatePem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=Portcullis Test Root');
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(root.chainPem).toBe('');
    const ku = new x509.X509Certificate(root.certificatePem).getExtension(x509.KeyUsagesExtension);
    expect(ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) !== 0).toBe(true);
  });

  it('creates an intermediate signed by its issuer, and chains the intermediates above it', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root' });
    const mid = await createCertificateAuthority({ commonName: 'Mid', issuer: root, pathLength: 1 });
    const low = await createCertificateAuthority({ commonName: 'Low', issuer: mid });
    const midCert = new X509Certificate(mid.certificatePem);
    expect(midCert.checkIssued(new X509Certificate(root.certificatePem))).toBe(true);
    expect(midCert.verify(new X509Certificate(root.certificatePem).publicKey)).toBe(true);
    expect(mid.chainPem).toBe('');
    expect(low.chainPem.trim()).toBe(mid.certificatePem.trim());
  });
});

describe('issueCertificate', () => {
  it('issues a server certificate with the requested names, usage and serial format', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root' });
    const key = await generateKey();
    const issued = await issueCertificate(root, {
      publicKeyPem: key.publicKeyPem,
      commonName: 'api.example.com',
      dns: ['api.example.com', '*.api.example.com'],
      ip: ['127.0.0.1'],
      uri: ['spiffe://portcullis/gateway'],
      usage: 'server',
      validityDays: 10,
    });
    const cert = new X509Certificate(issued.certificatePem);
    expect(issued.serial).toMatch(/^[1-7][0-9a-f]{31}$/);
    expect(normaliseSerial(cert.serialNumber)).toBe(issued.serial);
    expect(cert.subjectAltName).toBe(
      'DNS:api.example.com, DNS:*.api.example.com, IP Address:127.0.0.1, URI:spiffe://portcullis/gateway',
    );
    expect(cert.ca).toBe(false);
    expect(cert.verify(new X509Certificate(root.certificatePem).publicKey)).toBe(true);
    const eku = new x509.X509Certificate(issued.certificatePem).getExtension(x509.ExtendedKeyUsageExtension);
    expect(eku?.usages).toEqual([x509.ExtendedKeyUsage.serverAuth]);
    const lifetimeDays = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    expect(lifetimeDays).toBeGreaterThan(9.9);
    expect(lifetimeDays).toBeLessThan(10.1);
    expect(issued.chainPem).toBe('');
  });

  it('takes only the public key from a CSR and returns the intermediate as the chain', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root' });
    const sub = await createCertificateAuthority({ commonName: 'Issuing', issuer: root });
    const key = await generateKey({ kind: 'ec', curve: 'P-384' });
    const csrPem = await createCsr(key, { commonName: 'ignored.example', dns: ['ignored.example'] });
    const issued = await issueCertificate(sub, {
      csrPem,
      commonName: 'client-a',
      uri: ['spiffe://portcullis/client-a'],
      usage: 'client',
      serial: '0A:BC:DE',
    });
    const cert = new X509Certificate(issued.certificatePem);
    expect(cert.subject).toBe('CN=client-a');
    expect(cert.subjectAltName).toBe('URI:spiffe://portcullis/client-a');
    expect(issued.serial).toBe('abcde');
    expect(normaliseSerial(cert.serialNumber)).toBe('abcde');
    expect(cert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(key.publicKeyPem);
    expect(issued.chainPem.trim()).toBe(sub.certificatePem.trim());
  });

  it('refuses a CSR whose signature does not verify', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root' });
    const csrPem = await createCsr(await generateKey(), { commonName: 'x' });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5]! ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(
      issueCertificate(root, { csrPem: tampered, commonName: 'x', usage: 'server' }),
    ).rejects.toThrow(CertificateValidationError);
  });

  it('refuses a request with neither public key nor CSR', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root' });
    await expect(issueCertificate(root, { commonName: 'x', usage: 'server' })).rejects.toMatchObject({
      name: 'CertificateValidationError',
      code: 'csr-invalid',
    });
  });
});

describe('createCsr', () => {
  it('creates a request whose names and key read back', async () => {
    const key = await generateKey({ kind: 'rsa', bits: 2048 });
    const csr = await readCsr(
      await createCsr(key, { commonName: 'a.example', dns: ['a.example', 'b.example'] }),
    );
    expect(csr.subject).toBe('CN=a.example');
    expect(csr.dns).toEqual(['a.example', 'b.example']);
    expect(csr.publicKeyPem).toBe(key.publicKeyPem);
  });
});

describe('createCrl', () => {
  it('lists each revoked serial once, with its reason, signed by the CA', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root' });
    const revokedAt = new Date('2026-01-02T03:04:05Z');
    const pem = await createCrl(root, [
      { serial: 'AB:CD:EF', revokedAt, reason: 'KEY_COMPROMISE' },
      { serial: '0abcdef', revokedAt },
      { serial: '123456', revokedAt, reason: 'SUPERSEDED' },
    ]);
    expect(pem).toMatch(/^-----BEGIN X509 CRL-----\n/);
    const crl = new x509.X509Crl(pem);
    expect(await crl.verify({ publicKey: new x509.X509Certificate(root.certificatePem) })).toBe(true);
    expect(crl.entries.map((e) => normaliseSerial(e.serialNumber))).toEqual(['abcdef', '123456']);
    expect(crl.entries.map((e) => e.reason)).toEqual([
      x509.X509CrlReason.keyCompromise,
      x509.X509CrlReason.superseded,
    ]);
    expect(crl.entries[0]?.revocationDate.toISOString()).toBe(revokedAt.toISOString());
    expect(crl.nextUpdate!.getTime()).toBeGreaterThan(crl.thisUpdate.getTime());
  });

  it('refuses an unknown revocation reason', async () => {
    const root = await createCertificateAuthority({ commonName: 'Root' });
    await expect(
      createCrl(root, [{ serial: '01', revokedAt: new Date(), reason: 'BORED' }]),
    ).rejects.toMatchObject({
      code: 'name-invalid',
    });
  });
});
