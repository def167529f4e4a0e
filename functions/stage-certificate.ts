/** Lambda entry of the StageCertificate step: AWS ports, Powertools, zod parsing around `makeStageCertificate`. */
import { makeStageCertificate } from '../lib/workflows/rotation-steps.ts';
import { StageCertificateInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler(
  'stageCertificate',
  makeStageCertificate(awsPorts()),
  StageCertificateInput,
);
