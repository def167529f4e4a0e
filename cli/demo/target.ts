/**
 * Where an operator command acts: AWS (SDK default credentials and region; Secrets Manager,
 * Private CA, ECS, Step Functions) or a local directory (`--local DIR`: the demo's file store,
 * local CA and process fleet). Commands parse the shared options below and open a target; the
 * adapters behind it are built on first use, so `allowlist show` needs no CA and no ECS.
 *
 * A local directory holds:
 * ```
 * DIR/store/          FileSecretStore
 * DIR/ca/             LocalAuthority
 * DIR/fleet/          ProcessFleet (registry.json, one directory per task)
 * DIR/events.jsonl    LogNotifier
 * ```
 *
 * Either way the task client is the control plane's `HttpTaskClient`: nudges to each task's
 * sidecar, verification handshakes to each task's verification listener (`FleetTask.tlsPort`).
 */
import { join, resolve } from 'node:path';
import { ACMPCAClient } from '@aws-sdk/client-acm-pca';
import { ECSClient } from '@aws-sdk/client-ecs';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { RegistryFleet } from '../../embedded/process-fleet.ts';
import { AcmPcaAuthority } from '../../lib/aws/acm-pca-authority.ts';
import { awsClientConfig } from '../../lib/aws/client-config.ts';
import { EcsFleet } from '../../lib/aws/ecs-fleet.ts';
import { S3ObjectStore } from '../../lib/aws/s3-object-store.ts';
import { SecretsManagerStore } from '../../lib/aws/secrets-manager-store.ts';
import { DEFAULT_VERIFY_PORT } from '../../lib/config/schema.ts';
import { ValidationError } from '../../lib/errors.ts';
import { localAllowlistObjects } from '../../lib/local/file-object-store.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { type LoggedEvent, LogNotifier } from '../../lib/local/log-notifier.ts';
import type { CertificateAuthority, Fleet, Notifier, SecretStore, TaskClient } from '../../lib/ports.ts';
import { allowlistPrefix, type ObjectStore } from '../../lib/secrets/allowlist-storage.ts';
import { readNudgeKey } from '../../lib/secrets/nudge-key.ts';
import { HttpTaskClient } from '../../lib/task-client/http-task-client.ts';
import { loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';
import { checkFleetName, fleetSecretIds } from './secrets.ts';
import { readStackSettings, type StackSettings } from './stack.ts';

/** `parseArgs` options every operator command accepts. */
export const commonOptions = {
  fleet: { type: 'string' },
  local: { type: 'string' },
  region: { type: 'string' },
  'fleet-config-secret-id': { type: 'string' },
  'ca-arn': { type: 'string' },
  'template-arn': { type: 'string' },
  cluster: { type: 'string' },
  service: { type: 'string' },
  stack: { type: 'string' },
  profile: { type: 'string' },
  'allowlist-bucket': { type: 'string' },
} as const;

/** Help text lines for {@link commonOptions}. */
export const targetHelp = `Target (AWS by default: SDK credentials and region):
  --local DIR           act on a local fleet directory (the demo's --state-dir) instead of AWS
  --region REGION       AWS region (default: the SDK's, e.g. AWS_REGION)
  --fleet-config-secret-id ID   default $FLEET_CONFIG_SECRET_ID or portcullis/<fleet>/fleet-config
  --ca-arn ARN          Private CA (default $CA_ARN); --template-arn ARN (default $CA_TEMPLATE_ARN)
  --cluster NAME        ECS cluster (default $ECS_CLUSTER); --service NAME (default $ECS_SERVICE)
  --stack NAME          read the fleet, fleet config secret, cluster, service, state machine ARNs,
                        allowlist bucket, CA and log groups from this CloudFormation stack's outputs
  --profile NAME        AWS shared-config profile (default: the SDK's, e.g. AWS_PROFILE)
  --allowlist-bucket B  the fleet's allowlist bucket (default $ALLOWLIST_BUCKET; prefix $ALLOWLIST_PREFIX
                        or allowlists/<fleet>/): large allowlist changes are uploaded there
  Task ports: $SIDECAR_ADMIN_PORT (default 9901), $VERIFY_PORT (verification listener, default ${DEFAULT_VERIFY_PORT})`;

/** The paths inside a local directory. */
export function localPaths(dir: string) {
  const root = resolve(dir);
  return {
    root,
    store: join(root, 'store'),
    ca: join(root, 'ca'),
    fleet: join(root, 'fleet'),
    events: join(root, 'events.jsonl'),
  };
}

export interface ControlPlaneTarget {
  readonly kind: 'local' | 'aws';
  readonly fleet: string;
  readonly fleetConfigSecretId: string;
  readonly store: SecretStore;
  /** Local only: the directory. */
  readonly localDir?: string;
  /** AWS with `--stack`: what the stack's outputs say. */
  readonly stack?: StackSettings;
  /** AWS: a Step Functions client of this target's `--region`/`--profile` (undefined: the SDK default's). */
  stepFunctions?(): SFNClient | undefined;
  authority(): CertificateAuthority;
  fleetPort(): Fleet;
  taskClient(): Promise<TaskClient>;
  notifier(): Notifier;
  /**
   * Where allowlist changes too large for an execution input are uploaded: the local object
   * store, or on AWS the bucket of `--allowlist-bucket` / `$ALLOWLIST_BUCKET` (undefined without one).
   */
  allowlistObjects(): { store: ObjectStore; prefix: string } | undefined;
  /** Everything a local workflow run needs. */
  ports(): Promise<ControlPlanePorts>;
  close(): Promise<void>;
}

type Values = Record<string, string | boolean | string[] | undefined>;

function str(values: Values, key: string): string | undefined {
  const value = values[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

function required(value: string | undefined, what: string): string {
  if (value === undefined) throw new ValidationError(`${what} is required`, { path: what });
  return value;
}

/** A task port from the environment; the message names the variable, which the operator set. */
function envPort(name: string, fallback: number): number {
  const text = env(name);
  if (text === undefined) return fallback;
  const port = /^\d{1,5}$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65_535)) {
    throw new ValidationError(`${name} must be a TCP port (1-65535), got ${JSON.stringify(text)}`, {
      path: name,
    });
  }
  return port;
}

async function nudgeKeyLoader(
  store: SecretStore,
  fleetConfigSecretId: string,
  fleet: string,
): Promise<() => Promise<Buffer>> {
  let cached: Buffer | undefined;
  return async () => {
    if (cached !== undefined) return cached;
    const config = await loadControlPlaneFleet(store, fleetConfigSecretId);
    cached = await readNudgeKey(store, config.nudgeKey?.secretId ?? fleetSecretIds(fleet).nudgeKey);
    return cached;
  };
}

/**
 * Opens the target the options name. Throws `ValidationError` for a missing fleet name or AWS
 * settings a command needs (when it needs them).
 */
export async function openTarget(
  values: Values,
  options: { needAuthority?: boolean; onEvent?: (event: LoggedEvent) => void } = {},
): Promise<ControlPlaneTarget> {
  const stackName = str(values, 'stack');
  let stack: StackSettings | undefined;
  if (stackName !== undefined) {
    if (str(values, 'local') !== undefined)
      throw new ValidationError('--stack names an AWS stack; --local a local directory: use one');
    const stackRegion = str(values, 'region');
    const stackProfile = str(values, 'profile');
    stack = await readStackSettings(stackName, {
      ...(stackRegion === undefined ? {} : { region: stackRegion }),
      ...(stackProfile === undefined ? {} : { profile: stackProfile }),
    });
    // Explicit options win over the stack's outputs.
    const fromStack: Values = {
      fleet: stack.fleet,
      'fleet-config-secret-id': stack.fleetConfigSecretId,
      cluster: stack.cluster,
      service: stack.service,
      'allowlist-bucket': stack.allowlistBucket,
      'ca-arn': stack.certificateAuthorityArn,
    };
    values = {
      ...fromStack,
      ...Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)),
    };
  }
  const fleet = checkFleetName(required(str(values, 'fleet'), '--fleet'));
  const fleetConfigSecretId =
    str(values, 'fleet-config-secret-id') ??
    env('FLEET_CONFIG_SECRET_ID') ??
    fleetSecretIds(fleet).fleetConfig;
  const localDir = str(values, 'local');
  if (localDir !== undefined) {
    const paths = localPaths(localDir);
    const store = await FileSecretStore.open(paths.store);
    let authority: LocalAuthority | undefined;
    if (options.needAuthority === true) authority = await LocalAuthority.open(paths.ca);
    const fleetPort = new RegistryFleet(paths.fleet);
    const notifier = new LogNotifier({
      file: paths.events,
      ...(options.onEvent ? { sink: options.onEvent } : {}),
    });
    let taskClient: TaskClient | undefined;
    const objects = localAllowlistObjects(paths.store, fleet);
    const target: ControlPlaneTarget = {
      kind: 'local',
      allowlistObjects: () => objects,
      fleet,
      fleetConfigSecretId,
      store,
      localDir: paths.root,
      authority: () => {
        if (authority === undefined) throw new ValidationError('this command does not use the CA');
        return authority;
      },
      fleetPort: () => fleetPort,
      async taskClient() {
        taskClient ??= new HttpTaskClient({
          nudgeKey: await nudgeKeyLoader(store, fleetConfigSecretId, fleet),
        });
        return taskClient;
      },
      notifier: () => notifier,
      async ports() {
        authority ??= await LocalAuthority.open(paths.ca);
        return {
          fleetName: fleet,
          fleetConfigSecretId,
          store,
          authority,
          fleet: fleetPort,
          taskClient: await target.taskClient(),
          notifier,
          allowlistObjects: objects,
        };
      },
      async close() {},
    };
    return target;
  }

  // --region goes to this target's own clients; without it the adapters share their
  // module-scope clients (SDK default region). The process environment is left alone, so
  // nothing else in the process (another target, a test) changes region behind its back.
  const region = str(values, 'region');
  const profile = str(values, 'profile');
  const owned: { destroy(): void }[] = [];
  function regional<C extends { destroy(): void }>(
    Client: new (config: { region?: string; profile?: string } & ReturnType<typeof awsClientConfig>) => C,
  ): { client: C } | Record<string, never> {
    if (region === undefined && profile === undefined) return {};
    // The same connect and request limits as the adapters' own clients.
    const client = new Client({
      ...(region === undefined ? {} : { region }),
      ...(profile === undefined ? {} : { profile }),
      ...awsClientConfig(),
    });
    owned.push(client);
    return { client };
  }
  const store = new SecretsManagerStore(regional(SecretsManagerClient));
  let objects: { store: ObjectStore; prefix: string } | undefined;
  let authority: CertificateAuthority | undefined;
  let fleetPort: Fleet | undefined;
  let taskClient: TaskClient | undefined;
  const target: ControlPlaneTarget = {
    kind: 'aws',
    ...(stack === undefined ? {} : { stack }),
    stepFunctions: () => {
      const own = regional(SFNClient);
      return 'client' in own ? own.client : undefined;
    },
    fleet,
    fleetConfigSecretId,
    store,
    allowlistObjects() {
      const bucket = str(values, 'allowlist-bucket') ?? env('ALLOWLIST_BUCKET');
      if (bucket === undefined) return undefined;
      objects ??= {
        store: new S3ObjectStore({ bucket, ...regional(S3Client) }),
        prefix: env('ALLOWLIST_PREFIX') ?? allowlistPrefix(fleet),
      };
      return objects;
    },
    authority() {
      authority ??= new AcmPcaAuthority({
        certificateAuthorityArn: required(str(values, 'ca-arn') ?? env('CA_ARN'), '--ca-arn (or CA_ARN)'),
        ...regional(ACMPCAClient),
        ...((str(values, 'template-arn') ?? env('CA_TEMPLATE_ARN'))
          ? { templateArn: (str(values, 'template-arn') ?? env('CA_TEMPLATE_ARN'))! }
          : {}),
      });
      return authority;
    },
    fleetPort() {
      fleetPort ??= new EcsFleet({
        cluster: required(str(values, 'cluster') ?? env('ECS_CLUSTER'), '--cluster (or ECS_CLUSTER)'),
        service: required(str(values, 'service') ?? env('ECS_SERVICE'), '--service (or ECS_SERVICE)'),
        adminPort: envPort('SIDECAR_ADMIN_PORT', 9901),
        // Verification handshakes go to each task's verify listener (the fleet's `listeners.verify`).
        verifyPort: envPort('VERIFY_PORT', DEFAULT_VERIFY_PORT),
        ...regional(ECSClient),
      });
      return fleetPort;
    },
    async taskClient() {
      taskClient ??= new HttpTaskClient({
        nudgeKey: await nudgeKeyLoader(store, fleetConfigSecretId, fleet),
      });
      return taskClient;
    },
    notifier() {
      throw new ValidationError('on AWS the state machines publish events themselves');
    },
    async ports() {
      throw new ValidationError('on AWS workflows run in Step Functions; use --local DIR to run them here');
    },
    async close() {
      // Only the clients this target made: the module-scope ones outlive it.
      for (const client of owned.splice(0)) client.destroy();
    },
  };
  if (options.needAuthority === true) target.authority();
  return target;
}
