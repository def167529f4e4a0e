/**
 * Secret names of a fleet, the same on AWS and locally: everything under `portcullis/<fleet>/`,
 * the prefix the deployment's IAM policies grant (see `serverless.yml`).
 */
import { CertificateNotReady, ValidationError } from '../../lib/errors.ts';
import type { CertificateAuthority, IssuedCertificate } from '../../lib/ports.ts';

const FLEET = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Throws a `ValidationError` unless `fleet` is a fleet name (a lower-case DNS label). */
export function checkFleetName(fleet: string): string {
  if (!FLEET.test(fleet)) {
    throw new ValidationError(`fleet name must be a lower-case DNS label, got ${JSON.stringify(fleet)}`, {
      path: 'fleet',
    });
  }
  return fleet;
}

/** The conventional secret ids of a fleet. */
export function fleetSecretIds(fleet: string) {
  const prefix = `portcullis/${checkFleetName(fleet)}`;
  return {
    prefix,
    fleetConfig: `${prefix}/fleet-config`,
    nudgeKey: `${prefix}/nudge-key`,
    allowlist: `${prefix}/allowlist`,
    trust: `${prefix}/trust`,
    certificate: (name: string) => `${prefix}/cert/${name}`,
  };
}

/**
 * Polls `authority.get` until the certificate is issued (`CertificateNotReady` means "not yet"),
 * backing off from 100 ms to 2 s, for at most `timeoutMs`.
 */
export async function waitIssued(
  authority: CertificateAuthority,
  certificateId: string,
  timeoutMs = 60_000,
): Promise<IssuedCertificate> {
  const deadline = Date.now() + timeoutMs;
  let delay = 100;
  for (let attempt = 1; attempt <= 1000; attempt++) {
    try {
      return await authority.get(certificateId);
    } catch (error) {
      if (!(error instanceof CertificateNotReady) || Date.now() + delay > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(2000, delay * 2);
  }
  throw new CertificateNotReady(`certificate ${certificateId} still not issued`);
}
