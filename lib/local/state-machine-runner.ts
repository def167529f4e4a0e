/**
 * Runs the project's ASL definitions on one machine with aws-local-stepfunctions: every Lambda
 * Task state is resolved, through the `Fn::GetAtt` of its `FunctionName`, to the real step
 * factory wired to the given ports — the same code the Lambda functions run, on local adapters.
 * A `states:startExecution.sync:2` Task runs the machine its `StateMachineArn` names (a
 * `{ "Ref": "<Pascal>StateMachine" }`) as a local child execution and answers as
 * DescribeExecution does. Every execution counts its history events and its largest state
 * payload the way Step Functions does, and a run past either limit stops with
 * `ExecutionLimitExceeded`.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ExecutionError,
  ExecutionTimeoutError,
  type RunOptions,
  StateMachine,
  type StateMachineDefinition,
} from 'aws-local-stepfunctions';
import { ExecutionLimitExceeded, ValidationError } from '../errors.ts';
import type { ControlPlanePorts } from '../workflows/ports.ts';
import { type FunctionKey, functionKeyOfLogicalId, steps } from '../workflows/registry.ts';

/** The machines in `statemachines/` (file `<name>.asl.json`). */
export const StateMachineNames = [
  'rotate-certificates',
  'rotate-certificate',
  'update-allowlist',
  'converge-task',
] as const;
export type StateMachineName = (typeof StateMachineNames)[number];

const defaultDefinitionsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'statemachines');

/** One step of progress, small enough to print (no state payloads). */
export interface StateProgressEvent {
  type:
    | 'ExecutionStarted'
    | 'ExecutionSucceeded'
    | 'ExecutionFailed'
    | 'StateEntered'
    | 'StateExited'
    | 'StateFailed'
    | 'StateRetried'
    | 'StateCaught'
    | 'MapIterationStarted'
    | 'MapIterationSucceeded'
    | 'MapIterationFailed';
  at: Date;
  /** The state (for map iterations: the Map state). */
  stateName?: string;
  stateType?: string;
  /** Iteration index inside a Map. */
  index?: number;
  /** Retry attempt, for `StateRetried`. */
  attempt?: number;
  error?: string;
  cause?: string;
}

type Overrides = NonNullable<RunOptions['overrides']>;
type LocalHandler = NonNullable<Overrides['taskResourceLocalHandlers']>[string];

/**
 * What Step Functions allows one execution (Standard workflows): 25 000 events in its history
 * and 256 KiB (262 144 bytes, UTF-8) for any state's input or output, a task result and the
 * execution's input. Both are per execution: a child started by `startExecution` has its own.
 */
export const StepFunctionsLimits = { historyEvents: 25_000, payloadBytes: 262_144 } as const;

/** What one execution used of the limits, and the executions it started. */
export interface ExecutionStats {
  machine: StateMachineName;
  executionName: string;
  /** History events as Step Functions would record them (see {@link historyEventsOf}). */
  historyEvents: number;
  /** The largest state input, state output, task result or execution input/output, in UTF-8 bytes. */
  largestPayloadBytes: number;
  /** The state whose input or output was the largest (`(execution)` for the execution's own). */
  largestPayloadState: string;
  /** Child executions (`startExecution.sync:2`), in the order they finished. */
  children: ExecutionStats[];
}

export interface RunStateMachineOptions {
  /** `$$.Execution.Name` (the idempotency tokens derive from it). Default `local-<uuid>`. */
  executionName?: string;
  /** Called for every state transition, in order (a child execution's too). */
  onStateEvent?: (event: StateProgressEvent) => void;
  /** Set every Wait and every retry interval to 0 ms (tests; the demo waits for real). Default false. */
  instant?: boolean;
  /** Merged over the generated overrides (an entry here wins); child executions get them too. */
  overrides?: Overrides;
  /** Where the `.asl.json` files are. Default: the repository's `statemachines/`. */
  definitionsDir?: string;
  /** Lower limits than Step Functions' (tests of the check itself). Default {@link StepFunctionsLimits}. */
  limits?: { historyEvents?: number; payloadBytes?: number };
}

export type RunStateMachineResult =
  | { status: 'SUCCEEDED'; executionName: string; output: unknown; stats: ExecutionStats }
  | {
      status: 'FAILED';
      executionName: string;
      /** The Error name the execution failed with (`ServedVersionMismatch`, `RolloutFailed`, …). */
      error: string;
      cause: string;
      /** `ExecutionError` (its `cause` is the state's error), or `ExecutionTimeoutError` past the machine's `TimeoutSeconds`. */
      executionError: ExecutionError | ExecutionTimeoutError;
      stats: ExecutionStats;
    };

/** The largest figures over an execution and every execution it started, for reports and tests. */
export function statsTotals(stats: ExecutionStats): {
  executions: number;
  /** The most history events of any one execution (the limit applies to each). */
  maxHistoryEvents: number;
  maxHistoryExecution: string;
  largestPayloadBytes: number;
  largestPayloadState: string;
} {
  let out = {
    executions: 0,
    maxHistoryEvents: -1,
    maxHistoryExecution: '',
    largestPayloadBytes: -1,
    largestPayloadState: '',
  };
  const visit = (s: ExecutionStats) => {
    out.executions += 1;
    if (s.historyEvents > out.maxHistoryEvents) {
      out = {
        ...out,
        maxHistoryEvents: s.historyEvents,
        maxHistoryExecution: `${s.machine}/${s.executionName}`,
      };
    }
    if (s.largestPayloadBytes > out.largestPayloadBytes) {
      out = {
        ...out,
        largestPayloadBytes: s.largestPayloadBytes,
        largestPayloadState: `${s.machine}/${s.largestPayloadState}`,
      };
    }
    for (const child of s.children) visit(child);
  };
  visit(stats);
  return out;
}

/** Resource of a Task that runs another state machine and waits for it (output as JSON). */
export const StartExecutionSync = 'arn:aws:states:::states:startExecution.sync:2';

/** Reads one definition from `statemachines/`. */
export async function loadDefinition(
  name: StateMachineName,
  dir = defaultDefinitionsDir,
): Promise<StateMachineDefinition> {
  return JSON.parse(await readFile(join(dir, `${name}.asl.json`), 'utf8')) as StateMachineDefinition;
}

interface StateInfo {
  name: string;
  type: string;
  functionKey?: FunctionKey;
  /** For a `startExecution.sync:2` Task: the machine it starts. */
  childMachine?: StateMachineName;
  resource?: string;
}

/** `RotateCertificateStateMachine` (the serverless.yml `id`) → `rotate-certificate`, or `undefined`. */
export function machineOfLogicalId(logicalId: string): StateMachineName | undefined {
  const match = /^([A-Z][A-Za-z0-9]*)StateMachine$/.exec(logicalId);
  if (!match) return undefined;
  const name = match[1]!.replace(/[A-Z]/g, (c, i: number) => `${i === 0 ? '' : '-'}${c.toLowerCase()}`);
  return (StateMachineNames as readonly string[]).includes(name) ? (name as StateMachineName) : undefined;
}

function childMachineOf(arn: unknown): StateMachineName | undefined {
  if (typeof arn === 'string') {
    const name = /:stateMachine:(.+)$/.exec(arn)?.[1];
    return StateMachineNames.find((n) => n === name);
  }
  const ref = (arn as { Ref?: unknown } | null)?.Ref;
  return typeof ref === 'string' ? machineOfLogicalId(ref) : undefined;
}

/** Every state of a definition, nested Map iterators included. */
export function listStates(definition: { States: Record<string, unknown> }): StateInfo[] {
  const out: StateInfo[] = [];
  for (const [name, raw] of Object.entries(definition.States)) {
    const state = raw as {
      Type: string;
      Resource?: string;
      Parameters?: { FunctionName?: unknown; StateMachineArn?: unknown };
      ItemProcessor?: { States: Record<string, unknown> };
      Iterator?: { States: Record<string, unknown> };
    };
    const info: StateInfo = { name, type: state.Type };
    if (state.Type === 'Task') {
      if (state.Resource !== undefined) info.resource = state.Resource;
      if (state.Resource === StartExecutionSync) {
        const child = childMachineOf(state.Parameters?.StateMachineArn);
        if (child !== undefined) info.childMachine = child;
      } else {
        const getAtt = (state.Parameters?.FunctionName as { 'Fn::GetAtt'?: [string, string] } | undefined)?.[
          'Fn::GetAtt'
        ];
        const key = getAtt === undefined ? undefined : functionKeyOfLogicalId(getAtt[0]);
        if (key !== undefined) info.functionKey = key;
      }
    }
    out.push(info);
    const inner = state.ItemProcessor ?? state.Iterator;
    if (inner !== undefined) out.push(...listStates(inner));
  }
  return out;
}

/**
 * History events Step Functions records for one local event: a Task is entered, scheduled and
 * started (3), then succeeds and exits (2), each failed attempt adds a failure and each retry a
 * new schedule + start; a `.sync` Task also records TaskSubmitted. A Map records entered +
 * started and succeeded + exited, and 2 per iteration besides its states; a Pass, Choice, Wait
 * or Succeed 2; a Fail 1. The count errs high, never low (a caught failure still counts an exit).
 */
export function historyEventsOf(event: {
  type: string;
  stateType?: string | undefined;
  sync?: boolean;
}): number {
  switch (event.type) {
    case 'ExecutionStarted':
    case 'ExecutionSucceeded':
    case 'ExecutionFailed':
    case 'ExecutionAborted':
    case 'ExecutionTimeout':
    case 'MapIterationStarted':
    case 'MapIterationSucceeded':
    case 'MapIterationFailed':
    case 'ParallelBranchStarted':
    case 'ParallelBranchSucceeded':
    case 'ParallelBranchFailed':
      return 1;
    case 'StateEntered':
      return event.stateType === 'Task'
        ? 3
        : event.stateType === 'Map' || event.stateType === 'Parallel'
          ? 2
          : 1;
    case 'StateExited':
      if (event.stateType === 'Task') return event.sync === true ? 3 : 2;
      return event.stateType === 'Map' || event.stateType === 'Parallel' ? 2 : 1;
    case 'StateFailed':
      return event.stateType === 'Task' || event.stateType === 'Map' || event.stateType === 'Parallel'
        ? 1
        : 0;
    case 'StateRetried':
      return event.stateType === 'Task' ? 2 : 1;
    default:
      return 0;
  }
}

/** UTF-8 bytes of a value as Step Functions stores it (JSON). */
export function payloadBytes(value: unknown): number {
  return value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');
}

/** Wraps a step as an aws-local-stepfunctions override: `{ FunctionName, Payload }` in, `{ Payload }` out. */
export function localHandler(key: FunctionKey, ports: ControlPlanePorts): LocalHandler {
  const { schema, make } = steps[key];
  const step = make(ports) as (event: unknown) => Promise<unknown>;
  return async (input) => {
    const payload = (input as { Payload?: unknown } | null)?.Payload;
    const parsed = schema.safeParse(payload);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new ValidationError(`${key}: invalid input: ${issues.join('; ')}`, {
        path: parsed.error.issues[0]?.path.join('.'),
      });
    }
    const result = await step(parsed.data);
    // What Lambda would return: JSON, so `undefined` fields vanish and dates become strings.
    return { Payload: JSON.parse(JSON.stringify(result ?? null)) };
  };
}

function progressOf(event: Record<string, unknown>): StateProgressEvent {
  const state = event.state as { name?: string; type?: string } | undefined;
  const parent = event.parentState as { name?: string; type?: string } | undefined;
  const named = state ?? parent;
  const out: StateProgressEvent = {
    type: event.type as StateProgressEvent['type'],
    at: new Date(event.timestamp as number),
  };
  if (named?.name !== undefined) out.stateName = named.name;
  if (named?.type !== undefined) out.stateType = named.type;
  if (typeof event.index === 'number') out.index = event.index;
  const retry = event.retry as { attempt?: number } | undefined;
  if (retry?.attempt !== undefined) out.attempt = retry.attempt;
  if (typeof event.Error === 'string') out.error = event.Error;
  if (event.Cause !== undefined)
    out.cause = typeof event.Cause === 'string' ? event.Cause : String(event.Cause);
  return out;
}

/** Definitions already validated in this process (by directory and name). */
const validated = new Set<string>();

/** Counts one execution's history and payloads; stops it at the first limit passed. */
class LimitMeter {
  readonly stats: ExecutionStats;
  exceeded: ExecutionLimitExceeded | undefined;
  private readonly maxEvents: number;
  private readonly maxBytes: number;
  private readonly onExceeded: () => void;
  constructor(
    machine: StateMachineName,
    executionName: string,
    limits: RunStateMachineOptions['limits'],
    onExceeded: () => void,
  ) {
    this.onExceeded = onExceeded;
    this.stats = {
      machine,
      executionName,
      historyEvents: 0,
      largestPayloadBytes: 0,
      largestPayloadState: '(execution)',
      children: [],
    };
    this.maxEvents = limits?.historyEvents ?? StepFunctionsLimits.historyEvents;
    this.maxBytes = limits?.payloadBytes ?? StepFunctionsLimits.payloadBytes;
  }

  events(count: number): void {
    this.stats.historyEvents += count;
    if (this.stats.historyEvents > this.maxEvents) {
      this.fail(
        new ExecutionLimitExceeded(
          `${this.stats.machine} execution ${this.stats.executionName} has more than ${this.maxEvents} history events (Step Functions' limit per execution is ${StepFunctionsLimits.historyEvents})`,
          { limit: 'historyEvents', value: this.stats.historyEvents, max: this.maxEvents },
        ),
      );
    }
  }

  payload(state: string, value: unknown): void {
    const bytes = payloadBytes(value);
    if (bytes > this.stats.largestPayloadBytes) {
      this.stats.largestPayloadBytes = bytes;
      this.stats.largestPayloadState = state;
    }
    if (bytes > this.maxBytes) {
      this.fail(
        new ExecutionLimitExceeded(
          `${this.stats.machine} execution ${this.stats.executionName}: ${state} carries ${bytes} bytes, more than ${this.maxBytes} (Step Functions fails it with States.DataLimitExceeded above ${StepFunctionsLimits.payloadBytes})`,
          { limit: 'payloadBytes', value: bytes, max: this.maxBytes },
        ),
      );
    }
  }

  private fail(error: ExecutionLimitExceeded): void {
    if (this.exceeded !== undefined) return;
    this.exceeded = error;
    this.onExceeded();
  }
}

/** The error a `.sync` Task fails with when its child execution did not succeed, as on AWS. */
class ChildExecutionFailed extends Error {
  constructor(describe: Record<string, unknown>) {
    super(JSON.stringify(describe));
    this.name = 'States.TaskFailed';
  }
}

/**
 * Runs one machine locally. Every Lambda Task state is overridden by the step its
 * `FunctionName` names, every `startExecution.sync:2` Task by a local run of the machine it
 * starts; a Task naming neither is a `ValidationError` before anything runs.
 *
 * @throws ExecutionLimitExceeded when this execution or one it started passes a Step Functions limit.
 * @example
 * const result = await runStateMachine('rotate-certificates', { force: true, graceSeconds: 0 }, ports, {
 *   onStateEvent: (e) => console.log(e.type, e.stateName),
 * });
 * if (result.status === 'FAILED') console.error(result.error, result.cause);
 * console.log(statsTotals(result.stats).maxHistoryEvents);
 */
export async function runStateMachine(
  name: StateMachineName,
  input: unknown,
  ports: ControlPlanePorts,
  options: RunStateMachineOptions = {},
): Promise<RunStateMachineResult> {
  const definition = await loadDefinition(name, options.definitionsDir);
  const states = listStates(definition);
  const executionName = options.executionName ?? `local-${randomUUID()}`;
  let abort: () => void = () => undefined;
  const meter = new LimitMeter(name, executionName, options.limits, () => abort());
  const syncStates = new Set<string>();
  const taskResourceLocalHandlers: Record<string, LocalHandler> = {};
  const waitTimeOverrides: Record<string, number> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  const handlers = new Map<FunctionKey, LocalHandler>();
  const childErrors: ExecutionLimitExceeded[] = [];
  for (const state of states) {
    if (state.type === 'Task') {
      let handler: LocalHandler;
      if (state.resource === StartExecutionSync) {
        if (state.childMachine === undefined) {
          throw new ValidationError(`${name}: Task state ${state.name} starts no known state machine`, {
            path: state.name,
          });
        }
        syncStates.add(state.name);
        handler = childHandler(state.childMachine, ports, options, meter, childErrors, executionName);
      } else {
        if (state.functionKey === undefined) {
          throw new ValidationError(`${name}: Task state ${state.name} names no known function`, {
            path: state.name,
          });
        }
        let step = handlers.get(state.functionKey);
        if (step === undefined) {
          step = localHandler(state.functionKey, ports);
          handlers.set(state.functionKey, step);
        }
        handler = step;
      }
      const stateName = state.name;
      const run = handler;
      taskResourceLocalHandlers[stateName] = async (taskInput) => {
        const result = await run(taskInput);
        meter.payload(`${stateName} (task result)`, result);
        return result;
      };
    }
    if (options.instant === true) {
      if (state.type === 'Wait') waitTimeOverrides[state.name] = 0;
      if (state.type === 'Task' || state.type === 'Map') retryIntervalOverrides[state.name] = 0;
    }
  }
  // Validated once per definition file: asl-validator compiles its schema on every call, which
  // a parent starting a hundred children would otherwise pay a hundred times.
  const validatedKey = `${options.definitionsDir ?? defaultDefinitionsDir}/${name}`;
  const machine = new StateMachine(definition, {
    validationOptions: validated.has(validatedKey)
      ? { noValidate: true }
      : { checkArn: true, checkPaths: true },
  });
  validated.add(validatedKey);
  const execution = machine.run(input as never, {
    overrides: {
      ...options.overrides,
      taskResourceLocalHandlers: {
        ...taskResourceLocalHandlers,
        ...options.overrides?.taskResourceLocalHandlers,
      },
      waitTimeOverrides: { ...waitTimeOverrides, ...options.overrides?.waitTimeOverrides },
      retryIntervalOverrides: { ...retryIntervalOverrides, ...options.overrides?.retryIntervalOverrides },
    },
    context: {
      Execution: {
        Id: `arn:aws:states:local:000000000000:execution:${name}:${executionName}`,
        Name: executionName,
      },
    },
  });
  abort = () => execution.abort();
  meter.payload('(execution input)', input);
  const forwarding = (async () => {
    for await (const event of execution.eventLogs) {
      const raw = event as unknown as Record<string, unknown>;
      const progress = progressOf(raw);
      const state = raw.state as { name?: string; input?: unknown; output?: unknown } | undefined;
      meter.events(
        historyEventsOf({
          type: progress.type,
          stateType: progress.stateType,
          sync: state?.name !== undefined && syncStates.has(state.name),
        }),
      );
      if (progress.type === 'StateEntered') meter.payload(`${state?.name} (input)`, state?.input);
      if (progress.type === 'StateExited') meter.payload(`${state?.name} (output)`, state?.output);
      if (progress.type === 'ExecutionSucceeded') meter.payload('(execution output)', raw.output);
      options.onStateEvent?.(progress);
    }
  })();
  const limitError = () => childErrors[0] ?? meter.exceeded;
  try {
    const output = await execution.result;
    await forwarding;
    const exceeded = limitError();
    if (exceeded !== undefined) throw exceeded;
    return { status: 'SUCCEEDED', executionName, output, stats: meter.stats };
  } catch (error) {
    await forwarding.catch(() => undefined);
    const exceeded = limitError();
    if (exceeded !== undefined) throw exceeded;
    if (error instanceof ExecutionTimeoutError) {
      return {
        status: 'FAILED',
        executionName,
        error: 'States.Timeout',
        cause: `${name} ran longer than its TimeoutSeconds`,
        executionError: error,
        stats: meter.stats,
      };
    }
    if (!(error instanceof ExecutionError)) throw error;
    const cause = error.cause as { name?: string; message?: string } | undefined;
    return {
      status: 'FAILED',
      executionName,
      error: cause?.name ?? 'Error',
      cause: cause?.message ?? error.message,
      executionError: error,
      stats: meter.stats,
    };
  }
}

/**
 * The `startExecution.sync:2` override: runs `machine` with the Task's `Input` as a child
 * execution (its own history and limits) and answers with what DescribeExecution returns —
 * `Output` parsed (the `:2` form), or `States.TaskFailed` whose cause is that description with
 * the child's `Error` and `Cause`. A child past a limit stops the parent too.
 */
function childHandler(
  machine: StateMachineName,
  ports: ControlPlanePorts,
  options: RunStateMachineOptions,
  parent: LimitMeter,
  childErrors: ExecutionLimitExceeded[],
  parentName: string,
): LocalHandler {
  return async (taskInput) => {
    const request = (taskInput ?? {}) as { Input?: unknown; Name?: string };
    const childName = request.Name ?? `${parentName}-${randomUUID()}`;
    const executionArn = `arn:aws:states:local:000000000000:execution:${machine}:${childName}`;
    let result: RunStateMachineResult;
    try {
      result = await runStateMachine(machine, request.Input ?? {}, ports, {
        ...options,
        executionName: childName,
      });
    } catch (error) {
      if (error instanceof ExecutionLimitExceeded) {
        childErrors.push(error);
        parent.exceeded ??= error;
        throw error;
      }
      throw error;
    }
    parent.stats.children.push(result.stats);
    const describe = {
      ExecutionArn: executionArn,
      StateMachineArn: `arn:aws:states:local:000000000000:stateMachine:${machine}`,
      Name: childName,
      Status: result.status,
    };
    if (result.status === 'SUCCEEDED') return { ...describe, Output: result.output } as never;
    const timedOut = result.executionError instanceof ExecutionTimeoutError;
    throw new ChildExecutionFailed({
      ...describe,
      Status: timedOut ? 'TIMED_OUT' : 'FAILED',
      Error: timedOut ? 'States.Timeout' : result.error,
      Cause: result.cause,
    });
  };
}
