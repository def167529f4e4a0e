/**
 * The part of the fleet config the control plane needs. `lib/config`'s `FleetConfigSchema`
 * does not carry certificates, trust or the nudge key yet (and is strict), so this reads only
 * those fields with its own lenient schema; the two are meant to be folded together.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ValidationError } from '../errors.ts';
import { type SecretStore, Stage } from '../ports.ts';
import { CertificateSpec } from '../rotation/certificate-spec.ts';

export const ControlPlaneFleetSchema = z.looseObject({
  fleet: z.string().min(1),
  certificates: z.array(CertificateSpec).default([]),
  trust: z.object({ secretId: z.string().min(1) }).optional(),
  nudgeKey: z.object({ secretId: z.string().min(1) }).optional(),
  allowlist: z
    .looseObject({
      source: z
        .union([z.object({ secretId: z.string().min(1) }), z.object({ file: z.string().min(1) })])
        .optional(),
      allowAll0: z.boolean().default(false),
      maxEntries: z.number().int().min(1).max(1_000_000).default(100_000),
    })
    .prefault({}),
});
export type ControlPlaneFleet = z.output<typeof ControlPlaneFleetSchema>;

/** Parses a fleet config document (JSON or YAML text) for the control plane. */
export function parseControlPlaneFleet(text: string, source = 'fleet config'): ControlPlaneFleet {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch {
    throw new ValidationError(`${source}: neither JSON nor YAML`);
  }
  const result = ControlPlaneFleetSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new ValidationError(`${source}: ${issues.join('; ')}`, {
      path: result.error.issues[0]?.path.join('.'),
    });
  }
  const names = result.data.certificates.map((c) => c.name);
  const duplicate = names.find((name, index) => names.indexOf(name) !== index);
  if (duplicate !== undefined) {
    throw new ValidationError(`${source}: certificate name '${duplicate}' appears twice`, {
      path: 'certificates',
    });
  }
  return result.data;
}

/**
 * Reads the fleet config's `AWSCURRENT` version from the store and returns what the control
 * plane needs: certificates, trust and nudge-key secrets, the allowlist source and policy.
 */
export async function loadControlPlaneFleet(
  store: SecretStore,
  fleetConfigSecretId: string,
): Promise<ControlPlaneFleet> {
  const secret = await store.get(fleetConfigSecretId, { stage: Stage.Current });
  return parseControlPlaneFleet(secret.value, `secret ${fleetConfigSecretId}`);
}

/** The allowlist secret of a fleet, when its allowlist lives in the store. */
export function allowlistSecretId(fleet: ControlPlaneFleet): string | undefined {
  const source = fleet.allowlist.source;
  return source !== undefined && 'secretId' in source ? source.secretId : undefined;
}

/** Every secret the sidecars serve from the store (the nudge key is read, never served). */
export function servedSecretIds(fleet: ControlPlaneFleet): string[] {
  const ids = fleet.certificates.map((c) => c.secretId);
  const allowlist = allowlistSecretId(fleet);
  if (allowlist !== undefined) ids.push(allowlist);
  if (fleet.trust !== undefined) ids.push(fleet.trust.secretId);
  return ids;
}
