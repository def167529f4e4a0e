/** Lambda entry of the VerifyTask step: AWS ports, Powertools, zod parsing around `makeVerifyTask`. */

import { VerifyTaskInput } from '../lib/workflows/schemas.ts';
import { makeVerifyTask } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('verifyTask', makeVerifyTask(awsPorts()), VerifyTaskInput);
