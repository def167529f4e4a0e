/** Lambda entry of the RollbackRotation step: AWS ports, Powertools, zod parsing around `makeRollbackRotation`. */
import { makeRollbackRotation } from '../lib/workflows/rotation-steps.ts';
import { RollbackRotationInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler(
  'rollbackRotation',
  makeRollbackRotation(awsPorts()),
  RollbackRotationInput,
);
