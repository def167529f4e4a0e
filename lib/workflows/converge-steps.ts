/** The converge-task step: bring one (new) task to the fleet's current versions. */
import type { z } from 'zod';
import { ServedVersionMismatch, TaskUnreachable, unlessNotFound } from '../errors.ts';
import { type FleetTask, type SecretStore, Stage } from '../ports.ts';
import { type DesiredSecret, staleSecrets } from '../rotation/converge.ts';
import { rotationLease } from '../rotation/lease.ts';
import { assertFleet, nowOf, readDocument, requireStageHolder, tryGetVersion } from './common.ts';
import { PlaceholderDocument } from './documents.ts';
import { allowlistSecretId, loadControlPlaneFleet } from './fleet-config.ts';
import type { ControlPlanePorts } from './ports.ts';
import type { ConvergeTaskInput } from './schemas.ts';

export interface ConvergeTaskResult {
  taskId: string;
  /**
   * `converged`: the task serves every current version; `not-in-fleet`: the event is about a
   * task of another service (or one ECS no longer knows); `not-running`: the task is not (or no
   * longer) RUNNING, or is being stopped; `superseded`: the task changed again after the event
   * (its `version` is higher), and the event of that change runs its own convergence.
   */
  outcome: 'converged' | 'not-in-fleet' | 'not-running' | 'superseded';
  nudged: string[];
}

/** Whether an ECS task ARN (or id) names this task id. */
export function sameTask(taskId: string, wanted: string): boolean {
  const idOf = (value: string) => value.slice(value.lastIndexOf('/') + 1);
  return taskId === wanted || idOf(taskId) === idOf(wanted);
}

/**
 * What to do with a task an event (or an operator) names, from what the fleet says about it
 * now (pure). An `ECS Task State Change` carries the task's `version` at that change; ECS
 * raises it on every later change (container health, stop), and EventBridge delivers at least
 * once and not necessarily in order. When the task has moved past the event, the later event
 * (which the rule matches too while the task stays RUNNING) does the work: two executions for
 * one task at once would only nudge it twice.
 */
export function convergeDecision(
  task: FleetTask | undefined,
  eventVersion: number | undefined,
): 'converge' | Exclude<ConvergeTaskResult['outcome'], 'converged'> {
  if (task === undefined) return 'not-in-fleet';
  if (
    task.lastStatus !== 'RUNNING' ||
    (task.desiredStatus !== undefined && task.desiredStatus !== 'RUNNING')
  ) {
    return 'not-running';
  }
  if (eventVersion !== undefined && task.version !== undefined && task.version > eventVersion) {
    return 'superseded';
  }
  return 'converge';
}

/**
 * ConvergeTask: compares the task's status with `AWSCURRENT` of every fleet secret, nudges
 * the stale ones and checks again. Only the event's task is described (one `DescribeTasks`,
 * not the whole service); a stale or duplicate event ends without touching the task
 * ({@link convergeDecision}), and so does a retry after the task changed again. A sidecar that
 * does not answer yet or is not ready is `TaskUnreachable` (the machine retries with backoff);
 * one that still serves something else after its nudge is `ServedVersionMismatch`.
 */
export function makeConvergeTask(ports: ControlPlanePorts) {
  return async function convergeTaskStep(
    event: z.output<typeof ConvergeTaskInput>,
  ): Promise<ConvergeTaskResult> {
    let wanted: string;
    let eventVersion: number | undefined;
    if ('detail' in event && event['detail-type'] === 'ECS Task State Change') {
      wanted = event.detail.taskArn;
      eventVersion = event.detail.version;
    } else {
      const manual = event as { fleet?: string; taskId: string };
      assertFleet(ports, manual.fleet);
      wanted = manual.taskId;
    }
    const fleet = ports.fleet;
    const task = fleet.describeTask
      ? await fleet.describeTask(wanted)
      : (await fleet.listTasks()).find((t) => sameTask(t.taskId, wanted));
    const decision = convergeDecision(task, eventVersion);
    if (task === undefined || decision !== 'converge') {
      return {
        taskId: task?.taskId ?? wanted,
        outcome: decision as ConvergeTaskResult['outcome'],
        nudged: [],
      };
    }

    const status = await ports.taskClient.status(task);
    if (!status.ready) throw new TaskUnreachable(`task ${task.taskId}: sidecar not ready yet`);

    const config = await loadControlPlaneFleet(ports.store, ports.fleetConfigSecretId);
    const desired: DesiredSecret[] = [];
    for (const spec of config.certificates) {
      // A certificate not issued yet (no secret, or its placeholder) is nothing to converge to.
      const current = await unlessNotFound(ports.store.get(spec.secretId, { stage: Stage.Current }));
      if (current === undefined || readDocument(PlaceholderDocument, current.value) !== undefined) continue;
      desired.push({
        kind: 'certificate',
        name: spec.name,
        secretId: spec.secretId,
        versionId: current.versionId,
        rotatingTo: await livePendingVersion(ports.store, spec.secretId, nowOf(ports)),
      });
    }
    const allowlist = allowlistSecretId(config);
    if (allowlist !== undefined) {
      const versionId = requireStageHolder(await ports.store.describe(allowlist), Stage.Current);
      desired.push({ kind: 'allowlist', secretId: allowlist, versionId });
    }
    if (config.trust !== undefined) {
      const versionId = requireStageHolder(await ports.store.describe(config.trust.secretId), Stage.Current);
      desired.push({ kind: 'trust', secretId: config.trust.secretId, versionId });
    }

    const stale = staleSecrets(status, desired);
    for (const secret of stale) {
      await ports.taskClient.nudge(task, { secretId: secret.secretId, versionId: secret.versionId });
    }
    if (stale.length > 0) {
      const still = staleSecrets(await ports.taskClient.status(task), desired);
      if (still.length > 0) {
        throw new ServedVersionMismatch(
          `task ${task.taskId} still serves other versions of ${still.map((s) => s.secretId).join(', ')}`,
        );
      }
    }
    return { taskId: task.taskId, outcome: 'converged', nudged: stale.map((s) => s.secretId) };
  };
}

/**
 * The certificate's `AWSPENDING` while a rotation holds it (lease live), so converge leaves a
 * task the rotation nudged there alone and `status` counts it in sync; an abandoned (stale) one
 * is not returned.
 */
export async function livePendingVersion(
  store: SecretStore,
  secretId: string,
  now: Date,
): Promise<string | undefined> {
  const description = await store.describe(secretId);
  const version = description.versions.find((v) => v.stages.includes(Stage.Pending));
  if (version === undefined) return undefined;
  const createdAt = version.createdAt ?? (await tryGetVersion(store, secretId, version.versionId))?.createdAt;
  if (createdAt === undefined) return undefined;
  const lease = rotationLease({
    versions: [{ versionId: version.versionId, stages: [Stage.Pending], createdAt }],
    ownVersionIds: new Set(),
    now,
  });
  return lease.held.length > 0 ? version.versionId : undefined;
}
