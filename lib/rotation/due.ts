const DAY_MS = 86_400_000;

/** What the plan knows about the certificate currently serving (`AWSCURRENT`). */
export interface CurrentCertificate {
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * `invalid-current`: `AWSCURRENT` holds no usable bundle (unparsable, its key is not the
 * leaf's, its serial is not the leaf's, or the leaf no longer covers the spec's names): the
 * schedule repairs it instead of waiting for a renewal time it cannot know.
 */
export type DueReason = 'missing' | 'invalid-current' | 'forced' | 'expired' | 'due' | 'not-due';

export interface RenewalDecision {
  due: boolean;
  reason: DueReason;
  /** When renewal becomes due (absent when there is no readable current certificate). */
  renewAt?: Date;
}

/**
 * When a certificate should be renewed: `renewBeforeDays` before `notAfter` when set, otherwise
 * at two thirds of its lifetime (the usual ACME/cert-manager habit: a third of the lifetime
 * left to retry a failed renewal).
 */
export function renewalTime(
  current: Pick<CurrentCertificate, 'notBefore' | 'notAfter'>,
  renewBeforeDays?: number,
): Date {
  const notBefore = current.notBefore.getTime();
  const notAfter = current.notAfter.getTime();
  if (renewBeforeDays !== undefined) return new Date(notAfter - renewBeforeDays * DAY_MS);
  return new Date(notBefore + Math.floor(((notAfter - notBefore) * 2) / 3));
}

/**
 * Decides whether one certificate is due. `current` is `undefined` when the secret or its
 * `AWSCURRENT` version does not exist, `'unreadable'` when it holds no usable certificate bundle.
 */
export function renewalDecision(
  current: CurrentCertificate | undefined | 'unreadable',
  now: Date,
  options: { force?: boolean; renewBeforeDays?: number } = {},
): RenewalDecision {
  if (current === undefined) return { due: true, reason: 'missing' };
  if (current === 'unreadable') return { due: true, reason: 'invalid-current' };
  const renewAt = renewalTime(current, options.renewBeforeDays);
  if (options.force === true) return { due: true, reason: 'forced', renewAt };
  if (now.getTime() >= current.notAfter.getTime()) return { due: true, reason: 'expired', renewAt };
  if (now.getTime() >= renewAt.getTime()) return { due: true, reason: 'due', renewAt };
  return { due: false, reason: 'not-due', renewAt };
}
