/** How one task ended a nudge + verify round. */
export interface TaskOutcome {
  taskId: string;
  /** The hot update could not reach the task: only a fresh deployment will fix it. */
  needsRoll: boolean;
}

export interface TaskSummary {
  needsRoll: boolean;
  /** The tasks updated in place (empty when the outcomes came in batches: see `updatedCount`). */
  updated: string[];
  /** The tasks a hot update could not reach (at most {@link UNREACHABLE_SAMPLE} per batch). */
  unreachable: string[];
  updatedCount: number;
  unreachableCount: number;
}

/** Folds per-task outcomes into what the machine branches on (ASL Choice cannot filter arrays). */
export function summariseTasks(outcomes: readonly TaskOutcome[]): TaskSummary {
  const unreachable = outcomes.filter((o) => o.needsRoll).map((o) => o.taskId);
  const updated = outcomes.filter((o) => !o.needsRoll).map((o) => o.taskId);
  return {
    needsRoll: unreachable.length > 0,
    updated,
    unreachable,
    updatedCount: updated.length,
    unreachableCount: unreachable.length,
  };
}

/**
 * Task ids an UpdateTasks result names at most: its payload (and the execution's history)
 * grows with the failures, never past this many per batch; the count stays exact.
 */
export const UNREACHABLE_SAMPLE = 50;

/** Tasks one UpdateTasks invocation nudges and verifies at a time. */
export const TASK_BATCH_CONCURRENCY = 10;

/** Folds UpdateTasks results the way {@link summariseTasks} folds per-task outcomes. */
export function summariseBatches(
  batches: readonly { updated: number; unreachable: readonly string[]; unreachableCount: number }[],
): TaskSummary {
  const unreachableCount = batches.reduce((n, b) => n + b.unreachableCount, 0);
  return {
    needsRoll: unreachableCount > 0,
    updated: [],
    unreachable: batches.flatMap((b) => b.unreachable),
    updatedCount: batches.reduce((n, b) => n + b.updated, 0),
    unreachableCount,
  };
}

/**
 * The batch (of `of`) a task belongs to: FNV-1a of its id. Every UpdateTasks invocation lists
 * the fleet itself and takes its share, so the execution never carries the task list, and a
 * task is in exactly one batch whatever order the listing returns.
 */
export function taskBatchOf(taskId: string, of: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < taskId.length; i += 1) {
    hash ^= taskId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % of;
}

export type RolloutStep = 'done' | 'wait' | 'failed' | 'exhausted';

/** The next step of the wait-for-rollout loop; bounded by `maxPolls`. */
export function rolloutStep(
  state: 'IN_PROGRESS' | 'COMPLETED' | 'FAILED',
  poll: number,
  maxPolls: number,
): RolloutStep {
  if (state === 'COMPLETED') return 'done';
  if (state === 'FAILED') return 'failed';
  return poll >= maxPolls ? 'exhausted' : 'wait';
}
