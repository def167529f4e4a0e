/** Lambda entry of the Notify step: AWS ports, Powertools, zod parsing around `makeNotify`. */

import { NotifyInput } from '../lib/workflows/schemas.ts';
import { makeNotify } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('notify', makeNotify(awsPorts()), NotifyInput);
