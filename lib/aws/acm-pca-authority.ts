/**
 * `CertificateAuthority` over AWS Private CA (ACM PCA, SDK v3).
 *
 * Issuing is asynchronous on PCA: `IssueCertificate` returns the certificate ARN at once and
 * `GetCertificate` answers `RequestInProgressException` until the certificate is signed, which
 * this adapter reports as `CertificateNotReady` so the state machine polls with backoff.
 */
import { createHash, createPublicKey } from 'node:crypto';
import {
  ACMPCAClient,
  type ApiPassthrough,
  type ExtendedKeyUsageType,
  type GeneralName,
  GetCertificateAuthorityCertificateCommand,
  GetCertificateCommand,
  IssueCertificateCommand,
  RevokeCertificateCommand,
  type SigningAlgorithm,
} from '@aws-sdk/client-acm-pca';
import { CertificateNotReady, type PortcullisError, Throttled, ValidationError } from '../errors.ts';
import { readCsr } from '../pki/issue.ts';
import { describeKey } from '../pki/keys.ts';
import { normaliseSerial } from '../pki/serial.ts';
import { isSelfSigned } from '../pki/validate.ts';
import type { CertificateAuthority, IssuedCertificate, IssueRequest, RevocationReason } from '../ports.ts';
import { awsClientConfig } from './client-config.ts';
import { AwsServiceError, isAwsErrorCode, mapAwsError } from './errors.ts';

let sharedClient: ACMPCAClient | undefined;

/** The module-scope client used when none is injected (created on first use, reused across invocations). */
export function defaultAcmPcaClient(): ACMPCAClient {
  // Bounded network waits: a missing route fails fast and typed (client-config.ts).
  sharedClient ??= new ACMPCAClient(awsClientConfig());
  return sharedClient;
}

/** The PCA template this project expects by default: end-entity, names and EKU from the API call. */
export const defaultTemplateArn = 'arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1';

export interface AcmPcaAuthorityOptions {
  /** Injected client (tests, other regions); defaults to {@link defaultAcmPcaClient}. */
  client?: ACMPCAClient;
  certificateAuthorityArn: string;
  /**
   * An `…APIPassthrough` template, or PCA ignores the subject and names this adapter sends.
   * With `EndEntityCertificate_APIPassthrough/V1` the template's own extended key usage
   * (serverAuth + clientAuth) wins over the one sent per usage — PCA gives template values
   * priority; use `BlankEndEntityCertificate_APIPassthrough/V1` for certificates restricted to
   * one usage. Default {@link defaultTemplateArn}.
   */
  templateArn?: string;
  /** Must match the CA key's family (ECDSA or RSA). Default `SHA256WITHECDSA`. */
  signingAlgorithm?: SigningAlgorithm | `${SigningAlgorithm}`;
}

/** PCA's limit on `IdempotencyToken` length. */
const PCA_TOKEN_LENGTH = 36;

/**
 * The `IdempotencyToken` sent to PCA for one of our idempotency tokens.
 *
 * Ours are built from an execution name and a certificate name and can be long or contain
 * characters PCA refuses; PCA takes at most 36 characters. The SHA-256 of our token, as the
 * first 36 hex digits (144 bits), is deterministic, fits every PCA pattern and keeps distinct
 * tokens distinct in practice. PCA remembers a token only for a few minutes, so the workflow
 * still persists the returned certificate ARN and never re-issues once it has one.
 */
export function pcaIdempotencyToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex').slice(0, PCA_TOKEN_LENGTH);
}

/**
 * A serial in the form PCA's `RevokeCertificate` documents: the hex that `openssl x509 -text`
 * prints, byte pairs joined by colons (`3d:29:5f:…`). Input is any presentation
 * {@link normaliseSerial} accepts; odd-length hex gets its leading zero back.
 * @throws ValidationError when `serial` is not a hex serial.
 */
export function pcaSerial(serial: string): string {
  const hex = normaliseSerial(serial);
  if (hex === undefined) throw new ValidationError(`not a certificate serial: '${serial.slice(0, 80)}'`);
  const even = hex.length % 2 === 1 ? `0${hex}` : hex;
  return even.match(/../g)!.join(':');
}

const usageEku: Record<IssueRequest['usage'], ExtendedKeyUsageType> = {
  server: 'SERVER_AUTH',
  client: 'CLIENT_AUTH',
};

/**
 * The `ApiPassthrough` for a request: subject CN, SANs and the extended key usage of the
 * requested usage. Key usage is sent too (digital signature, plus key encipherment for RSA
 * keys, which TLS 1.2 RSA key transport needs) because blank templates take it only from here.
 */
export function apiPassthroughFor(request: IssueRequest, keyKind: 'ec' | 'rsa' | 'other'): ApiPassthrough {
  const names: GeneralName[] = [
    ...request.sans.dns.map((DnsName) => ({ DnsName })),
    ...(request.sans.uri ?? []).map((UniformResourceIdentifier) => ({ UniformResourceIdentifier })),
  ];
  return {
    Subject: { CommonName: request.commonName },
    Extensions: {
      ...(names.length > 0 ? { SubjectAlternativeNames: names } : {}),
      ExtendedKeyUsage: [{ ExtendedKeyUsageType: usageEku[request.usage] }],
      KeyUsage: { DigitalSignature: true, ...(keyKind === 'rsa' ? { KeyEncipherment: true } : {}) },
    },
  };
}

/**
 * AWS Private CA adapter for the `CertificateAuthority` port.
 *
 * Commands: `IssueCertificate`, `GetCertificate`, `RevokeCertificate`,
 * `GetCertificateAuthorityCertificate` on the one configured CA.
 *
 * Error mapping (besides the generic table of `mapAwsError`):
 * | PCA | Portcullis |
 * | --- | --- |
 * | `RequestInProgressException` (GetCertificate) | `CertificateNotReady` (poll again) |
 * | GetCertificate answering without a certificate | `CertificateNotReady` |
 * | `RequestAlreadyProcessedException` (RevokeCertificate) | success: already revoked |
 * | `ThrottlingException`, `TooManyRequestsException`, `RateExceeded` | `Throttled` |
 * | `ResourceNotFoundException` | `NotFoundError` |
 * | `MalformedCSRException`, `InvalidArgsException`, `InvalidRequestException`, `InvalidStateException` | `ValidationError` |
 * | `LimitExceededException` | `AwsServiceError` (not retried) |
 *
 * `LimitExceededException` is deliberately not `Throttled`: PCA reports request *rates* as
 * `ThrottlingException`; `LimitExceededException` means a count quota (for example the
 * certificates a CA may issue), which backing off for minutes does not cure. It fails the
 * rotation at once, with the quota named in the message, instead of after a retry ladder.
 *
 * @example
 * const ca = new AcmPcaAuthority({ certificateAuthorityArn: process.env.CA_ARN! });
 * const { certificateId } = await ca.issue(request);
 * const { certificatePem, chainPem } = await ca.get(certificateId); // CertificateNotReady → poll
 */
export class AcmPcaAuthority implements CertificateAuthority {
  readonly #client: ACMPCAClient;
  readonly #caArn: string;
  readonly #templateArn: string;
  readonly #signingAlgorithm: SigningAlgorithm;

  constructor(options: AcmPcaAuthorityOptions) {
    if (!options.certificateAuthorityArn) throw new ValidationError('certificateAuthorityArn is required');
    this.#client = options.client ?? defaultAcmPcaClient();
    this.#caArn = options.certificateAuthorityArn;
    this.#templateArn = options.templateArn ?? defaultTemplateArn;
    this.#signingAlgorithm = (options.signingAlgorithm ?? 'SHA256WITHECDSA') as SigningAlgorithm;
  }

  async issue(request: IssueRequest): Promise<{ certificateId: string }> {
    if (!Number.isInteger(request.validityDays) || request.validityDays < 1) {
      throw new ValidationError(`validityDays must be a positive integer, got ${request.validityDays}`, {
        path: 'validityDays',
      });
    }
    if (!request.idempotencyToken) {
      throw new ValidationError('idempotencyToken is required', { path: 'idempotencyToken' });
    }
    // Reading the CSR here checks its signature before PCA sees it and tells RSA from EC for
    // the key usage; PCA would refuse a broken CSR too, but later and with less to go on.
    let csr: Awaited<ReturnType<typeof readCsr>>;
    try {
      csr = await readCsr(request.csrPem);
    } catch (error) {
      // Re-thrown under the port's name: Step Functions matches `ValidationError`, not the
      // PKI module's subclass name.
      throw new ValidationError(
        `the certificate request for '${request.commonName}' was refused: ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error, path: 'csrPem' },
      );
    }
    const key = describeKey(createPublicKey(csr.publicKeyPem));
    const keyKind = key.kind === 'ec' || key.kind === 'rsa' ? key.kind : 'other';
    try {
      const output = await this.#client.send(
        new IssueCertificateCommand({
          CertificateAuthorityArn: this.#caArn,
          Csr: Buffer.from(request.csrPem, 'utf8'),
          SigningAlgorithm: this.#signingAlgorithm,
          TemplateArn: this.#templateArn,
          Validity: { Type: 'DAYS', Value: request.validityDays },
          IdempotencyToken: pcaIdempotencyToken(request.idempotencyToken),
          ApiPassthrough: apiPassthroughFor(request, keyKind),
        }),
      );
      if (!output.CertificateArn) {
        throw new AwsServiceError('ACMPCA IssueCertificate returned no CertificateArn', {
          code: 'EmptyResponse',
        });
      }
      return { certificateId: output.CertificateArn };
    } catch (error) {
      throw this.#map(error, 'IssueCertificate', this.#caArn);
    }
  }

  async get(certificateId: string): Promise<IssuedCertificate> {
    try {
      const output = await this.#client.send(
        new GetCertificateCommand({ CertificateAuthorityArn: this.#caArn, CertificateArn: certificateId }),
      );
      if (!output.Certificate) {
        // Seen as a transient state right after issuance: treat it like "in progress".
        throw new CertificateNotReady(
          `ACMPCA GetCertificate returned no certificate yet for '${certificateId}'`,
        );
      }
      return {
        certificatePem: withNewline(output.Certificate),
        chainPem: chainBelowRoot(output.CertificateChain ?? ''),
      };
    } catch (error) {
      throw this.#map(error, 'GetCertificate', certificateId);
    }
  }

  async revoke(certificateId: string, serial: string, reason: RevocationReason): Promise<void> {
    const certificateSerial = pcaSerial(serial);
    try {
      await this.#client.send(
        new RevokeCertificateCommand({
          CertificateAuthorityArn: this.#caArn,
          CertificateSerial: certificateSerial,
          RevocationReason: reason,
        }),
      );
    } catch (error) {
      // PCA answers a second revocation of the same certificate with this; the port promises
      // idempotent revocation, so it is the success we wanted.
      if (isAwsErrorCode(error, 'RequestAlreadyProcessedException')) return;
      throw this.#map(error, 'RevokeCertificate', certificateId);
    }
  }

  async caCertificates(): Promise<string> {
    try {
      const output = await this.#client.send(
        new GetCertificateAuthorityCertificateCommand({ CertificateAuthorityArn: this.#caArn }),
      );
      if (!output.Certificate) {
        throw new AwsServiceError(`ACMPCA GetCertificateAuthorityCertificate returned no certificate`, {
          code: 'EmptyResponse',
        });
      }
      // PCA returns the CA's own certificate apart from the chain above it (absent for a root);
      // the port wants the whole chain, trust anchor last, which is PCA's chain order.
      return withNewline(output.Certificate) + withNewline(output.CertificateChain);
    } catch (error) {
      throw this.#map(error, 'GetCertificateAuthorityCertificate', this.#caArn);
    }
  }

  #map(error: unknown, operation: string, resource: string): PortcullisError {
    return mapAwsError(error, {
      service: 'ACMPCA',
      operation,
      resource,
      overrides: {
        RequestInProgressException: (message, cause) => new CertificateNotReady(message, { cause }),
        RateExceeded: (message, cause) => new Throttled(message, { cause }),
        LimitExceededException: (message, cause) =>
          new AwsServiceError(message, { cause, code: 'LimitExceededException' }),
      },
    });
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * PCA's `CertificateChain` runs from the issuing CA up to and including the root; the port's
 * `chainPem` stops below the root (clients bring their own trust anchor, and a served root is
 * only dead weight in every handshake). Drops self-signed certificates, keeps the order.
 */
export function chainBelowRoot(chainPem: string): string {
  const blocks = chainPem.match(PEM_CERTIFICATE) ?? [];
  return blocks
    .filter((block) => !isSelfSigned(block))
    .map((block) => `${block}\n`)
    .join('');
}

function withNewline(pem: string | undefined): string {
  if (!pem) return '';
  const trimmed = pem.trim();
  return trimmed === '' ? '' : `${trimmed}\n`;
}
