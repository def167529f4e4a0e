/**
 * The JSON documents Portcullis keeps in its secrets. The control plane writes them, the
 * sidecar reads them; both parse with these schemas so a malformed secret is a
 * `ValidationError` naming the field, never a crash half-way through an apply.
 */
import { z } from 'zod';
import { ValidationError } from '../errors.ts';

const pem = (label: string) =>
  z.string().refine((text) => text.includes(`-----BEGIN ${label}`), { message: `must be PEM (${label})` });

/** A leaf certificate with its chain and private key: one per terminate hostname or client identity. */
export const CertificateSecret = z.object({
  certificatePem: pem('CERTIFICATE'),
  /** Intermediates, leaf excluded; empty when the issuer is the root. */
  chainPem: z.string().default(''),
  privateKeyPem: pem('PRIVATE KEY'),
  serial: z.string().regex(/^[0-9a-f]+$/, 'lowercase hex without separators'),
  notAfter: z.iso.datetime(),
  /** The CA's id for the certificate (the PCA certificate ARN); needed to revoke it later. */
  certificateId: z.string().min(1).optional(),
});
export type CertificateSecret = z.infer<typeof CertificateSecret>;

/** The CA certificates clients and upstreams are verified against, and the CRL to apply. */
export const TrustSecret = z.object({
  caBundlePem: pem('CERTIFICATE'),
  crlPem: z.string().optional(),
});
export type TrustSecret = z.infer<typeof TrustSecret>;

/** The source allowlist; CIDRs are validated and normalised by `lib/allowlist` before use. */
export const AllowlistSecret = z.object({
  cidrs: z.array(z.string()),
  reason: z.string().default(''),
  updatedBy: z.string().optional(),
});
export type AllowlistSecret = z.infer<typeof AllowlistSecret>;

/** The HMAC key that signs nudges from the control plane to the sidecars. */
export const NudgeKeySecret = z.object({
  /** Base64, at least 32 bytes once decoded. */
  key: z
    .string()
    .refine((text) => Buffer.from(text, 'base64').length >= 32, { message: 'must be ≥ 32 bytes of base64' }),
});
export type NudgeKeySecret = z.infer<typeof NudgeKeySecret>;

/**
 * Parses a secret's JSON text with `schema`. Errors name the secret and the field paths but
 * never echo the value (it may hold a private key).
 */
export function parseSecret<T>(schema: z.ZodType<T>, secretId: string, text: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ValidationError(`secret ${secretId}: not valid JSON`);
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new ValidationError(`secret ${secretId}: ${issues.join('; ')}`, {
      path: result.error.issues[0]?.path.join('.'),
    });
  }
  return result.data;
}
