/**
 * Running a control-plane workflow for an operator command: locally (the ASL through
 * `aws-local-stepfunctions` with the real steps on local ports), or on AWS (Step Functions
 * `StartExecution`, then `GetExecutionHistory`/`DescribeExecution` until it ends). Both print
 * one progress line per state and report the same outcome shape.
 */
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { awsClientConfig } from '../../lib/aws/client-config.ts';
import { ValidationError } from '../../lib/errors.ts';
import {
  type ExecutionStats,
  runStateMachine,
  type StateMachineName,
  type StateProgressEvent,
} from '../../lib/local/state-machine-runner.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';

/** The outcome of one execution, wherever it ran. */
export interface WorkflowOutcome {
  status: 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED' | 'RUNNING';
  executionName: string;
  /** AWS only. */
  executionArn?: string;
  error?: string;
  cause?: string;
  output?: unknown;
  startedAt: Date;
  finishedAt: Date;
  /** Every state transition seen, in order (local: from the runner; AWS: from the history). */
  events: StateProgressEvent[];
  /** Local only: history events and largest payload of the execution and those it started. */
  stats?: ExecutionStats;
}

/**
 * Whether a command's workflow did what was asked: it SUCCEEDED, or it was started without
 * `--wait` and is running. Pure.
 */
export function outcomeOk(outcome: WorkflowOutcome, waited: boolean): boolean {
  return outcome.status === 'SUCCEEDED' || (outcome.status === 'RUNNING' && !waited);
}

/**
 * The line a command ends with: `succeeded: <execution>` / `running: <execution>`, or the
 * status with the error and cause; green when {@link outcomeOk}, red otherwise. Pure.
 */
export function outcomeLine(
  outcome: WorkflowOutcome,
  waited: boolean,
  paint: (code: number, text: string) => string,
): string {
  const status = outcome.status.toLowerCase();
  const text =
    outcome.status === 'SUCCEEDED' || outcome.status === 'RUNNING'
      ? `${status}: ${outcome.executionName}`
      : `${status}: ${outcome.error ?? ''} ${outcome.cause ?? ''}`.trim();
  return paint(outcomeOk(outcome, waited) ? 32 : 31, text);
}

/**
 * A deterministic execution name: `<kind>-<fleet>-<subject>-<UTC time bucket>`. Step Functions
 * refuses a second execution with the same name (and starts nothing new for the same name and
 * input), so a command retried after a timeout or run twice by accident within the bucket starts
 * one execution; a deliberate rerun later gets a new bucket. Names are at most 80 characters of
 * `[A-Za-z0-9_-]`.
 *
 * @example executionName('rotate', 'edge', 'api', new Date('2026-01-02T03:04:05Z'), 10) // 'rotate-edge-api-20260102T0300Z'
 */
export function executionName(
  kind: string,
  fleet: string,
  subject: string,
  at: Date,
  bucketMinutes: number,
): string {
  if (!Number.isInteger(bucketMinutes) || bucketMinutes < 1 || bucketMinutes > 1440) {
    throw new ValidationError('the time bucket must be 1–1440 minutes', { path: 'bucketMinutes' });
  }
  const bucketMs = bucketMinutes * 60_000;
  const start = new Date(Math.floor(at.getTime() / bucketMs) * bucketMs);
  const stamp = start.toISOString().replace(/[-:]/g, '').slice(0, 13);
  const clean = (text: string) => text.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 40);
  return `${clean(kind)}-${clean(fleet)}-${clean(subject)}-${stamp}Z`.slice(0, 80);
}

/** One line of progress for a state event, or `undefined` for events not worth a line. */
export function progressLine(event: StateProgressEvent): string | undefined {
  const where = event.stateName ?? '';
  const index = event.index === undefined ? '' : ` [${event.index}]`;
  switch (event.type) {
    case 'StateEntered':
      return event.stateType === 'Map' ? `▸ ${where} (map)` : undefined;
    case 'StateExited':
      return `✓ ${where}${index}`;
    case 'StateFailed':
      return `✗ ${where}${index}: ${event.error ?? 'error'}${event.cause ? ` — ${event.cause.split('\n')[0]}` : ''}`;
    case 'StateRetried':
      return `↻ ${where} retry ${event.attempt ?? ''}${event.error ? ` after ${event.error}` : ''}`;
    case 'StateCaught':
      return `⤷ ${where} caught ${event.error ?? ''}`;
    case 'MapIterationFailed':
      return `✗ ${where}${index} iteration failed${event.error ? `: ${event.error}` : ''}`;
    case 'ExecutionFailed':
      return `✗ execution failed: ${event.error ?? ''}${event.cause ? ` — ${event.cause.split('\n')[0]}` : ''}`;
    case 'ExecutionSucceeded':
      return '✓ execution succeeded';
    default:
      return undefined;
  }
}

/** Runs one machine locally on `ports`, printing progress through `print`. */
export async function runLocalWorkflow(
  name: StateMachineName,
  input: unknown,
  ports: ControlPlanePorts,
  options: { executionName?: string; print?: (line: string, event: StateProgressEvent) => void } = {},
): Promise<WorkflowOutcome> {
  const events: StateProgressEvent[] = [];
  const startedAt = new Date();
  const result = await runStateMachine(name, input, ports, {
    ...(options.executionName === undefined ? {} : { executionName: options.executionName }),
    onStateEvent: (event) => {
      events.push(event);
      const line = progressLine(event);
      if (line !== undefined) options.print?.(line, event);
    },
  });
  const finishedAt = new Date();
  if (result.status === 'SUCCEEDED') {
    return {
      status: 'SUCCEEDED',
      executionName: result.executionName,
      output: result.output,
      startedAt,
      finishedAt,
      events,
      stats: result.stats,
    };
  }
  return {
    status: 'FAILED',
    executionName: result.executionName,
    error: result.error,
    cause: result.cause,
    startedAt,
    finishedAt,
    events,
    stats: result.stats,
  };
}

function fromHistory(event: HistoryEvent): StateProgressEvent | undefined {
  const at = event.timestamp ?? new Date();
  const type = event.type ?? '';
  const entered = event.stateEnteredEventDetails;
  const exited = event.stateExitedEventDetails;
  if (type.endsWith('StateEntered') && entered) {
    return {
      type: 'StateEntered',
      at,
      stateName: entered.name ?? '',
      stateType: type.replace('StateEntered', ''),
    };
  }
  if (type.endsWith('StateExited') && exited)
    return { type: 'StateExited', at, stateName: exited.name ?? '' };
  if (type === 'TaskFailed' || type === 'LambdaFunctionFailed') {
    const details = event.taskFailedEventDetails ?? event.lambdaFunctionFailedEventDetails;
    return {
      type: 'StateFailed',
      at,
      ...(details?.error ? { error: details.error } : {}),
      ...(details?.cause ? { cause: details.cause } : {}),
    };
  }
  if (type === 'ExecutionFailed') {
    const details = event.executionFailedEventDetails;
    return {
      type: 'ExecutionFailed',
      at,
      ...(details?.error ? { error: details.error } : {}),
      ...(details?.cause ? { cause: details.cause } : {}),
    };
  }
  if (type === 'ExecutionSucceeded') return { type: 'ExecutionSucceeded', at };
  return undefined;
}

/**
 * Starts an execution on AWS and follows it: history events are printed as they appear (polled
 * every `pollMs`), until the execution ends or `waitMs` passes (then `RUNNING` is returned).
 * A second start with the same name and input returns the first execution (Step Functions'
 * idempotency); the same name with other input is an `ExecutionAlreadyExists` error.
 */
export async function startAwsWorkflow(options: {
  stateMachineArn: string;
  executionName: string;
  input: unknown;
  wait: boolean;
  pollMs?: number;
  waitMs?: number;
  client?: SFNClient;
  print?: (line: string) => void;
}): Promise<WorkflowOutcome> {
  const client = options.client ?? new SFNClient(awsClientConfig());
  const startedAt = new Date();
  let executionArn: string;
  try {
    const started = await client.send(
      new StartExecutionCommand({
        stateMachineArn: options.stateMachineArn,
        name: options.executionName,
        input: JSON.stringify(options.input),
      }),
    );
    executionArn = started.executionArn!;
  } catch (error) {
    if (error instanceof ExecutionAlreadyExists) {
      throw new ValidationError(
        `an execution named ${options.executionName} already exists with other input; wait for the next time bucket or pass --execution-name`,
      );
    }
    throw error;
  }
  options.print?.(`started ${executionArn}`);
  const events: StateProgressEvent[] = [];
  // Not waited for, or still running at the deadline: the caller reports it as started.
  const running = (): WorkflowOutcome => ({
    status: 'RUNNING',
    executionName: options.executionName,
    executionArn,
    startedAt,
    finishedAt: new Date(),
    events,
  });
  if (!options.wait) return running();
  const deadline = Date.now() + (options.waitMs ?? 30 * 60_000);
  let lastEventId = 0;
  for (let poll = 0; poll < 100_000; poll++) {
    // The history is re-read from the start each poll (bounded pages; a rotation has a few
    // hundred events) and events already printed are skipped by id.
    let nextToken: string | undefined;
    for (let page = 0; page < 20; page++) {
      const history = await client.send(
        new GetExecutionHistoryCommand({
          executionArn,
          maxResults: 500,
          ...(nextToken ? { nextToken } : {}),
        }),
      );
      for (const raw of history.events ?? []) {
        if ((raw.id ?? 0) <= lastEventId) continue;
        lastEventId = raw.id ?? lastEventId;
        const event = fromHistory(raw);
        if (event === undefined) continue;
        events.push(event);
        const line = progressLine(event);
        if (line !== undefined) options.print?.(line);
      }
      if (!history.nextToken) break;
      nextToken = history.nextToken;
    }
    const described = await client.send(new DescribeExecutionCommand({ executionArn }));
    const status = described.status ?? 'RUNNING';
    if (status !== 'RUNNING' && status !== 'PENDING_REDRIVE') {
      return {
        status: status as WorkflowOutcome['status'],
        executionName: options.executionName,
        executionArn,
        ...(described.error ? { error: described.error } : {}),
        ...(described.cause ? { cause: described.cause } : {}),
        ...(described.output ? { output: JSON.parse(described.output) as unknown } : {}),
        startedAt,
        finishedAt: described.stopDate ?? new Date(),
        events,
      };
    }
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 2000));
  }
  return running();
}
