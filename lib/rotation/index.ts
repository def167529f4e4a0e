export {
  type AllowlistChange,
  type AllowlistChangeResult,
  applyAllowlistChange,
} from './allowlist-change.ts';
export { CertificateSpec, type CertificateSpecInput, KeySpecSchema } from './certificate-spec.ts';
export { type DesiredSecret, servedVersion, staleSecrets } from './converge.ts';
export {
  type CurrentCertificate,
  type DueReason,
  type RenewalDecision,
  renewalDecision,
  renewalTime,
} from './due.ts';
export { type PlanInput, type PlannedCertificate, planRotation, type RotationPlan } from './plan.ts';
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
