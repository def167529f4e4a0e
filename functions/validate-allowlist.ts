/** Lambda entry of the ValidateAllowlist step: AWS ports, Powertools, zod parsing around `makeValidateAllowlist`. */
import { makeValidateAllowlist } from '../lib/workflows/allowlist-steps.ts';
import { ValidateAllowlistInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler(
  'validateAllowlist',
  makeValidateAllowlist(awsPorts()),
  ValidateAllowlistInput,
);
