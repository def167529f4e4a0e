import type { TaskStatus } from '../ports.ts';

/** A fleet secret and the version every task should serve (its `AWSCURRENT`). */
export type DesiredSecret =
  | {
      kind: 'certificate';
      name: string;
      secretId: string;
      versionId: string;
      /**
       * The `AWSPENDING` version of a rotation in flight (its lease is live), if any. A task
       * already serving it was nudged there by the rotation, whose UpdateTasks verification expects it.
       */
      rotatingTo?: string | undefined;
    }
  | { kind: 'allowlist'; secretId: string; versionId: string }
  | { kind: 'trust'; secretId: string; versionId: string }
  /** The fleet config itself: a task serving an older one routes by old rules. */
  | { kind: 'fleet'; secretId: string; versionId: string };

/** The version a task reports for `secret`, if it reports one. */
export function servedVersion(status: TaskStatus, secret: DesiredSecret): string | undefined {
  switch (secret.kind) {
    case 'certificate':
      return status.certificates[secret.name]?.versionId;
    case 'allowlist':
      return status.allowlist?.versionId;
    case 'trust':
      return status.trust?.versionId;
    case 'fleet':
      return status.fleetConfig?.versionId;
  }
}

/**
 * The versions a task may serve for `secret` without being nudged. Rule for a rotation in
 * flight: a task serving the certificate's live `AWSPENDING` is left there — nudging it back
 * to `AWSCURRENT` would make the rotation's verification (UpdateTasks) see a mismatch and roll everything back.
 * A task serving the old `AWSCURRENT` is left too: either the rotation's UpdateTasks batch listed
 * it and nudges it itself, or it started after its batch listed the fleet and the sidecar's poll backstop brings it
 * to the new `AWSCURRENT` once the rotation promotes it (a failed rotation's rollback lists
 * tasks again and nudges it back). Only a task serving neither (or nothing) is nudged, to
 * `AWSCURRENT`. A stale (abandoned) `AWSPENDING` is never passed as `rotatingTo`.
 */
export function acceptedVersions(secret: DesiredSecret): string[] {
  if (
    secret.kind === 'certificate' &&
    secret.rotatingTo !== undefined &&
    secret.rotatingTo !== secret.versionId
  ) {
    return [secret.versionId, secret.rotatingTo];
  }
  return [secret.versionId];
}

/** The secrets a task serves in a version it should not (or not at all); each is nudged to `versionId`. */
export function staleSecrets(status: TaskStatus, desired: readonly DesiredSecret[]): DesiredSecret[] {
  return desired.filter((secret) => {
    const served = servedVersion(status, secret);
    return served === undefined || !acceptedVersions(secret).includes(served);
  });
}

/**
 * Whether a task is in sync: ready, and serving an accepted version of every desired secret.
 * The one rule behind `portcullis status`, converge-task's decision to nudge and the sidecar's
 * own `…_in_sync` view (which compares with what it was last asked for). Pure.
 */
export function taskInSync(status: TaskStatus, desired: readonly DesiredSecret[]): boolean {
  return status.ready && staleSecrets(status, desired).length === 0;
}
