import {
  ACMPCAClient,
  ACMPCAServiceException,
  GetCertificateAuthorityCertificateCommand,
  GetCertificateCommand,
  InvalidArgsException,
  InvalidRequestException,
  InvalidStateException,
  IssueCertificateCommand,
  LimitExceededException,
  MalformedCSRException,
  RequestAlreadyProcessedException,
  RequestFailedException,
  RequestInProgressException,
  ResourceNotFoundException,
  RevokeCertificateCommand,
} from '@aws-sdk/client-acm-pca';
import fc from 'fast-check';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AcmPcaAuthority,
  defaultTemplateArn,
  pcaIdempotencyToken,
  pcaSerial,
} from '../../lib/aws/acm-pca-authority.ts';
import {
  createCertificateAuthority,
  createCsr,
  generateKey,
  issueCertificate,
  normaliseSerial,
} from '../../lib/pki/index.ts';
import type { IssueRequest } from '../../lib/ports.ts';
import { mockAwsClient, sdkError } from '../support/aws-mock.ts';

const caArn =
  'arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/12345678-1234-1234-1234-123456789012';
const certArn = `${caArn}/certificate/3d295f5691637e577f3c192acd79d401`;

const pca = mockAwsClient(ACMPCAClient);

function genericError(name: string, status = 400): ACMPCAServiceException {
  return new ACMPCAServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    message: `${name} happened`,
    $metadata: { httpStatusCode: status },
  });
}

let ecCsr: string;
let rsaCsr: string;
const pki = { root: '', sub: '', leaf: '' };

beforeAll(async () => {
  const names = { commonName: 'api.example.internal', dns: ['api.example.internal'] };
  const ecKey = await generateKey();
  ecCsr = await createCsr(ecKey, names);
  rsaCsr = await createCsr(await generateKey({ kind: 'rsa', bits: 2048 }), names);
  // A root → issuing CA → leaf hierarchy shaped like PCA's answers.
  const root = await createCertificateAuthority({ commonName: 'Portcullis Test Root' });
  const sub = await createCertificateAuthority({ commonName: 'Portcullis Test Issuing CA', issuer: root });
  const leaf = await issueCertificate(sub, { publicKeyPem: ecKey.publicKeyPem, ...names, usage: 'server' });
  pki.root = root.certificatePem;
  pki.sub = sub.certificatePem;
  pki.leaf = leaf.certificatePem;
});

beforeEach(() => pca.reset());
afterEach(() => pca.reset());

function request(overrides: Partial<IssueRequest> = {}): IssueRequest {
  return {
    csrPem: ecCsr,
    commonName: 'api.example.internal',
    sans: { dns: ['api.example.internal', 'api'], uri: ['spiffe://example.internal/gateway'] },
    validityDays: 30,
    idempotencyToken: 'rotate-certificates-2026-11-23T16-00-00Z-exec-42/api',
    usage: 'server',
    ...overrides,
  };
}

function authority(): AcmPcaAuthority {
  return new AcmPcaAuthority({
    client: new ACMPCAClient({}),
    certificateAuthorityArn: caArn,
    templateArn: defaultTemplateArn,
    signingAlgorithm: 'SHA256WITHECDSA',
  });
}

describe('AcmPcaAuthority.issue', () => {
  it('sends the CSR, template, validity, hashed idempotency token and API passthrough names', async () => {
    pca.on(IssueCertificateCommand).resolves({ CertificateArn: certArn });

    const result = await authority().issue(request());

    expect(result).toEqual({ certificateId: certArn });
    const input = pca.commandCalls(IssueCertificateCommand)[0]!.args[0].input;
    expect(input).toEqual({
      CertificateAuthorityArn: caArn,
      Csr: Buffer.from(ecCsr, 'utf8'),
      SigningAlgorithm: 'SHA256WITHECDSA',
      TemplateArn: 'arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1',
      Validity: { Type: 'DAYS', Value: 30 },
      IdempotencyToken: pcaIdempotencyToken('rotate-certificates-2026-11-23T16-00-00Z-exec-42/api'),
      ApiPassthrough: {
        Subject: { CommonName: 'api.example.internal' },
        Extensions: {
          SubjectAlternativeNames: [
            { DnsName: 'api.example.internal' },
            { DnsName: 'api' },
            { UniformResourceIdentifier: 'spiffe://example.internal/gateway' },
          ],
          ExtendedKeyUsage: [{ ExtendedKeyUsageType: 'SERVER_AUTH' }],
          KeyUsage: { DigitalSignature: true },
        },
      },
    });
  });

  it('asks for clientAuth and key encipherment for an RSA client certificate', async () => {
    pca.on(IssueCertificateCommand).resolves({ CertificateArn: certArn });

    await authority().issue(
      request({ csrPem: rsaCsr, usage: 'client', sans: { dns: ['client.example.internal'] } }),
    );

    const input = pca.commandCalls(IssueCertificateCommand)[0]!.args[0].input;
    expect(input.ApiPassthrough?.Extensions).toEqual({
      SubjectAlternativeNames: [{ DnsName: 'client.example.internal' }],
      ExtendedKeyUsage: [{ ExtendedKeyUsageType: 'CLIENT_AUTH' }],
      KeyUsage: { DigitalSignature: true, KeyEncipherment: true },
    });
  });

  it('refuses a CSR that is not a signed PKCS#10 request before calling PCA', async () => {
    pca.on(IssueCertificateCommand).resolves({ CertificateArn: certArn });
    // Flip the last byte of the DER, which sits in the signature: still parses, no longer verifies.
    const der = Buffer.from(ecCsr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1]! ^= 0xff;
    const broken = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;

    await expect(authority().issue(request({ csrPem: broken }))).rejects.toMatchObject({
      name: 'ValidationError',
    });
    await expect(authority().issue(request({ csrPem: 'not a csr' }))).rejects.toMatchObject({
      name: 'ValidationError',
    });
    expect(pca.commandCalls(IssueCertificateCommand)).toHaveLength(0);
  });

  it('refuses a validity that is not a positive whole number of days', async () => {
    await expect(authority().issue(request({ validityDays: 0 }))).rejects.toMatchObject({
      name: 'ValidationError',
      path: 'validityDays',
    });
    await expect(authority().issue(request({ validityDays: 1.5 }))).rejects.toMatchObject({
      name: 'ValidationError',
    });
    expect(pca.commandCalls(IssueCertificateCommand)).toHaveLength(0);
  });

  it.each([
    ['MalformedCSRException', () => sdkError(MalformedCSRException), 'ValidationError'],
    ['InvalidArgsException', () => sdkError(InvalidArgsException), 'ValidationError'],
    ['InvalidRequestException', () => sdkError(InvalidRequestException), 'ValidationError'],
    ['InvalidStateException', () => sdkError(InvalidStateException), 'ValidationError'],
    ['ResourceNotFoundException', () => sdkError(ResourceNotFoundException), 'NotFoundError'],
    ['ThrottlingException', () => genericError('ThrottlingException'), 'Throttled'],
    ['TooManyRequestsException', () => genericError('TooManyRequestsException'), 'Throttled'],
    ['RateExceeded', () => genericError('RateExceeded'), 'Throttled'],
    ['LimitExceededException', () => sdkError(LimitExceededException), 'AwsServiceError'],
    ['AccessDeniedException', () => genericError('AccessDeniedException', 403), 'AccessDenied'],
    ['InternalFailure', () => genericError('InternalFailure', 500), 'ServiceUnavailable'],
  ])('maps %s from IssueCertificate to %s', async (_code, make, expected) => {
    pca.on(IssueCertificateCommand).rejects(make());

    const error = await authority()
      .issue(request())
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ name: expected });
    expect((error as Error).message).toContain('ACMPCA IssueCertificate');
    expect((error as Error).cause).toBeInstanceOf(ACMPCAServiceException);
  });
});

describe('AcmPcaAuthority.get', () => {
  it('returns the certificate and the chain below the root that PCA includes', async () => {
    pca
      .on(GetCertificateCommand)
      .resolves({ Certificate: pki.leaf.trimEnd(), CertificateChain: `${pki.sub}${pki.root}\n` });

    const issued = await authority().get(certArn);

    expect(issued).toEqual({ certificatePem: pki.leaf, chainPem: pki.sub });
    expect(pca.commandCalls(GetCertificateCommand)[0]!.args[0].input).toEqual({
      CertificateAuthorityArn: caArn,
      CertificateArn: certArn,
    });
  });

  it('returns an empty chain for a certificate issued by the root itself', async () => {
    pca.on(GetCertificateCommand).resolves({ Certificate: pki.leaf, CertificateChain: pki.root });

    await expect(authority().get(certArn)).resolves.toEqual({ certificatePem: pki.leaf, chainPem: '' });
  });

  it('reports an answer without a certificate as CertificateNotReady', async () => {
    pca.on(GetCertificateCommand).resolves({});

    await expect(authority().get(certArn)).rejects.toMatchObject({ name: 'CertificateNotReady' });
  });

  it('reports a certificate still being issued as CertificateNotReady', async () => {
    pca.on(GetCertificateCommand).rejects(sdkError(RequestInProgressException, 'in progress'));

    await expect(authority().get(certArn)).rejects.toMatchObject({ name: 'CertificateNotReady' });
  });

  it.each([
    ['ResourceNotFoundException', () => sdkError(ResourceNotFoundException), 'NotFoundError'],
    ['RequestFailedException', () => sdkError(RequestFailedException), 'AwsServiceError'],
    ['ThrottlingException', () => genericError('ThrottlingException'), 'Throttled'],
  ])('maps %s from GetCertificate to %s', async (_code, make, expected) => {
    pca.on(GetCertificateCommand).rejects(make());

    await expect(authority().get(certArn)).rejects.toMatchObject({ name: expected });
  });
});

describe('AcmPcaAuthority.revoke', () => {
  it('sends the serial as colon-separated hex pairs with the reason', async () => {
    pca.on(RevokeCertificateCommand).resolves({});

    await authority().revoke(certArn, '3d295f5691637e577f3c192acd79d401', 'SUPERSEDED');

    expect(pca.commandCalls(RevokeCertificateCommand)[0]!.args[0].input).toEqual({
      CertificateAuthorityArn: caArn,
      CertificateSerial: '3d:29:5f:56:91:63:7e:57:7f:3c:19:2a:cd:79:d4:01',
      RevocationReason: 'SUPERSEDED',
    });
  });

  it('treats an already revoked certificate as revoked', async () => {
    pca.on(RevokeCertificateCommand).rejects(sdkError(RequestAlreadyProcessedException, 'already revoked'));

    await expect(authority().revoke(certArn, 'abc', 'KEY_COMPROMISE')).resolves.toBeUndefined();
  });

  it('refuses a serial that is not hexadecimal without calling PCA', async () => {
    await expect(authority().revoke(certArn, 'not-a-serial', 'SUPERSEDED')).rejects.toMatchObject({
      name: 'ValidationError',
    });
    expect(pca.commandCalls(RevokeCertificateCommand)).toHaveLength(0);
  });

  it('maps a missing certificate to NotFoundError', async () => {
    pca.on(RevokeCertificateCommand).rejects(sdkError(ResourceNotFoundException));

    await expect(authority().revoke(certArn, 'abc', 'SUPERSEDED')).rejects.toMatchObject({
      name: 'NotFoundError',
    });
  });
});

describe('AcmPcaAuthority.caCertificates', () => {
  it('returns the CA certificate followed by the chain above it', async () => {
    pca
      .on(GetCertificateAuthorityCertificateCommand)
      .resolves({ Certificate: 'SUB', CertificateChain: 'ROOT' });

    await expect(authority().caCertificates()).resolves.toBe('SUB\nROOT\n');
    expect(pca.commandCalls(GetCertificateAuthorityCertificateCommand)[0]!.args[0].input).toEqual({
      CertificateAuthorityArn: caArn,
    });
  });

  it('returns just the certificate of a root CA, which has no chain', async () => {
    pca.on(GetCertificateAuthorityCertificateCommand).resolves({ Certificate: 'ROOT\n' });

    await expect(authority().caCertificates()).resolves.toBe('ROOT\n');
  });
});

describe('pcaIdempotencyToken', () => {
  it('is deterministic, at most 36 characters and only word characters', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 300 }), (token) => {
        const derived = pcaIdempotencyToken(token);
        expect(derived).toBe(pcaIdempotencyToken(token));
        expect(derived).toMatch(/^[0-9a-f]{36}$/);
      }),
    );
  });

  it('gives different tokens for different executions of the same certificate', () => {
    expect(pcaIdempotencyToken('exec-1/api')).not.toBe(pcaIdempotencyToken('exec-2/api'));
  });
});

describe('pcaSerial', () => {
  it.each([
    ['3d295f5691637e577f3c192acd79d401', '3d:29:5f:56:91:63:7e:57:7f:3c:19:2a:cd:79:d4:01'],
    ['ABC', '0a:bc'],
    ['00:1F:A0', '1f:a0'],
    ['0', '00'],
  ])('turns %s into %s', (input, expected) => {
    expect(pcaSerial(input)).toBe(expected);
  });

  it('round-trips through normaliseSerial for any hex serial', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 20 }), (bytes) => {
        const hex = Buffer.from(bytes).toString('hex');
        expect(normaliseSerial(pcaSerial(hex))).toBe(normaliseSerial(hex));
      }),
    );
  });
});
