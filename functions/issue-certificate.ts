/** Lambda entry of the IssueCertificate step: AWS ports, Powertools, zod parsing around `makeIssueCertificate`. */
import { makeIssueCertificate } from '../lib/workflows/rotation-steps.ts';
import { IssueCertificateInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler(
  'issueCertificate',
  makeIssueCertificate(awsPorts()),
  IssueCertificateInput,
);
