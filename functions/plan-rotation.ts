/** Lambda entry of the PlanRotation step: AWS ports, Powertools, zod parsing around `makePlanRotation`. */
import { makePlanRotation } from '../lib/workflows/rotation-steps.ts';
import { PlanRotationInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('planRotation', makePlanRotation(awsPorts()), PlanRotationInput);
