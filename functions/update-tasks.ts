/** Lambda entry of the UpdateTasks step: AWS ports, Powertools, zod parsing around `makeUpdateTasks`. */

import { UpdateTasksInput } from '../lib/workflows/schemas.ts';
import { makeUpdateTasks } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('updateTasks', makeUpdateTasks(awsPorts()), UpdateTasksInput);
