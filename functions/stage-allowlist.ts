/** Lambda entry of the StageAllowlist step: AWS ports, Powertools, zod parsing around `makeStageAllowlist`. */
import { makeStageAllowlist } from '../lib/workflows/allowlist-steps.ts';
import { StageAllowlistInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('stageAllowlist', makeStageAllowlist(awsPorts()), StageAllowlistInput);
