export {
  makeRollbackAllowlist,
  makeStageAllowlist,
  makeValidateAllowlist,
  type RollbackAllowlistResult,
  sameSecret,
} from './allowlist-steps.ts';
export { type ConvergeTaskResult, convergeDecision, makeConvergeTask, sameTask } from './converge-steps.ts';
export {
  allowlistSecretId,
  type ControlPlaneFleet,
  loadControlPlaneFleet,
  parseControlPlaneFleet,
  servedSecretIds,
} from './fleet-config.ts';
export type { ControlPlanePorts } from './ports.ts';
export {
  type FunctionKey,
  fileNameOf,
  functionKeyOfLogicalId,
  functionKeys,
  type Step,
  steps,
} from './registry.ts';
export {
  type GetCertificateResult,
  type IssueCertificateResult,
  makeGetCertificate,
  makeIssueCertificate,
  makePlanRotation,
  makeRevokeCertificate,
  makeRollbackRotation,
  makeStageCertificate,
  type PlanRotationResult,
  type RevokeCertificateResult,
  type RollbackRotationResult,
  readCurrentCertificate,
  type StageCertificateResult,
} from './rotation-steps.ts';
export * as schemas from './schemas.ts';
export { DetailType } from './schemas.ts';
export {
  makeCheckRollout,
  makeNotify,
  makeNudgeTask,
  makePromoteSecret,
  makeRollService,
  makeUpdateTasks,
  type PromoteSecretResult,
  type RolloutResult,
  verificationServerName,
} from './task-steps.ts';
