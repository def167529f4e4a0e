/** Lambda entry of the PromoteSecret step: AWS ports, Powertools, zod parsing around `makePromoteSecret`. */

import { PromoteSecretInput } from '../lib/workflows/schemas.ts';
import { makePromoteSecret } from '../lib/workflows/task-steps.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('promoteSecret', makePromoteSecret(awsPorts()), PromoteSecretInput);
