/** Lambda entry of the ListTasks step: AWS ports, Powertools, zod parsing around `makeListTasks`. */

import { ListTasksInput } from '../lib/workflows/schemas.ts';
import { makeListTasks } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('listTasks', makeListTasks(awsPorts()), ListTasksInput);
