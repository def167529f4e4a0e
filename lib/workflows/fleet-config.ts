/**
 * The part of the fleet config the control plane needs: certificates, trust and nudge-key
 * secrets, the allowlist source and policy. The fleet config secret holds the same document
 * the sidecar reads, so it is parsed with the full `lib/config` schema: a config the gateways
 * would refuse is refused here too, before anything is issued or staged.
 */
import { parse as parseYaml } from 'yaml';
import { parseFleetConfig } from '../config/load.ts';
import type { FleetConfig } from '../config/schema.ts';
import { ValidationError } from '../errors.ts';
import { type SecretStore, Stage } from '../ports.ts';

export type ControlPlaneFleet = Pick<
  FleetConfig,
  'fleet' | 'certificates' | 'trust' | 'nudgeKey' | 'allowlist'
>;

/** Parses a fleet config document (JSON or YAML text) for the control plane. */
export function parseControlPlaneFleet(text: string, source = 'fleet config'): ControlPlaneFleet {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch {
    throw new ValidationError(`${source}: neither JSON nor YAML`);
  }
  const config = parseFleetConfig(raw, source);
  const names = config.certificates.map((c) => c.name);
  const duplicate = names.find((name, index) => names.indexOf(name) !== index);
  if (duplicate !== undefined) {
    throw new ValidationError(`${source}: certificate name '${duplicate}' appears twice`, {
      path: 'certificates',
    });
  }
  return {
    fleet: config.fleet,
    certificates: config.certificates,
    trust: config.trust,
    nudgeKey: config.nudgeKey,
    allowlist: config.allowlist,
  };
}

/**
 * Reads the fleet config's `AWSCURRENT` version from the store and returns what the control
 * plane needs.
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
