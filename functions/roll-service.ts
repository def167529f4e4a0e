/** Lambda entry of the RollService step: AWS ports, Powertools, zod parsing around `makeRollService`. */

import { RollServiceInput } from '../lib/workflows/schemas.ts';
import { makeRollService } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('rollService', makeRollService(awsPorts()), RollServiceInput);
