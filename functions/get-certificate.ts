/** Lambda entry of the GetCertificate step: AWS ports, Powertools, zod parsing around `makeGetCertificate`. */
import { makeGetCertificate } from '../lib/workflows/rotation-steps.ts';
import { GetCertificateInput } from '../lib/workflows/schemas.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { lambdaHandler } from './shared/lambda.ts';

export const handler = lambdaHandler('getCertificate', makeGetCertificate(awsPorts()), GetCertificateInput);
