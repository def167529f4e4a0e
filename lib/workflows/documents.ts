/**
 * Working documents the rotation keeps in the certificate secret between steps. They live in
 * versions carrying only custom labels, so nothing that reads `AWSCURRENT` (the sidecar) ever
 * sees them, and they turn every retry into a lookup instead of a second key or certificate.
 */
import { z } from 'zod';

/** The private key generated for this execution, stored before the CSR leaves the function. */
export const IssuingKeyDocument = z.object({
  kind: z.literal('portcullis/issuing-key'),
  privateKeyPem: z.string().includes('PRIVATE KEY'),
});
export type IssuingKeyDocument = z.output<typeof IssuingKeyDocument>;

/** The CA accepted the request: its certificate id, kept past PCA's idempotency window. */
export const IssuedDocument = z.object({
  kind: z.literal('portcullis/issued'),
  certificateId: z.string().min(1),
});
export type IssuedDocument = z.output<typeof IssuedDocument>;

/** What a certificate secret holds before its first certificate (a fleet's very first rotation). */
export const PlaceholderDocument = z.object({ kind: z.literal('portcullis/placeholder') });
