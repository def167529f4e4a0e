/**
 * The PKI core: key generation, issuing (CAs, leaves, CSRs, CRLs) and the pure validation the
 * sidecar runs before it applies anything. `node:crypto` and `@peculiar/x509` only.
 */
export { CertificateValidationError, ValidationCode } from './errors.ts';
export {
  type CertificateAuthorityMaterial,
  type CertificateUsage,
  type CreateCertificateAuthorityOptions,
  type CreateCrlOptions,
  createCertificateAuthority,
  createCrl,
  createCsr,
  crlReason,
  defaultCrlValidityDays,
  defaultIntermediateValidityDays,
  defaultLeafValidityDays,
  defaultRootValidityDays,
  type IssueCertificateOptions,
  type IssuedCertificateMaterial,
  issueCertificate,
  type RevokedEntry,
  readCsr,
} from './issue.ts';
export {
  defaultKeySpec,
  describeKey,
  generateKey,
  importSigningKey,
  type KeyDescription,
  type KeyPair,
  type KeySpec,
  keyLabel,
  keyPairFromPrivateKey,
  type SigningKey,
} from './keys.ts';
export { normaliseSerial, randomSerial, sameSerial } from './serial.ts';
