/**
 * The checks a newly issued certificate passes before it becomes a bundle anyone can stage, in
 * one place for the rotation workflow (StageCertificate) and a fleet's first issuance (`init`):
 * the leaf matches the key it was issued for, it chains to the fleet's trust bundle, and it
 * covers every DNS name the spec asks for. The sidecar checks the same again before it applies.
 */
import { CertificateValidationError } from '../pki/errors.ts';
import { certificateInfo, coversHostnames, keyMatchesCertificate, verifyChain } from '../pki/validate.ts';
import type { IssuedCertificate } from '../ports.ts';
import { CertificateSecret } from '../secrets/formats.ts';

export interface IssuedBundleInput {
  /** The CA's id for it (the certificate ARN on AWS), named in errors and kept in the bundle. */
  certificateId: string;
  issued: IssuedCertificate;
  /** Secret material: never logged. */
  privateKeyPem: string;
  /** The anchors the fleet trusts (PEM), which the chain must reach. */
  trustBundlePem: string;
  /** Names the certificate must cover (`spec.dns`). */
  dns: readonly string[];
  at: Date;
}

/**
 * The bundle document for an issued certificate, or the check it failed.
 * @throws CertificateValidationError `key-mismatch`, `untrusted-chain`, `expired`, `not-yet-valid`,
 *   `pem-invalid` or `san-mismatch`.
 * @example
 * const bundle = checkedIssuedBundle({ certificateId, issued, privateKeyPem, trustBundlePem, dns: spec.dns, at: new Date() });
 */
export function checkedIssuedBundle(input: IssuedBundleInput): CertificateSecret {
  const { certificateId, issued } = input;
  if (!keyMatchesCertificate(input.privateKeyPem, issued.certificatePem)) {
    throw new CertificateValidationError(
      'key-mismatch',
      `certificate ${certificateId} does not match the issuing key`,
    );
  }
  const chain = verifyChain(issued.certificatePem, issued.chainPem, input.trustBundlePem, { at: input.at });
  if (chain.kind === 'invalid') {
    throw new CertificateValidationError(chain.code, `certificate ${certificateId}: ${chain.reason}`);
  }
  if (input.dns.length > 0) {
    const cover = coversHostnames(issued.certificatePem, [...input.dns]);
    if (!cover.covered) {
      throw new CertificateValidationError(
        'san-mismatch',
        `certificate ${certificateId} does not cover ${cover.missing.join(', ')}`,
      );
    }
  }
  const info = certificateInfo(issued.certificatePem);
  return CertificateSecret.parse({
    certificatePem: issued.certificatePem,
    chainPem: issued.chainPem,
    privateKeyPem: input.privateKeyPem,
    serial: info.serial,
    notAfter: info.notAfter.toISOString(),
    certificateId,
  });
}
