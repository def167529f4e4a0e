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
