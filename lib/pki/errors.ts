/**
 * Errors of the PKI core. Their `name` is a contract (Step Functions match on it); the
 * `code` says which check failed, for status, logs and metrics.
 */
import { ValidationError } from '../errors.ts';

/**
 * Why a certificate, key, bundle, CSR or CRL was refused. The serving-bundle codes are the
 * sidecar's pre-apply checks; the others come from trust bundles, CRLs and CSRs.
 */
export const ValidationCode = {
  PemInvalid: 'pem-invalid',
  KeyMismatch: 'key-mismatch',
  Expired: 'expired',
  NotYetValid: 'not-yet-valid',
  UntrustedChain: 'untrusted-chain',
  SanMismatch: 'san-mismatch',
  WeakKey: 'weak-key',
  WrongUsage: 'wrong-usage',
  NotCa: 'not-ca',
  PrivateKeyPresent: 'private-key-present',
  UntrustedCrl: 'untrusted-crl',
  StaleCrl: 'stale-crl',
  CrlMissing: 'crl-missing',
  CsrInvalid: 'csr-invalid',
  NameInvalid: 'name-invalid',
} as const;
export type ValidationCode = (typeof ValidationCode)[keyof typeof ValidationCode];

/** A certificate (or key, bundle, CSR, CRL) failed a check; `code` names the check. Not retryable. */
export class CertificateValidationError extends ValidationError {
  readonly code: ValidationCode;
  constructor(code: ValidationCode, message: string, options?: ErrorOptions & { path?: string }) {
    super(message, options);
    this.name = 'CertificateValidationError';
    this.code = code;
  }
}
