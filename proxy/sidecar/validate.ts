/**
 * Pure validation of what the sidecar fetches: secret documents in, normalised objects ready
 * for HAProxy out, or a tagged refusal with a check code. Time is an argument; nothing here
 * touches the network or the disk, and no reason ever quotes a secret value.
 *
 * Codes (also the `reason` label of the `portcullis_sidecar_applies_total` metric):
 * `json-invalid`, `document-invalid`, `placeholder` (no certificate issued yet), the PKI core's
 * `pem-invalid`, `key-mismatch`, `expired`, `not-yet-valid`, `untrusted-chain`, `san-mismatch`,
 * `weak-key`, `wrong-usage`, `not-ca`, `private-key-present`, `untrusted-crl`, `stale-crl`, `crl-missing`, and for
 * allowlists `cidr-invalid`, `cidr-too-broad`, `too-many-entries`, `digest-mismatch` (the object a
 * manifest pins holds other bytes or another count); `config-invalid` for the fleet config.
 */
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { isWholeFamily, normaliseAllowlist, parseCidr } from '../../lib/allowlist/index.ts';
import { type FleetConfig, FleetConfigSchema, formatIssues } from '../../lib/config/index.ts';
import {
  type CertificateInfo,
  validateCrl,
  validateServingBundle,
  validateTrustBundle,
  verifyChain,
} from '../../lib/pki/index.ts';
import { AllowlistDocument } from '../../lib/secrets/allowlist-storage.ts';
import { AllowlistSecret, CertificateSecret, NudgeKeySecret, TrustSecret } from '../../lib/secrets/index.ts';

export type Checked<T> = { kind: 'ok'; value: T } | { kind: 'invalid'; code: string; reason: string };

const invalid = (code: string, reason: string): { kind: 'invalid'; code: string; reason: string } => ({
  kind: 'invalid',
  code,
  reason,
});

function parseJson(text: string): Checked<unknown> {
  try {
    return { kind: 'ok', value: JSON.parse(text) };
  } catch {
    return invalid('json-invalid', 'not valid JSON');
  }
}

function schemaCheck<T>(schema: z.ZodType<T>, raw: unknown): Checked<T> {
  const result = schema.safeParse(raw);
  if (result.success) return { kind: 'ok', value: result.data };
  // Paths and zod's messages only: never the offending value.
  const issues = result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  return invalid('document-invalid', issues.join('; '));
}

/** A fleet config document (JSON or YAML text) through the fleet schema. */
export function checkFleetDocument(text: string): Checked<FleetConfig> {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch {
    return invalid('json-invalid', 'neither JSON nor YAML');
  }
  const result = FleetConfigSchema.safeParse(raw);
  if (result.success) return { kind: 'ok', value: result.data };
  return invalid('config-invalid', formatIssues(result.error.issues).join('; '));
}

/** A certificate ready for HAProxy: chain and key in one PEM (write it 0600), plus public facts. */
export interface CheckedCertificate {
  /** Leaf, intermediates, then the key. Secret: never log it. */
  pem: string;
  serial: string;
  notAfter: string;
  info: CertificateInfo;
}

export interface CertificateCheckOptions {
  /** Names the leaf must cover (the server names of the routes serving it); `[]` for client certificates. */
  hostnames: string[];
  /** CA certificates the chain must lead to (the trust secret's bundle). */
  trustPem: string;
  /** `server` for a terminate route's certificate, `client` for origination's (fleet config `usage`). */
  usage: 'server' | 'client';
  at: Date;
  skewSeconds?: number;
}

/**
 * A certificate secret (`CertificateSecret`): JSON, schema, then the PKI core's serving-bundle
 * checks (key ↔ leaf, key policy, usage, validity, chain to the trust bundle, names).
 */
export function checkCertificateDocument(
  text: string,
  options: CertificateCheckOptions,
): Checked<CheckedCertificate> {
  const json = parseJson(text);
  if (json.kind === 'invalid') return json;
  const raw = json.value;
  if (
    raw !== null &&
    typeof raw === 'object' &&
    (raw as { kind?: unknown }).kind === 'portcullis/placeholder'
  ) {
    return invalid('placeholder', 'the secret holds no certificate yet (first issue pending)');
  }
  const doc = schemaCheck(CertificateSecret, raw);
  if (doc.kind === 'invalid') return doc;
  const bundle = validateServingBundle({
    chainPem: `${doc.value.certificatePem.trim()}\n${doc.value.chainPem.trim()}\n`,
    keyPem: doc.value.privateKeyPem,
    trustBundlePem: options.trustPem,
    hostnames: options.hostnames,
    usage: options.usage,
    at: options.at,
    ...(options.skewSeconds === undefined ? {} : { skewSeconds: options.skewSeconds }),
  });
  if (bundle.kind === 'invalid') return invalid(bundle.code, bundle.reason);
  return {
    kind: 'ok',
    value: {
      pem: `${bundle.certificatesPem}${bundle.keyPem}`,
      serial: bundle.info.serial,
      notAfter: bundle.info.notAfter.toISOString(),
      info: bundle.info,
    },
  };
}

/** A trust bundle ready for HAProxy's `ca-file` (and `crl-file` when present). */
export interface CheckedTrust {
  caPem: string;
  crlPem: string | undefined;
  caCount: number;
}

export interface TrustCheckOptions {
  at: Date;
  skewSeconds?: number;
  /**
   * Leaves already serving (certificate PEMs with their chain): each must still lead to the new
   * bundle, so a trust update can never strand a certificate in service (step 3 of a CA
   * rollover comes only after every leaf was rotated).
   */
  serving?: readonly { name: string; chainPem: string }[];
}

/** A trust secret (`TrustSecret`): CA certificates (all CAs, inside validity), CRLs signed by one of them. */
export async function checkTrustDocument(
  text: string,
  options: TrustCheckOptions,
): Promise<Checked<CheckedTrust>> {
  const json = parseJson(text);
  if (json.kind === 'invalid') return json;
  const doc = schemaCheck(TrustSecret, json.value);
  if (doc.kind === 'invalid') return doc;
  const skew = options.skewSeconds === undefined ? {} : { skewSeconds: options.skewSeconds };
  const trust = validateTrustBundle(doc.value.caBundlePem, { at: options.at, ...skew });
  if (trust.kind === 'invalid') return invalid(trust.code, `trust bundle: ${trust.reason}`);
  let crlPem: string | undefined;
  if (doc.value.crlPem !== undefined && doc.value.crlPem.trim() !== '') {
    // Once a crl-file is set HAProxy checks revocation for the whole chain: every CA needs a CRL.
    const crl = await validateCrl(doc.value.crlPem, trust.pem, {
      at: options.at,
      ...skew,
      requireEveryCa: true,
    });
    if (crl.kind === 'invalid') return invalid(crl.code, `CRL: ${crl.reason}`);
    crlPem = crl.pem;
  }
  for (const serving of options.serving ?? []) {
    const blocks =
      serving.chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) continue;
    const chain = verifyChain(blocks[0]!, blocks.slice(1), trust.pem, { at: options.at, ...skew });
    if (chain.kind === 'invalid') {
      return invalid(
        'untrusted-chain',
        `certificate ${serving.name} in service would no longer chain to this bundle: ${chain.reason}`,
      );
    }
  }
  return { kind: 'ok', value: { caPem: trust.pem, crlPem, caCount: trust.certificates.length } };
}

/** An allowlist ready for HAProxy: canonical CIDRs, de-duplicated, stable order. */
export interface CheckedAllowlist {
  cidrs: string[];
}

/**
 * An allowlist secret's document: the inline list (`AllowlistSecret`) or the manifest of an
 * object holding it (`AllowlistManifest`, fetched and verified by `allowlist-source.ts`).
 */
export function parseAllowlistDocument(text: string): Checked<AllowlistDocument> {
  const json = parseJson(text);
  if (json.kind === 'invalid') return json;
  return schemaCheck(AllowlistDocument, json.value);
}

/** Allowlist entries under the fleet's policy (`/0` only if allowed, bounded count). */
export function checkAllowlistEntries(
  cidrs: readonly string[],
  policy: { allowAll0: boolean; maxEntries: number },
): Checked<CheckedAllowlist> {
  // One parse of each entry on the way that matters (100 000 entries take seconds to parse);
  // the first bad entry is looked for again only to name its check.
  const result = normaliseAllowlist(cidrs, policy);
  if (result.kind === 'ok') return { kind: 'ok', value: { cidrs: result.cidrs.map((c) => c.text) } };
  for (const [index, entry] of cidrs.entries()) {
    const parsed = parseCidr(entry);
    if (parsed.kind === 'invalid') return invalid('cidr-invalid', `cidrs.${index}: ${parsed.reason}`);
    if (isWholeFamily(parsed.cidr) && !policy.allowAll0) {
      return invalid(
        'cidr-too-broad',
        `cidrs.${index}: ${parsed.cidr.text} allows every address; the fleet config must set allowlist.allowAll0`,
      );
    }
  }
  const tooMany = result.issues.some((issue) => issue.includes('exceed the limit'));
  return invalid(tooMany ? 'too-many-entries' : 'cidr-invalid', result.issues.join('; '));
}

/** An inline allowlist secret (`AllowlistSecret`) under the fleet's policy (`/0` only if allowed, bounded count). */
export function checkAllowlistDocument(
  text: string,
  policy: { allowAll0: boolean; maxEntries: number },
): Checked<CheckedAllowlist> {
  const json = parseJson(text);
  if (json.kind === 'invalid') return json;
  const doc = schemaCheck(AllowlistSecret, json.value);
  if (doc.kind === 'invalid') return doc;
  return checkAllowlistEntries(doc.value.cidrs, policy);
}

/** The nudge key secret: at least 32 bytes of base64. */
export function checkNudgeKeyDocument(text: string): Checked<Buffer> {
  const json = parseJson(text);
  if (json.kind === 'invalid') return json;
  const doc = schemaCheck(NudgeKeySecret, json.value);
  if (doc.kind === 'invalid') return doc;
  return { kind: 'ok', value: Buffer.from(doc.value.key, 'base64') };
}
