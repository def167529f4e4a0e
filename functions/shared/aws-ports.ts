/**
 * The AWS wiring of the control-plane ports, from the handler environment. Adapters are built
 * on first use, so a function that never talks to the CA needs no CA_ARN and makes no client.
 */
import { AcmPcaAuthority } from '../../lib/aws/acm-pca-authority.ts';
import { EcsFleet } from '../../lib/aws/ecs-fleet.ts';
import { EventBridgeNotifier } from '../../lib/aws/eventbridge-notifier.ts';
import { S3ObjectStore } from '../../lib/aws/s3-object-store.ts';
import { SecretsManagerStore } from '../../lib/aws/secrets-manager-store.ts';
import { DEFAULT_VERIFY_PORT } from '../../lib/config/schema.ts';
import { ValidationError } from '../../lib/errors.ts';
import type { CertificateAuthority, Fleet, Notifier, SecretStore, TaskClient } from '../../lib/ports.ts';
import { allowlistPrefix, type ObjectStore } from '../../lib/secrets/allowlist-storage.ts';
import { readNudgeKey } from '../../lib/secrets/nudge-key.ts';
import { HttpTaskClient } from '../../lib/task-client/http-task-client.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';

type Env = Record<string, string | undefined>;

/** How long a fetched nudge key is reused; rotation of the key takes effect within this. */
const NUDGE_KEY_TTL_MS = 5 * 60_000;

function required(env: Env, name: string): string {
  const value = env[name];
  if (value === undefined || value === '')
    throw new ValidationError(`environment variable ${name} is not set`, { path: name });
  return value;
}

function port(env: Env, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535)
    throw new ValidationError(`${name} is not a port`, { path: name });
  return value;
}

/** A nudge-key loader that caches the key for a few minutes. */
export function cachedNudgeKey(
  store: SecretStore,
  secretId: string,
  now = () => Date.now(),
): () => Promise<Buffer> {
  let cached: { key: Buffer; at: number } | undefined;
  return async () => {
    if (cached !== undefined && now() - cached.at < NUDGE_KEY_TTL_MS) return cached.key;
    const key = await readNudgeKey(store, secretId);
    cached = { key, at: now() };
    return key;
  };
}

/**
 * Ports over AWS from the environment: FLEET_NAME, FLEET_CONFIG_SECRET_ID, NUDGE_KEY_SECRET_ID,
 * CA_ARN, CA_TEMPLATE_ARN, CA_SIGNING_ALGORITHM (default SHA256WITHECDSA), ECS_CLUSTER,
 * ECS_SERVICE, SIDECAR_ADMIN_PORT (default 9901), VERIFY_PORT (default 8444: each task's
 * verification listener, `listeners.verify` in the fleet config), EVENT_BUS_NAME (default `default`),
 * ALLOWLIST_BUCKET (absent: allowlists stay inline, up to the secret value's 64 KiB),
 * ALLOWLIST_KMS_KEY_ARN (the bucket's key), ALLOWLIST_PREFIX (default `allowlists/<FLEET_NAME>/`).
 */
export function awsPorts(env: Env = process.env): ControlPlanePorts {
  let store: SecretStore | undefined;
  let authority: CertificateAuthority | undefined;
  let fleet: Fleet | undefined;
  let taskClient: TaskClient | undefined;
  let notifier: Notifier | undefined;
  let objects: { store: ObjectStore; prefix: string } | undefined;
  const ports: ControlPlanePorts = {
    get fleetName() {
      return required(env, 'FLEET_NAME');
    },
    get fleetConfigSecretId() {
      return required(env, 'FLEET_CONFIG_SECRET_ID');
    },
    get store() {
      store ??= new SecretsManagerStore();
      return store;
    },
    get authority() {
      authority ??= new AcmPcaAuthority({
        certificateAuthorityArn: required(env, 'CA_ARN'),
        ...(env.CA_TEMPLATE_ARN ? { templateArn: env.CA_TEMPLATE_ARN } : {}),
        signingAlgorithm: (env.CA_SIGNING_ALGORITHM || 'SHA256WITHECDSA') as 'SHA256WITHECDSA',
      });
      return authority;
    },
    get fleet() {
      fleet ??= new EcsFleet({
        cluster: required(env, 'ECS_CLUSTER'),
        service: required(env, 'ECS_SERVICE'),
        adminPort: port(env, 'SIDECAR_ADMIN_PORT', 9901),
        verifyPort: port(env, 'VERIFY_PORT', DEFAULT_VERIFY_PORT),
      });
      return fleet;
    },
    get taskClient() {
      taskClient ??= new HttpTaskClient({
        nudgeKey: cachedNudgeKey(ports.store, required(env, 'NUDGE_KEY_SECRET_ID')),
      });
      return taskClient;
    },
    get allowlistObjects() {
      const bucket = env.ALLOWLIST_BUCKET;
      if (bucket === undefined || bucket === '') return undefined;
      objects ??= {
        store: new S3ObjectStore({
          bucket,
          ...(env.ALLOWLIST_KMS_KEY_ARN ? { kmsKeyId: env.ALLOWLIST_KMS_KEY_ARN } : {}),
        }),
        prefix: env.ALLOWLIST_PREFIX || allowlistPrefix(required(env, 'FLEET_NAME')),
      };
      return objects;
    },
    get notifier() {
      notifier ??= new EventBridgeNotifier({ eventBusName: env.EVENT_BUS_NAME || 'default' });
      return notifier;
    },
  };
  return ports;
}
