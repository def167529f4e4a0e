/**
 * What the control plane needs to know to issue one certificate of a fleet. The fleet config
 * carries a list of these (`certificates`); the sidecar keys its status by `name`.
 */
import { z } from 'zod';

const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i, 'a DNS name');

export const KeySpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('ec'), curve: z.enum(['P-256', 'P-384']) }),
  z.object({ kind: z.literal('rsa'), bits: z.union([z.literal(2048), z.literal(3072), z.literal(4096)]) }),
]);

/**
 * One certificate of a fleet. Defaults: key ECDSA P-256, 30 days of validity, renewal at two
 * thirds of the lifetime unless `renewBeforeDays` says otherwise.
 */
export const CertificateSpec = z
  .object({
    /** Stable name: the sidecar's status key and part of every idempotency token. */
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes'),
    /** Where the certificate bundle lives (Secrets Manager name or ARN; a store id locally). */
    secretId: z.string().min(1),
    commonName: z.string().min(1).max(64),
    dns: z.array(dnsName).default([]),
    uri: z.array(z.url()).optional(),
    usage: z.enum(['server', 'client']),
    key: KeySpecSchema.default({ kind: 'ec', curve: 'P-256' }),
    validityDays: z.number().int().min(1).max(825).default(30),
    renewBeforeDays: z.number().positive().optional(),
  })
  .refine((spec) => spec.renewBeforeDays === undefined || spec.renewBeforeDays < spec.validityDays, {
    message: 'renewBeforeDays must be shorter than validityDays',
    path: ['renewBeforeDays'],
  })
  .refine((spec) => spec.usage === 'client' || spec.dns.length > 0, {
    message: 'a server certificate needs at least one DNS name (the verification handshake uses the first)',
    path: ['dns'],
  });
export type CertificateSpec = z.infer<typeof CertificateSpec>;
export type CertificateSpecInput = z.input<typeof CertificateSpec>;
