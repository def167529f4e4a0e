import { Stage } from '../ports.ts';
import { IssuedStage, IssuingStage } from './rollback.ts';

/**
 * Longest one certificate's rotation may run: the `TimeoutSeconds` of rotate-certificate, the
 * child execution that holds the certificate's lease (kept equal by a test). Step Functions
 * stops it there without its rollback; rotate-certificates then runs that rollback itself, so
 * a lease outlives its execution only when the parent is gone too.
 */
export const ROTATION_MACHINE_TIMEOUT_SECONDS = 2 * 60 * 60;

/**
 * A lease older than this belongs to an execution that no longer runs. Twice the child's
 * time limit: a live execution's marks are never older than its own run, and the margin
 * absorbs clock skew between the store's timestamps and ours. A lease whose rollback never ran
 * blocks its certificate for at most this long (4 h; the hourly schedule then takes it over).
 */
export const ROTATION_LEASE_STALE_AFTER_MS = 2 * ROTATION_MACHINE_TIMEOUT_SECONDS * 1000;

/** The labels that mark a certificate as being rotated by whichever execution wrote their version. */
export const LeaseStages = [IssuingStage, IssuedStage, Stage.Pending] as const;

/** One labelled version of a certificate secret; `createdAt` unknown is treated as live. */
export interface LeaseVersion {
  versionId: string;
  stages: readonly string[];
  createdAt?: Date | undefined;
}

/** A version holding a lease label that another execution wrote. */
export interface LeaseMark {
  versionId: string;
  stage: string;
  createdAt: Date | undefined;
}

export interface RotationLease {
  /** Live marks of other executions: the certificate is being rotated, keep off. */
  held: LeaseMark[];
  /** Marks older than the bound: left by an execution that stopped; this one may take them over. */
  stale: LeaseMark[];
}

/**
 * Who else is rotating this certificate. A mark on one of `ownVersionIds` (the versions this
 * execution's derived tokens name) is this execution's own, so a re-run of the same execution
 * passes. A mark whose age is unknown counts as live: refusing is safe, a takeover is not.
 */
export function rotationLease(input: {
  versions: readonly LeaseVersion[];
  ownVersionIds: ReadonlySet<string>;
  now: Date;
  staleAfterMs?: number;
}): RotationLease {
  const bound = input.staleAfterMs ?? ROTATION_LEASE_STALE_AFTER_MS;
  const lease: RotationLease = { held: [], stale: [] };
  for (const version of input.versions) {
    if (input.ownVersionIds.has(version.versionId)) continue;
    for (const stage of LeaseStages) {
      if (!version.stages.includes(stage)) continue;
      const mark = { versionId: version.versionId, stage, createdAt: version.createdAt };
      const age = version.createdAt === undefined ? 0 : input.now.getTime() - version.createdAt.getTime();
      (age > bound ? lease.stale : lease.held).push(mark);
    }
  }
  return lease;
}

/** One line for an error or a plan entry, naming the marks (version ids and labels, never values). */
export function describeLease(marks: readonly LeaseMark[]): string {
  return marks
    .map((m) => `${m.stage} on ${m.versionId}${m.createdAt ? ` since ${m.createdAt.toISOString()}` : ''}`)
    .join(', ');
}
