/** Lambda entry of the ConvergeTask step: AWS ports, Powertools, zod parsing around `makeConvergeTask`. */
import { makeConvergeTask } from '../lib/workflows/converge-steps.ts';
import { ConvergeTaskInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('convergeTask', makeConvergeTask(awsPorts()), ConvergeTaskInput);
