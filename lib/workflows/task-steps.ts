/**
 * Steps shared by the machines: update the fleet in batches (nudge and verify each task),
 * promote a staged version, roll the service and watch the rollout, publish events.
 */
import type { z } from 'zod';
import { RolloutFailed, ServedVersionMismatch, TaskUnreachable, ValidationError } from '../errors.ts';
import { sameSerial } from '../pki/serial.ts';
import { type FleetTask, Stage, type TaskStatus } from '../ports.ts';
import type { CertificateSpec } from '../rotation/certificate-spec.ts';
import {
  rolloutStep,
  summariseBatches,
  summariseTasks,
  TASK_BATCH_CONCURRENCY,
  type TaskSummary,
  taskBatchOf,
  UNREACHABLE_SAMPLE,
} from '../rotation/tasks.ts';
import {
  assertFleet,
  currentBefore,
  findSpec,
  nowOf,
  stageHolder,
  toFleetTask,
  toTaskRef,
} from './common.ts';
import { loadControlPlaneFleet, servedSecretIds } from './fleet-config.ts';
import type { ControlPlanePorts } from './ports.ts';
import type {
  CheckRolloutInput,
  NotifyInput,
  NudgeTaskInput,
  PromoteSecretInput,
  RollServiceInput,
  TaskBatchResult,
  UpdateTasksInput,
  VerifyTarget,
} from './schemas.ts';

/**
 * Asks one sidecar to apply a version now (UpdateTasks, ConvergeTask). `TaskUnreachable` (the
 * task is marked for a roll) and `ValidationError` (the sidecar refused the content: roll back)
 * pass through.
 */
export function makeNudgeTask(ports: ControlPlanePorts) {
  return async function nudgeTaskStep(
    event: z.output<typeof NudgeTaskInput>,
  ): Promise<{ taskId: string; applied: boolean }> {
    assertFleet(ports, event.fleet);
    const status = await ports.taskClient.nudge(toFleetTask(event.task), {
      secretId: event.secretId,
      ...(event.versionId ? { versionId: event.versionId } : {}),
      ...(event.timeoutMs === undefined ? {} : { timeoutMs: event.timeoutMs }),
    });
    return { taskId: event.task.taskId, applied: status.lastApply?.ok ?? true };
  };
}

/** A name inside a server certificate's first DNS name, for the verification handshake (`*.x` → `portcullis-verify.x`). */
export function verificationServerName(dns: string): string {
  return dns.startsWith('*.') ? `portcullis-verify${dns.slice(1)}` : dns;
}

/**
 * Checks that a task serves the target: server certificates by a real TLS handshake (the served
 * leaf's serial), client certificates and allowlists by the sidecar's status. Anything else
 * than the target is `ServedVersionMismatch`. `spec`: the target certificate's, looked up once
 * per batch.
 */
async function verifyServed(
  ports: ControlPlanePorts,
  task: FleetTask,
  target: VerifyTarget,
  spec: CertificateSpec | undefined,
): Promise<void> {
  if (target.kind === 'certificate') {
    if (spec === undefined) throw new ValidationError(`no certificate spec for ${target.name}`);
    let served: string | undefined;
    if (spec.usage === 'server') {
      served = (await ports.taskClient.servedCertificate(task, verificationServerName(spec.dns[0]!))).serial;
    } else {
      served = (await readyStatus(ports, task)).certificates[spec.name]?.serial;
    }
    if (served === undefined || !sameSerial(served, target.serial)) {
      throw new ServedVersionMismatch(
        `task ${task.taskId} serves serial ${served ?? 'none'} for ${spec.name}, expected ${target.serial}`,
      );
    }
    return;
  }
  const status = await readyStatus(ports, task);
  if (status.allowlist?.versionId !== target.versionId) {
    throw new ServedVersionMismatch(
      `task ${task.taskId} serves allowlist version ${status.allowlist?.versionId ?? 'none'}, expected ${target.versionId}`,
    );
  }
}

/**
 * The sidecar's status, or `TaskUnreachable` while it is not ready: a sidecar that is still
 * starting (or restarting) reports no versions yet, which is not a mismatch to roll back for.
 */
async function readyStatus(ports: ControlPlanePorts, task: FleetTask): Promise<TaskStatus> {
  const status = await ports.taskClient.status(task);
  if (!status.ready) throw new TaskUnreachable(`task ${task.taskId}: sidecar not ready yet`);
  return status;
}

/**
 * How long UpdateTasks waits for a sidecar to answer an allowlist nudge: applying 100 000
 * entries (fetch, digest, parse, one ACL swap, read back) takes seconds on a small Fargate task,
 * longer than a certificate's. A batch of 100 tasks, 10 at a time, stays inside the function's
 * 600 s even if every nudge waits this long and every status check its 10 s.
 */
export const ALLOWLIST_NUDGE_TIMEOUT_MS = 30_000;

/**
 * UpdateTasks: nudges and verifies one batch of the fleet (the running tasks whose id hashes to
 * `batch.index`), {@link TASK_BATCH_CONCURRENCY} at a time, with the same rules for every task:
 * a task it cannot reach (`TaskUnreachable` from either) is marked for a service roll; any
 * other failure (the sidecar refused the content, `ServedVersionMismatch`) stops the batch — no
 * task is started after it — and is thrown by name, for the machine to roll back.
 * Returns counts and at most {@link UNREACHABLE_SAMPLE} unreachable task ids.
 */
export function makeUpdateTasks(ports: ControlPlanePorts) {
  const nudge = makeNudgeTask(ports);
  return async function updateTasksStep(event: z.output<typeof UpdateTasksInput>): Promise<TaskBatchResult> {
    const fleet = assertFleet(ports, event.fleet);
    const spec =
      event.target.kind === 'certificate'
        ? findSpec(await loadControlPlaneFleet(ports.store, ports.fleetConfigSecretId), event.target.name)
        : undefined;
    const inBatch = (taskId: string) => taskBatchOf(taskId, event.batch.of) === event.batch.index;
    // The fleet describes only this batch's tasks where it can; the filter holds either way.
    const tasks = (await ports.fleet.listTasks({ select: inBatch })).filter((task) => inBatch(task.taskId));
    const unreachable: string[] = [];
    let updated = 0;
    let failure: unknown;
    let next = 0;
    const worker = async () => {
      while (failure === undefined && next < tasks.length) {
        const ref = toTaskRef(tasks[next++]!);
        try {
          await nudge({
            fleet,
            task: ref,
            secretId: event.target.secretId,
            versionId: event.target.versionId,
            ...(event.target.kind === 'allowlist' ? { timeoutMs: ALLOWLIST_NUDGE_TIMEOUT_MS } : {}),
          });
          await verifyServed(ports, toFleetTask(ref), event.target, spec);
          updated += 1;
        } catch (error) {
          if (error instanceof TaskUnreachable) unreachable.push(ref.taskId);
          else failure ??= error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(TASK_BATCH_CONCURRENCY, tasks.length) }, worker));
    if (failure !== undefined) throw failure;
    unreachable.sort();
    return {
      updated,
      unreachable: unreachable.slice(0, UNREACHABLE_SAMPLE),
      unreachableCount: unreachable.length,
    };
  };
}

export interface PromoteSecretResult extends TaskSummary {
  secretId: string;
  versionId: string;
  previousVersionId: string | null;
  /** When the version became (or was found) current: tasks that start later read it. */
  promotedAt: string;
}

/**
 * PromoteSecret: `AWSCURRENT` onto the verified version (the store labels the one it left
 * `AWSPREVIOUS`), `AWSPENDING` removed from it. Also folds the per-task outcomes, since ASL
 * cannot ask "did any task need a roll?" of an array.
 */
export function makePromoteSecret(ports: ControlPlanePorts) {
  return async function promoteSecretStep(
    event: z.output<typeof PromoteSecretInput>,
  ): Promise<PromoteSecretResult> {
    assertFleet(ports, event.fleet);
    const config = await loadControlPlaneFleet(ports.store, ports.fleetConfigSecretId);
    if (!servedSecretIds(config).includes(event.secretId)) {
      throw new ValidationError(`secret '${event.secretId}' is not one of fleet '${config.fleet}'s secrets`, {
        path: 'secretId',
      });
    }
    const before = await ports.store.describe(event.secretId);
    const current = stageHolder(before, Stage.Current);
    if (current !== event.versionId) {
      await ports.store.moveStage(event.secretId, Stage.Current, event.versionId, {
        ...(current === undefined ? {} : { fromVersionId: current }),
      });
    }
    if (stageHolder(before, Stage.Pending) === event.versionId) {
      await ports.store.moveStage(event.secretId, Stage.Pending, undefined, {
        fromVersionId: event.versionId,
      });
    }
    return {
      secretId: event.secretId,
      versionId: event.versionId,
      previousVersionId: currentBefore(before, event.versionId),
      promotedAt: nowOf(ports).toISOString(),
      ...(event.batches === undefined ? summariseTasks(event.tasks) : summariseBatches(event.batches)),
    };
  };
}

export interface RolloutResult {
  deploymentId: string;
  poll: number;
  state: 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';
}

/** RollService: a fresh deployment, for the tasks a hot update could not reach. */
export function makeRollService(ports: ControlPlanePorts) {
  return async function rollServiceStep(event: z.output<typeof RollServiceInput>): Promise<RolloutResult> {
    assertFleet(ports, event.fleet);
    const { deploymentId } = await ports.fleet.roll(
      event.notBefore === undefined ? {} : { reuseSince: new Date(event.notBefore) },
    );
    return { deploymentId, poll: 0, state: 'IN_PROGRESS' };
  };
}

/** CheckRollout: one look at the deployment; `RolloutFailed` when it failed or the checks ran out. */
export function makeCheckRollout(ports: ControlPlanePorts) {
  return async function checkRolloutStep(event: z.output<typeof CheckRolloutInput>): Promise<RolloutResult> {
    assertFleet(ports, event.fleet);
    const state = await ports.fleet.rolloutState(event.deploymentId);
    const poll = event.poll + 1;
    const step = rolloutStep(state, poll, event.maxPolls);
    if (step === 'failed') throw new RolloutFailed(`deployment ${event.deploymentId} failed`);
    if (step === 'exhausted') {
      throw new RolloutFailed(`deployment ${event.deploymentId} still in progress after ${poll} checks`);
    }
    return { deploymentId: event.deploymentId, poll, state };
  };
}

/** Notify: publishes one control-plane event; the fleet name is always part of the detail. */
export function makeNotify(ports: ControlPlanePorts) {
  return async function notifyStep(
    event: z.output<typeof NotifyInput>,
  ): Promise<{ published: true; detailType: string }> {
    await ports.notifier.publish(event.detailType, { ...event.detail, fleet: ports.fleetName });
    return { published: true, detailType: event.detailType };
  };
}
