/** How one task ended a nudge + verify round. */
export interface TaskOutcome {
  taskId: string;
  /** The hot update could not reach the task: only a fresh deployment will fix it. */
  needsRoll: boolean;
}

export interface TaskSummary {
  needsRoll: boolean;
  updated: string[];
  unreachable: string[];
}

/** Folds per-task outcomes into what the machine branches on (ASL Choice cannot filter arrays). */
export function summariseTasks(outcomes: readonly TaskOutcome[]): TaskSummary {
  const unreachable = outcomes.filter((o) => o.needsRoll).map((o) => o.taskId);
  const updated = outcomes.filter((o) => !o.needsRoll).map((o) => o.taskId);
  return { needsRoll: unreachable.length > 0, updated, unreachable };
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
