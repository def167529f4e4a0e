/** Lambda entry of the RevokeCertificate step: AWS ports, Powertools, zod parsing around `makeRevokeCertificate`. */
import { makeRevokeCertificate } from '../lib/workflows/rotation-steps.ts';
import { RevokeCertificateInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler(
  'revokeCertificate',
  makeRevokeCertificate(awsPorts()),
  RevokeCertificateInput,
);
