/** Lambda entry of the NudgeTask step: AWS ports, Powertools, zod parsing around `makeNudgeTask`. */

import { NudgeTaskInput } from '../lib/workflows/schemas.ts';
import { makeNudgeTask } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('nudgeTask', makeNudgeTask(awsPorts()), NudgeTaskInput);
