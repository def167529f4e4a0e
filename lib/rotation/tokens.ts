import { createHash } from 'node:crypto';

/** The steps that write something; each gets its own token so they never collide. */
export const TokenStep = {
  Key: 'key',
  Issue: 'issue',
  Issued: 'issued',
  Bundle: 'bundle',
  Placeholder: 'placeholder',
  Allowlist: 'allowlist',
  Backoff: 'backoff',
} as const;
export type TokenStep = (typeof TokenStep)[keyof typeof TokenStep];

/**
 * A deterministic idempotency token for one write of one execution: the same (execution,
 * subject, step) always gives the same token, so a re-run after a timeout reuses the secret
 * version (Secrets Manager `ClientRequestToken`) or the certificate (PCA `IdempotencyToken`)
 * instead of creating a second one.
 *
 * UUID-shaped (36 characters, version nibble 8 for "custom"): inside Secrets Manager's 32–64 and
 * within PCA's 36-character limit.
 *
 * @example deriveToken('exec-1', 'api', 'bundle') // '3f0c…-…'
 */
export function deriveToken(execution: string, subject: string, step: TokenStep): string {
  // NUL separators keep ('a', 'bc') and ('ab', 'c') apart.
  const hex = createHash('sha256').update(`portcullis\0${execution}\0${subject}\0${step}`).digest('hex');
  const variant = ((Number.parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The token subject of one certificate of one fleet. Execution names are unique only per state
 * machine, and fleets may share a CA whose idempotency tokens know nothing of fleets: with the
 * certificate name alone, two fleets' executions of the same name would be handed one
 * certificate.
 */
export function certificateTokenSubject(fleet: string, secretId: string, name: string): string {
  return JSON.stringify([fleet, secretId, name]);
}
