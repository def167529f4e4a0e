export {
  type AllowlistChange,
  type AllowlistChangeResult,
  applyAllowlistChange,
} from './allowlist-change.ts';
export {
  BACKOFF_BASE_MS,
  BACKOFF_MAX_MS,
  BackoffDocument,
  BackoffStage,
  type BackoffState,
  backoffDelayMs,
  backoffState,
  nextBackoff,
  readRotationBackoff,
} from './backoff.ts';
export { CertificateSpec, type CertificateSpecInput, KeySpecSchema } from './certificate-spec.ts';
export { acceptedVersions, type DesiredSecret, servedVersion, staleSecrets, taskInSync } from './converge.ts';
export {
  type CurrentCertificate,
  type DueReason,
  type RenewalDecision,
  renewalDecision,
  renewalTime,
} from './due.ts';
export {
  describeLease,
  type LeaseMark,
  LeaseStages,
  type LeaseVersion,
  ROTATION_LEASE_STALE_AFTER_MS,
  ROTATION_MACHINE_TIMEOUT_SECONDS,
  type RotationLease,
  rotationLease,
} from './lease.ts';
export {
  deferLeased,
  type PlanInput,
  type PlannedCertificate,
  planRotation,
  type RotationPlan,
} from './plan.ts';
export {
  type AllowlistRollbackInput,
  type AllowlistRollbackPlan,
  decideAllowlistRollback,
  decideRotationRollback,
  IssuedStage,
  IssuingStage,
  type RotationRollbackInput,
  type RotationRollbackPlan,
  type VersionStages,
} from './rollback.ts';
export {
  type RolloutStep,
  rolloutStep,
  summariseTasks,
  type TaskOutcome,
  type TaskSummary,
} from './tasks.ts';
export { certificateTokenSubject, deriveToken, TokenStep } from './tokens.ts';
