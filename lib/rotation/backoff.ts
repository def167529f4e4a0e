/**
 * Back-off for a certificate whose rotations keep failing, as cert-manager does it: after the
 * n-th failure in a row the schedule leaves the certificate alone for 1 h × 2^(n-1), at most
 * 32 h, instead of issuing and revoking a certificate every hour. The record lives where the
 * lease does — in the certificate's secret, as a small version labelled `PORTCULLIS_BACKOFF`
 * (no key material) that each failed rotation's rollback writes — so no other store is
 * needed and a new `AWSCURRENT` (a rotation that succeeded, or one by hand) ends it.
 */
import { z } from 'zod';
import { unlessNotFound } from '../errors.ts';
import { type SecretStore, Stage } from '../ports.ts';

export const BackoffStage = 'PORTCULLIS_BACKOFF';

export const BACKOFF_BASE_MS = 60 * 60 * 1000;
export const BACKOFF_MAX_MS = 32 * 60 * 60 * 1000;

/** The document of the `PORTCULLIS_BACKOFF` version. */
export const BackoffDocument = z.object({
  kind: z.literal('portcullis/rotation-backoff'),
  /** Failed rotations in a row (since `AWSCURRENT` last changed). */
  failures: z.number().int().min(1),
  lastFailureAt: z.iso.datetime(),
  /** The error name of the last failure (`ServedVersionMismatch`, `States.Timeout`, …). */
  lastError: z.string().max(200),
});
export type BackoffDocument = z.infer<typeof BackoffDocument>;

export interface BackoffState {
  failures: number;
  lastFailureAt: string;
  lastError: string;
  /** When the schedule tries again. */
  retryAt: string;
  /** `retryAt` is still ahead: the schedule skips the certificate (`--force` does not). */
  waiting: boolean;
}

/** 1 h, 2 h, 4 h … after the 1st, 2nd, 3rd failure; never more than 32 h. */
export function backoffDelayMs(failures: number): number {
  return Math.min(BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1), BACKOFF_MAX_MS);
}

/**
 * The back-off in force, or `undefined`. A record older than the current certificate version
 * is over: something rotated since.
 */
export function backoffState(
  record: BackoffDocument | undefined,
  currentCreatedAt: Date | undefined,
  now: Date,
): BackoffState | undefined {
  if (record === undefined) return undefined;
  const last = new Date(record.lastFailureAt);
  if (currentCreatedAt !== undefined && currentCreatedAt.getTime() > last.getTime()) return undefined;
  const retryAt = new Date(last.getTime() + backoffDelayMs(record.failures));
  return {
    failures: record.failures,
    lastFailureAt: record.lastFailureAt,
    lastError: record.lastError,
    retryAt: retryAt.toISOString(),
    waiting: now.getTime() < retryAt.getTime(),
  };
}

/** The next record after one more failure at `at`. */
export function nextBackoff(previous: BackoffState | undefined, error: string, at: Date): BackoffDocument {
  return {
    kind: 'portcullis/rotation-backoff',
    failures: (previous?.failures ?? 0) + 1,
    lastFailureAt: at.toISOString(),
    lastError: error.slice(0, 200),
  };
}

/**
 * A certificate's back-off as the store shows it now (`undefined`: none). For the plan,
 * `rotate --dry-run` and `portcullis status`.
 */
export async function readRotationBackoff(
  store: SecretStore,
  secretId: string,
  now: Date = new Date(),
): Promise<BackoffState | undefined> {
  const version = await unlessNotFound(store.get(secretId, { stage: BackoffStage }));
  if (version === undefined) return undefined;
  let record: BackoffDocument | undefined;
  try {
    const parsed = BackoffDocument.safeParse(JSON.parse(version.value));
    record = parsed.success ? parsed.data : undefined;
  } catch {
    record = undefined;
  }
  const current = await unlessNotFound(store.get(secretId, { stage: Stage.Current }));
  return backoffState(record, current?.createdAt, now);
}
