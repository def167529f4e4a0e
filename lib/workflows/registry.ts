/**
 * Every control-plane step by its function key (the `serverless.yml` key, the file name
 * `functions/<kebab-case>.ts`, the CloudFormation id `<PascalKey>LambdaFunction`), with the
 * schema of its input. The Lambda entries and the local runner both build steps from here.
 */
import type { z } from 'zod';
import { makeRollbackAllowlist, makeStageAllowlist, makeValidateAllowlist } from './allowlist-steps.ts';
import { makeConvergeTask } from './converge-steps.ts';
import type { ControlPlanePorts } from './ports.ts';
import {
  makeGetCertificate,
  makeIssueCertificate,
  makePlanRotation,
  makeRevokeCertificate,
  makeRollbackRotation,
  makeStageCertificate,
} from './rotation-steps.ts';
import {
  CheckRolloutInput,
  ConvergeTaskInput,
  GetCertificateInput,
  IssueCertificateInput,
  NotifyInput,
  PlanRotationInput,
  PromoteSecretInput,
  RevokeCertificateInput,
  RollbackAllowlistInput,
  RollbackRotationInput,
  RollServiceInput,
  StageAllowlistInput,
  StageCertificateInput,
  UpdateTasksInput,
  ValidateAllowlistInput,
} from './schemas.ts';
import {
  makeCheckRollout,
  makeNotify,
  makePromoteSecret,
  makeRollService,
  makeUpdateTasks,
} from './task-steps.ts';

/** A step built from ports: parsed input in, small JSON out. */
export type Step<I = never, O = unknown> = (event: I) => Promise<O>;

interface StepEntry<S extends z.ZodType, O> {
  schema: S;
  make: (ports: ControlPlanePorts) => Step<z.output<S>, O>;
}

function entry<S extends z.ZodType, O>(
  schema: S,
  make: (ports: ControlPlanePorts) => Step<z.output<S>, O>,
): StepEntry<S, O> {
  return { schema, make };
}

export const steps = {
  planRotation: entry(PlanRotationInput, makePlanRotation),
  issueCertificate: entry(IssueCertificateInput, makeIssueCertificate),
  getCertificate: entry(GetCertificateInput, makeGetCertificate),
  stageCertificate: entry(StageCertificateInput, makeStageCertificate),
  updateTasks: entry(UpdateTasksInput, makeUpdateTasks),
  promoteSecret: entry(PromoteSecretInput, makePromoteSecret),
  rollService: entry(RollServiceInput, makeRollService),
  checkRollout: entry(CheckRolloutInput, makeCheckRollout),
  revokeCertificate: entry(RevokeCertificateInput, makeRevokeCertificate),
  rollbackRotation: entry(RollbackRotationInput, makeRollbackRotation),
  notify: entry(NotifyInput, makeNotify),
  validateAllowlist: entry(ValidateAllowlistInput, makeValidateAllowlist),
  stageAllowlist: entry(StageAllowlistInput, makeStageAllowlist),
  rollbackAllowlist: entry(RollbackAllowlistInput, makeRollbackAllowlist),
  convergeTask: entry(ConvergeTaskInput, makeConvergeTask),
} as const;

export type FunctionKey = keyof typeof steps;
export const functionKeys = Object.keys(steps) as FunctionKey[];

/** `PlanRotationLambdaFunction` → `planRotation` (serverless' logical id naming), or `undefined`. */
export function functionKeyOfLogicalId(logicalId: string): FunctionKey | undefined {
  const match = /^([A-Z][A-Za-z0-9]*)LambdaFunction$/.exec(logicalId);
  if (!match) return undefined;
  const key = `${match[1]![0]!.toLowerCase()}${match[1]!.slice(1)}`;
  return key in steps ? (key as FunctionKey) : undefined;
}

/** `planRotation` → `plan-rotation` (the handler's file name under `functions/`). */
export function fileNameOf(key: FunctionKey): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
