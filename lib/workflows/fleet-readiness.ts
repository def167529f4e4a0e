/**
 * Whether a fleet's tasks can start: the secrets a sidecar needs before it serves anything.
 *
 * The stack asks this at every deploy (the `FleetReadiness` custom resource, functions/
 * fleet-readiness.ts) and runs no task while the answer is no: a task cannot become healthy
 * without its secrets, so ECS would replace tasks until the deployment circuit breaker failed
 * the stack. A fleet once ready stays ready (see {@link readinessAnswer}): a later fleet config
 * that names a secret not created yet must not scale a serving fleet to zero.
 */
import { ValidationError } from '../errors.ts';
import { type SecretStore, Stage } from '../ports.ts';
import { errorName, stageHolder, tryDescribe } from './common.ts';
import { allowlistSecretId, loadControlPlaneFleet } from './fleet-config.ts';
import { readCurrentCertificate } from './rotation-steps.ts';

export interface FleetReadiness {
  ready: boolean;
  /** Secrets that do not exist or have no `AWSCURRENT` version (a certificate's placeholder included). */
  missing: string[];
  /** Secrets that exist but that a sidecar would refuse. */
  invalid: { secretId: string; reason: string }[];
}

/**
 * Checks the fleet config's `AWSCURRENT` and every secret it names: each certificate (a bundle
 * a sidecar accepts, not the first rotation's placeholder), the trust bundle, the allowlist and
 * the nudge key. Reads only; errors other than "not found" (access, throttling) are thrown, so
 * that a deploy never mistakes an outage of Secrets Manager for a fleet without secrets.
 */
export async function checkFleetReadiness(
  store: SecretStore,
  fleetConfigSecretId: string,
): Promise<FleetReadiness> {
  let config: Awaited<ReturnType<typeof loadControlPlaneFleet>>;
  try {
    config = await loadControlPlaneFleet(store, fleetConfigSecretId);
  } catch (error) {
    const name = errorName(error);
    if (name === 'NotFoundError') return { ready: false, missing: [fleetConfigSecretId], invalid: [] };
    if (name === 'ValidationError')
      return {
        ready: false,
        missing: [],
        invalid: [{ secretId: fleetConfigSecretId, reason: (error as Error).message }],
      };
    throw error;
  }
  const missing: string[] = [];
  const invalid: FleetReadiness['invalid'] = [];
  for (const spec of config.certificates) {
    const current = await readCurrentCertificate(store, spec.secretId, spec);
    if (current === undefined) missing.push(spec.secretId);
    else if (current === 'unreadable')
      invalid.push({ secretId: spec.secretId, reason: 'AWSCURRENT is not a usable certificate bundle' });
  }
  const others = [config.trust?.secretId, allowlistSecretId(config), config.nudgeKey?.secretId].filter(
    (id): id is string => id !== undefined,
  );
  for (const secretId of others)
    if (stageHolder(await tryDescribe(store, secretId), Stage.Current) === undefined) missing.push(secretId);
  return { ready: missing.length === 0 && invalid.length === 0, missing, invalid };
}

/** The task counts the stack gives the service. */
export interface Capacity {
  desiredCount: number;
  minCapacity: number;
  maxCapacity: number;
}

export interface ReadinessAnswer {
  ready: boolean;
  /** `true` when the fleet was ready at an earlier deploy and is kept so although the check says no. */
  kept: boolean;
  capacity: Capacity;
  /** The custom resource's physical id: it records readiness from one deploy to the next. */
  physicalResourceId: string;
}

/** The physical id of a fleet's readiness resource, by state. */
export function readinessResourceId(fleet: string, ready: boolean): string {
  return `portcullis-${fleet}-${ready ? 'ready' : 'waiting-for-secrets'}`;
}

/**
 * What the stack is told (pure): the configured capacity when the fleet is ready or was ready
 * at an earlier deploy (`previousResourceId`), else zero tasks and autoscaling between 0 and 0.
 */
export function readinessAnswer(
  fleet: string,
  check: Pick<FleetReadiness, 'ready'>,
  capacity: Capacity,
  previousResourceId?: string,
): ReadinessAnswer {
  const kept = !check.ready && previousResourceId === readinessResourceId(fleet, true);
  const ready = check.ready || kept;
  return {
    ready,
    kept,
    capacity: ready ? capacity : { desiredCount: 0, minCapacity: 0, maxCapacity: 0 },
    physicalResourceId: readinessResourceId(fleet, ready),
  };
}

/** The custom resource's properties (serverless/fleet.yml `FleetReadiness`). */
export interface ReadinessProperties extends Capacity {
  fleet: string;
  fleetConfigSecretId: string;
}

/** Reads the resource properties; CloudFormation passes every scalar as a string. @throws ValidationError */
export function parseReadinessProperties(properties: Record<string, unknown>): ReadinessProperties {
  const text = (key: string) => {
    const value = properties[key];
    if (typeof value !== 'string' || value === '')
      throw new ValidationError(`FleetReadiness property ${key} is required`, { path: key });
    return value;
  };
  const count = (key: string) => {
    const value = Number(text(key));
    if (!Number.isInteger(value) || value < 0)
      throw new ValidationError(`FleetReadiness property ${key} must be a whole number ≥ 0`, { path: key });
    return value;
  };
  const parsed = {
    fleet: text('Fleet'),
    fleetConfigSecretId: text('FleetConfigSecretId'),
    desiredCount: count('DesiredCount'),
    minCapacity: count('MinCapacity'),
    maxCapacity: count('MaxCapacity'),
  };
  if (parsed.minCapacity > parsed.maxCapacity)
    throw new ValidationError('FleetReadiness MinCapacity is above MaxCapacity', { path: 'MinCapacity' });
  return parsed;
}

/** One request to the `FleetReadiness` custom resource, protocol aside. */
export interface ReadinessRequest {
  requestType: 'Create' | 'Update' | 'Delete';
  /** The resource's physical id so far (Update, Delete). */
  physicalResourceId?: string;
  properties: Record<string, unknown>;
}

export interface ReadinessResult {
  physicalResourceId: string;
  /** Shown in the stack's events. */
  reason: string;
  /** The resource's attributes (`Fn::GetAtt`): Ready, DesiredCount, MinCapacity, MaxCapacity. */
  data: Record<string, string>;
  readiness?: FleetReadiness;
}

/**
 * Answers one custom resource request: Delete does nothing (the resource owns nothing); Create
 * and Update check the fleet's secrets and give the stack the task counts to use.
 * @throws ValidationError for bad properties; any error of the store but "not found"
 */
export async function fleetReadinessResource(
  store: SecretStore,
  request: ReadinessRequest,
): Promise<ReadinessResult> {
  if (request.requestType === 'Delete')
    return {
      physicalResourceId: request.physicalResourceId ?? 'none',
      reason: 'nothing to delete',
      data: {},
    };
  const properties = parseReadinessProperties(request.properties);
  const readiness = await checkFleetReadiness(store, properties.fleetConfigSecretId);
  const answer = readinessAnswer(
    properties.fleet,
    readiness,
    properties,
    request.requestType === 'Update' ? request.physicalResourceId : undefined,
  );
  const waitingFor = [
    ...readiness.missing.map((id) => `${id} (missing)`),
    ...readiness.invalid.map((i) => `${i.secretId} (${i.reason})`),
  ].join(', ');
  const reason = readiness.ready
    ? `fleet ${properties.fleet}: every secret in place, ${properties.desiredCount} tasks`
    : answer.kept
      ? `fleet ${properties.fleet} was ready at an earlier deploy and keeps its tasks; not in place now: ${waitingFor}`
      : `fleet ${properties.fleet}: no tasks until its secrets exist (run portcullis init, then deploy again); waiting for ${waitingFor}`;
  return {
    physicalResourceId: answer.physicalResourceId,
    reason,
    data: {
      Ready: String(answer.ready),
      DesiredCount: String(answer.capacity.desiredCount),
      MinCapacity: String(answer.capacity.minCapacity),
      MaxCapacity: String(answer.capacity.maxCapacity),
    },
    readiness,
  };
}
