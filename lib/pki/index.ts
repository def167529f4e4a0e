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
export {
  canonicalIp,
  matchesHostname,
  normaliseHostname,
  type PresentedNames,
  uncoveredNames,
} from './names.ts';
export {
  type ParsedCertificate,
  type ParsedCrl,
  type ParsedPrivateKey,
  type ParsePemBundleOptions,
  type PemBundle,
  parsePemBundle,
  toPem,
} from './pem.ts';
export { normaliseSerial, randomSerial, sameSerial } from './serial.ts';
export {
  type CertificateInfo,
  type CertificateLike,
  type CertificateSet,
  type ChainResult,
  type CrlInfo,
  type CrlResult,
  certificateInfo,
  checkKeyPolicy,
  checkValidity,
  coversHostnames,
  defaultSkewSeconds,
  type Invalid,
  isSelfSigned,
  keyMatchesCertificate,
  type ServingBundleCode,
  type ServingBundleInput,
  type ServingBundleResult,
  subjectAltNames,
  type TrustBundleResult,
  toCertificate,
  type VerifyChainOptions,
  validateCrl,
  validateServingBundle,
  validateTrustBundle,
  verifyChain,
} from './validate.ts';
