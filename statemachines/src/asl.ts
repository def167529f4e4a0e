/**
 * A small description language for the state machines: plain Amazon States Language objects,
 * plus {@link lambdaTask}, which writes the parts every Lambda Task shares (the optimised
 * `lambda:invoke` integration, the function's ARN from the stack, and the retriers documented
 * in `statemachines/README.md`) so that each Task states only what is its own. `npm run asl`
 * (`scripts/generate-asl.ts`) writes `statemachines/<name>.asl.json`, which `serverless.yml` and
 * the local runner read; a test fails when the committed JSON differs from what this generates.
 */

/** One ASL state (Pass, Choice, Map, Wait, Fail, Succeed, Task, …) as Step Functions reads it. */
export type State = { Type: string } & Record<string, unknown>;

export interface StateMachine {
  Comment: string;
  StartAt: string;
  TimeoutSeconds?: number;
  States: Record<string, State>;
}

export interface Retrier {
  ErrorEquals: string[];
  IntervalSeconds: number;
  MaxAttempts: number;
  BackoffRate: number;
  MaxDelaySeconds?: number;
  JitterStrategy: 'FULL' | 'NONE';
}

export interface Catcher {
  ErrorEquals: string[];
  Next: string;
  ResultPath?: string | null;
}

/**
 * What every Lambda Task retries, after its own retriers (`statemachines/README.md`, "Retriers"):
 * the Lambda service's transient errors; a VPC function waking up from Inactive
 * (`ResourceNotReadyException`, `ENINotReadyException`: up to about 3 minutes); and `Throttled`,
 * the adapters' name for an AWS API's throttling after the SDK's own attempts.
 */
export const LAMBDA_RETRIERS: readonly Retrier[] = [
  {
    ErrorEquals: [
      'Lambda.ServiceException',
      'Lambda.AWSLambdaException',
      'Lambda.SdkClientException',
      'Lambda.TooManyRequestsException',
      'Lambda.ClientExecutionTimeoutException',
    ],
    IntervalSeconds: 1,
    MaxAttempts: 3,
    BackoffRate: 2,
    JitterStrategy: 'FULL',
  },
  {
    ErrorEquals: ['Lambda.ResourceNotReadyException', 'Lambda.ENINotReadyException'],
    IntervalSeconds: 5,
    MaxAttempts: 6,
    BackoffRate: 2,
    MaxDelaySeconds: 60,
    JitterStrategy: 'FULL',
  },
  {
    ErrorEquals: ['Throttled'],
    IntervalSeconds: 2,
    MaxAttempts: 5,
    BackoffRate: 2,
    MaxDelaySeconds: 30,
    JitterStrategy: 'FULL',
  },
];

export interface LambdaTaskSpec {
  comment?: string;
  /** The payload template (`Parameters.Payload`); or `payloadPath` for `Payload.$`. */
  payload?: Record<string, unknown>;
  payloadPath?: string;
  timeoutSeconds: number;
  resultSelector?: Record<string, unknown>;
  resultPath?: string | null;
  outputPath?: string;
  /** This Task's own retriers, tried before {@link LAMBDA_RETRIERS}. */
  retry?: Retrier[];
  catch?: Catcher[];
  next?: string;
  end?: true;
}

/**
 * A Task invoking the stack's function `<fn>LambdaFunction` (serverless' logical id for
 * function `<fn>` in camel case) through `arn:aws:states:::lambda:invoke`.
 * @example lambdaTask('Notify', { payload: { 'detail.$': '$' }, timeoutSeconds: 30, next: 'Done' })
 */
export function lambdaTask(fn: string, spec: LambdaTaskSpec): State {
  if ((spec.payload === undefined) === (spec.payloadPath === undefined)) {
    throw new Error(`lambdaTask ${fn}: exactly one of payload and payloadPath`);
  }
  if ((spec.next === undefined) === (spec.end === undefined)) {
    throw new Error(`lambdaTask ${fn}: exactly one of next and end`);
  }
  return {
    ...(spec.comment === undefined ? {} : { Comment: spec.comment }),
    Type: 'Task',
    Resource: 'arn:aws:states:::lambda:invoke',
    Parameters: {
      FunctionName: { 'Fn::GetAtt': [`${fn}LambdaFunction`, 'Arn'] },
      ...(spec.payload === undefined ? { 'Payload.$': spec.payloadPath } : { Payload: spec.payload }),
    },
    TimeoutSeconds: spec.timeoutSeconds,
    ...(spec.resultSelector === undefined ? {} : { ResultSelector: spec.resultSelector }),
    ...(spec.resultPath === undefined ? {} : { ResultPath: spec.resultPath }),
    ...(spec.outputPath === undefined ? {} : { OutputPath: spec.outputPath }),
    Retry: [...(spec.retry ?? []), ...LAMBDA_RETRIERS],
    ...(spec.catch === undefined ? {} : { Catch: spec.catch }),
    ...(spec.next === undefined ? { End: true } : { Next: spec.next }),
  };
}

export interface TaskUpdateSpec {
  /** How many batches: a path to the count (`$.settings.taskBatches`) or a fixed number. */
  batches: string | number;
  /** Path to the fleet name, where the execution's state has one. */
  fleetPath?: string;
  /** What each task must serve afterwards (`VerifyTargetSchema`), as an ItemSelector template. */
  target: Record<string, unknown>;
  next: string;
  /** Where any failure of a batch goes (`States.ALL`, the error at `$.error`). */
  onError: string;
}

/**
 * The fleet update every machine that changes a secret runs: `TaskBatches` (the batch numbers)
 * then `UpdateTasks`, a Map of one `UpdateTasks` Lambda invocation per batch. Each invocation
 * lists the fleet, takes the tasks whose id hashes to its batch, nudges and verifies them
 * concurrently and returns counts plus the tasks it could not reach (at most 50 ids): no task
 * list travels in the execution, so its history and payload grow with batches and failures, not
 * with tasks. The results land in `$.taskOutcomes`, PromoteSecret's `batches`.
 */
export function taskUpdateStates(spec: TaskUpdateSpec): { TaskBatches: State; UpdateTasks: State } {
  const fixed = typeof spec.batches === 'number';
  if (fixed && (!Number.isInteger(spec.batches) || (spec.batches as number) < 1)) {
    throw new Error(`taskUpdateStates: batches must be a positive integer, got ${spec.batches}`);
  }
  const fleet = spec.fleetPath === undefined ? {} : { 'fleet.$': spec.fleetPath };
  return {
    TaskBatches: {
      Comment:
        'The batch numbers 0 … taskBatches-1; each UpdateTasks lists the fleet and takes the tasks whose id hashes to its number, so no task list travels in the execution.',
      Type: 'Pass',
      Parameters: {
        'batches.$': fixed
          ? `States.ArrayRange(0, ${(spec.batches as number) - 1}, 1)`
          : `States.ArrayRange(0, States.MathAdd(${spec.batches}, -1), 1)`,
      },
      ResultPath: '$.taskBatches',
      Next: 'UpdateTasks',
    },
    UpdateTasks: {
      Type: 'Map',
      Comment:
        'Nudge and verify every task, one Lambda invocation per batch; a batch returns counts and the tasks it could not reach (marked for a service roll), or fails with the first other error.',
      ItemsPath: '$.taskBatches.batches',
      MaxConcurrency: 10,
      ItemSelector: {
        ...fleet,
        batch: {
          'index.$': '$$.Map.Item.Value',
          ...(fixed ? { of: spec.batches } : { 'of.$': spec.batches }),
        },
        target: spec.target,
      },
      ResultPath: '$.taskOutcomes',
      Next: spec.next,
      Catch: [{ ErrorEquals: ['States.ALL'], Next: spec.onError, ResultPath: '$.error' }],
      ItemProcessor: {
        ProcessorConfig: { Mode: 'INLINE' },
        StartAt: 'UpdateTaskBatch',
        States: {
          UpdateTaskBatch: lambdaTask('UpdateTasks', {
            comment:
              'Ask each sidecar of the batch to apply the staged version now, then check what it serves (a real handshake for server certificates, the status otherwise).',
            payload: {
              ...(spec.fleetPath === undefined ? {} : { 'fleet.$': '$.fleet' }),
              'batch.$': '$.batch',
              'target.$': '$.target',
            },
            timeoutSeconds: 600,
            resultSelector: {
              'updated.$': '$.Payload.updated',
              'unreachable.$': '$.Payload.unreachable',
              'unreachableCount.$': '$.Payload.unreachableCount',
            },
            end: true,
          }),
        },
      },
    },
  };
}

/**
 * A ResultSelector that keeps these fields of the Lambda's answer under their own names:
 * `fromPayload('serial', 'notAfter')` → `{ 'serial.$': '$.Payload.serial', 'notAfter.$': '$.Payload.notAfter' }`.
 */
export function fromPayload(...fields: string[]): Record<string, string> {
  return Object.fromEntries(fields.map((field) => [`${field}.$`, `$.Payload.${field}`]));
}

/** A Catch of every error (`States.ALL`) into `next`, the error at `resultPath` (default `$.error`). */
export function catchAll(next: string, resultPath: string | null = '$.error'): Catcher[] {
  return [{ ErrorEquals: ['States.ALL'], Next: next, ResultPath: resultPath }];
}

/** PromoteSecret's answer as both machines keep it at `$.promoted` (counts from the batches). */
export const PROMOTED_RESULT: Record<string, string> = {
  'previousVersionId.$': '$.Payload.previousVersionId',
  'promotedAt.$': '$.Payload.promotedAt',
  'needsRoll.$': '$.Payload.needsRoll',
  'updated.$': '$.Payload.updatedCount',
  'unreachable.$': '$.Payload.unreachable',
  'unreachableCount.$': '$.Payload.unreachableCount',
};

/** RollbackRotation's answer, kept at `$.rollback` by rotate-certificate and by its parent for a stopped child. */
export const ROTATION_ROLLBACK_RESULT = fromPayload(
  'restoredCurrentTo',
  'droppedPending',
  'revokedSerial',
  'nudged',
  'unreachable',
  'notes',
);
