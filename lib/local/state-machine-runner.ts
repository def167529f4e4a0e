/**
 * Runs the project's ASL definitions on one machine with aws-local-stepfunctions: every Task
 * state is resolved, through the `Fn::GetAtt` of its `FunctionName`, to the real step factory
 * wired to the given ports — the same code the Lambda functions run, on local adapters.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ExecutionError,
  type RunOptions,
  StateMachine,
  type StateMachineDefinition,
} from 'aws-local-stepfunctions';
import { ValidationError } from '../errors.ts';
import type { ControlPlanePorts } from '../workflows/ports.ts';
import { type FunctionKey, functionKeyOfLogicalId, steps } from '../workflows/registry.ts';

/** The machines in `statemachines/` (file `<name>.asl.json`). */
export const StateMachineNames = ['rotate-certificates', 'update-allowlist', 'converge-task'] as const;
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

export interface RunStateMachineOptions {
  /** `$$.Execution.Name` (the idempotency tokens derive from it). Default `local-<uuid>`. */
  executionName?: string;
  /** Called for every state transition, in order. */
  onStateEvent?: (event: StateProgressEvent) => void;
  /** Set every Wait and every retry interval to 0 ms (tests; the demo waits for real). Default false. */
  instant?: boolean;
  /** Merged over the generated overrides (an entry here wins). */
  overrides?: Overrides;
  /** Where the `.asl.json` files are. Default: the repository's `statemachines/`. */
  definitionsDir?: string;
}

export type RunStateMachineResult =
  | { status: 'SUCCEEDED'; executionName: string; output: unknown }
  | {
      status: 'FAILED';
      executionName: string;
      /** The Error name the execution failed with (`ServedVersionMismatch`, `RolloutFailed`, …). */
      error: string;
      cause: string;
      executionError: ExecutionError;
    };

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
}

/** Every state of a definition, nested Map iterators included. */
export function listStates(definition: { States: Record<string, unknown> }): StateInfo[] {
  const out: StateInfo[] = [];
  for (const [name, raw] of Object.entries(definition.States)) {
    const state = raw as {
      Type: string;
      Parameters?: { FunctionName?: unknown };
      ItemProcessor?: { States: Record<string, unknown> };
      Iterator?: { States: Record<string, unknown> };
    };
    const info: StateInfo = { name, type: state.Type };
    if (state.Type === 'Task') {
      const getAtt = (state.Parameters?.FunctionName as { 'Fn::GetAtt'?: [string, string] } | undefined)?.[
        'Fn::GetAtt'
      ];
      const key = getAtt === undefined ? undefined : functionKeyOfLogicalId(getAtt[0]);
      if (key !== undefined) info.functionKey = key;
    }
    out.push(info);
    const inner = state.ItemProcessor ?? state.Iterator;
    if (inner !== undefined) out.push(...listStates(inner));
  }
  return out;
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

/**
 * Runs one machine locally. Every Task state is overridden by the step its `FunctionName`
 * names; a Task naming an unknown function is a `ValidationError` before anything runs.
 *
 * @example
 * const result = await runStateMachine('rotate-certificates', { force: true, graceSeconds: 0 }, ports, {
 *   onStateEvent: (e) => console.log(e.type, e.stateName),
 * });
 * if (result.status === 'FAILED') console.error(result.error, result.cause);
 */
export async function runStateMachine(
  name: StateMachineName,
  input: unknown,
  ports: ControlPlanePorts,
  options: RunStateMachineOptions = {},
): Promise<RunStateMachineResult> {
  const definition = await loadDefinition(name, options.definitionsDir);
  const states = listStates(definition);
  const taskResourceLocalHandlers: Record<string, LocalHandler> = {};
  const waitTimeOverrides: Record<string, number> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  const handlers = new Map<FunctionKey, LocalHandler>();
  for (const state of states) {
    if (state.type === 'Task') {
      if (state.functionKey === undefined) {
        throw new ValidationError(`${name}: Task state ${state.name} names no known function`, {
          path: state.name,
        });
      }
      let handler = handlers.get(state.functionKey);
      if (handler === undefined) {
        handler = localHandler(state.functionKey, ports);
        handlers.set(state.functionKey, handler);
      }
      taskResourceLocalHandlers[state.name] = handler;
    }
    if (options.instant === true) {
      if (state.type === 'Wait') waitTimeOverrides[state.name] = 0;
      if (state.type === 'Task' || state.type === 'Map') retryIntervalOverrides[state.name] = 0;
    }
  }
  const executionName = options.executionName ?? `local-${randomUUID()}`;
  const machine = new StateMachine(definition, { validationOptions: { checkArn: true, checkPaths: true } });
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
  const forwarding = (async () => {
    for await (const event of execution.eventLogs) {
      options.onStateEvent?.(progressOf(event as unknown as Record<string, unknown>));
    }
  })();
  try {
    const output = await execution.result;
    await forwarding;
    return { status: 'SUCCEEDED', executionName, output };
  } catch (error) {
    await forwarding.catch(() => undefined);
    if (!(error instanceof ExecutionError)) throw error;
    const cause = error.cause as { name?: string; message?: string } | undefined;
    return {
      status: 'FAILED',
      executionName,
      error: cause?.name ?? 'Error',
      cause: cause?.message ?? error.message,
      executionError: error,
    };
  }
}
