import type { z } from 'zod';
import { NotFoundError, unlessNotFound, ValidationError } from '../errors.ts';
import {
  type FleetTask,
  type SecretDescription,
  type SecretStore,
  type SecretValue,
  Stage,
} from '../ports.ts';
import type { CertificateSpec } from '../rotation/certificate-spec.ts';
import type { ControlPlaneFleet } from './fleet-config.ts';
import type { ControlPlanePorts } from './ports.ts';
import type { TaskRef } from './schemas.ts';

/** Refuses an input that names another fleet than the one this deployment manages. */
export function assertFleet(ports: ControlPlanePorts, fleet: string | undefined): string {
  if (fleet !== undefined && fleet !== ports.fleetName) {
    throw new ValidationError(`this control plane manages fleet '${ports.fleetName}', not '${fleet}'`, {
      path: 'fleet',
    });
  }
  return ports.fleetName;
}

export function nowOf(ports: ControlPlanePorts): Date {
  return ports.now?.() ?? new Date();
}

export function findSpec(config: ControlPlaneFleet, name: string): CertificateSpec {
  const spec = config.certificates.find((c) => c.name === name);
  if (spec === undefined) {
    throw new ValidationError(`fleet '${config.fleet}' has no certificate '${name}'`, {
      path: 'certificate',
    });
  }
  return spec;
}

/** One version by id, or `undefined` when it (or the secret) does not exist. */
export async function tryGetVersion(
  store: SecretStore,
  secretId: string,
  versionId: string,
): Promise<SecretValue | undefined> {
  return unlessNotFound(store.get(secretId, { versionId }));
}

export async function tryDescribe(
  store: SecretStore,
  secretId: string,
): Promise<SecretDescription | undefined> {
  return unlessNotFound(store.describe(secretId));
}

export function stageHolder(description: SecretDescription | undefined, stage: string): string | undefined {
  return description?.versions.find((v) => v.stages.includes(stage))?.versionId;
}

/**
 * The version `AWSCURRENT` was on before `versionId` took it: `AWSCURRENT` itself, or
 * `AWSPREVIOUS` when `versionId` already holds `AWSCURRENT` (a re-run after the move).
 */
export function currentBefore(description: SecretDescription, versionId: string): string | null {
  const current = stageHolder(description, Stage.Current);
  return (current === versionId ? stageHolder(description, Stage.Previous) : current) ?? null;
}

export function requireStageHolder(description: SecretDescription, stage: string): string {
  const holder = stageHolder(description, stage);
  if (holder === undefined)
    throw new NotFoundError(`secret '${description.secretId}' has no ${stage} version`);
  return holder;
}

/** Parses a JSON document we wrote ourselves; `undefined` when it is not one of that shape. */
export function readDocument<T>(schema: z.ZodType<T>, text: string): T | undefined {
  try {
    const result = schema.safeParse(JSON.parse(text));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}

export function toFleetTask(ref: TaskRef): FleetTask {
  return { ...ref };
}

export function toTaskRef(task: FleetTask): TaskRef {
  return {
    taskId: task.taskId,
    address: task.address,
    adminPort: task.adminPort,
    tlsAddress: task.tlsAddress,
    tlsPort: task.tlsPort,
    lastStatus: task.lastStatus,
  };
}

/** An error's name if it is one of ours (or any named error), for results and events. */
export function errorName(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}

/** The first line of an error message, never more than 300 characters (no key material is ever in them). */
export function errorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split('\n')[0] ?? '').slice(0, 300);
}

/**
 * The store side of a rollback: moves `AWSCURRENT` back where the plan says and drops
 * `AWSPENDING`, each only from the version this execution staged (a label another execution
 * moved since is left alone).
 */
export async function undoStaging(
  store: SecretStore,
  secretId: string,
  stagedVersionId: string,
  plan: { restoreCurrentTo: string | null; dropPending: boolean },
): Promise<void> {
  if (plan.restoreCurrentTo !== null) {
    await store.moveStage(secretId, Stage.Current, plan.restoreCurrentTo, { fromVersionId: stagedVersionId });
  }
  if (plan.dropPending) {
    await store.moveStage(secretId, Stage.Pending, undefined, { fromVersionId: stagedVersionId });
  }
}

/** Tasks a rollback nudges back at once (the task Map's `MaxConcurrency`). */
const NUDGE_BACK_CONCURRENCY = 10;

/**
 * Nudges every running task to `AWSCURRENT` of `secretId`, as a rollback does. It never throws:
 * a rollback keeps undoing what it can, so failures become `notes`, and the sidecars' poll
 * backstop returns the tasks it could not reach.
 */
export async function nudgeTasksBack(
  ports: ControlPlanePorts,
  secretId: string,
  notes: string[],
): Promise<{ nudged: string[]; unreachable: string[] }> {
  const nudged: string[] = [];
  const unreachable: string[] = [];
  let tasks: FleetTask[] = [];
  try {
    tasks = await ports.fleet.listTasks();
  } catch (error) {
    notes.push(`tasks not listed, none nudged back: ${errorName(error)}: ${errorMessage(error)}`);
  }
  // Side by side (as many at a time as the machines' task Map): one at a time, a few tasks
  // that never answer (each waits out the client's timeout) would use up the rollback's time
  // limit, and the revocation that follows the nudges would never happen.
  const failures = new Map<string, unknown>();
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const task = tasks[next++]!;
      try {
        await ports.taskClient.nudge(task, { secretId });
      } catch (error) {
        failures.set(task.taskId, error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(NUDGE_BACK_CONCURRENCY, tasks.length) }, worker));
  for (const task of tasks) {
    if (!failures.has(task.taskId)) {
      nudged.push(task.taskId);
      continue;
    }
    const error = failures.get(task.taskId);
    unreachable.push(task.taskId);
    notes.push(`task ${task.taskId} not nudged back: ${errorName(error)}: ${errorMessage(error)}`);
  }
  return { nudged, unreachable };
}
