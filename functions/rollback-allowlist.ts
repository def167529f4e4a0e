/** Lambda entry of the RollbackAllowlist step: AWS ports, Powertools, zod parsing around `makeRollbackAllowlist`. */
import { makeRollbackAllowlist } from '../lib/workflows/allowlist-steps.ts';
import { RollbackAllowlistInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler(
  'rollbackAllowlist',
  makeRollbackAllowlist(awsPorts()),
  RollbackAllowlistInput,
);
