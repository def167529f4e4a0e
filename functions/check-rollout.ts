/** Lambda entry of the CheckRollout step: AWS ports, Powertools, zod parsing around `makeCheckRollout`. */

import { CheckRolloutInput } from '../lib/workflows/schemas.ts';
import { makeCheckRollout } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('checkRollout', makeCheckRollout(awsPorts()), CheckRolloutInput);
