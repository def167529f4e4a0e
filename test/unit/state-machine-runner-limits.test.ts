/**
 * The local runner's bookkeeping of Step Functions' per-execution limits, on small definitions
 * whose AWS history is known event by event.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecutionLimitExceeded } from '../../lib/errors.ts';
import { historyEventsOf, payloadBytes, runStateMachine } from '../../lib/local/state-machine-runner.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-limits-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const published: unknown[] = [];
const ports = {
  fleetName: 'demo',
  notifier: { publish: async (type: string, detail: unknown) => void published.push({ type, detail }) },
} as unknown as ControlPlanePorts;

const notify = {
  Type: 'Task',
  Resource: 'arn:aws:states:::lambda:invoke',
  Parameters: {
    FunctionName: { 'Fn::GetAtt': ['NotifyLambdaFunction', 'Arn'] },
    Payload: { detailType: 'CertificateRotated', 'detail.$': '$' },
  },
  Retry: [{ ErrorEquals: ['Throttled'], IntervalSeconds: 1, MaxAttempts: 2 }],
  ResultPath: null,
};

/** Writes `definition` as converge-task (any machine name will do) and runs it. */
async function runDefinition(
  definition: unknown,
  input: unknown,
  options: Parameters<typeof runStateMachine>[3] = {},
) {
  await writeFile(join(dir, 'converge-task.asl.json'), JSON.stringify(definition));
  return runStateMachine('converge-task', input, ports, { definitionsDir: dir, instant: true, ...options });
}

describe('history events and payload bytes', () => {
  it('counts what Step Functions records: Pass 2, Task 5 (+3 per retry), Map 4 + 4 per Pass iteration, Succeed 2, execution 2', async () => {
    let calls = 0;
    const result = await runDefinition(
      {
        StartAt: 'First',
        States: {
          First: { Type: 'Pass', Result: [1, 2, 3], ResultPath: '$.items', Next: 'Publish' },
          Publish: { ...notify, Next: 'Each' },
          Each: {
            Type: 'Map',
            ItemsPath: '$.items',
            ItemProcessor: { StartAt: 'Item', States: { Item: { Type: 'Pass', End: true } } },
            ResultPath: '$.done',
            Next: 'Done',
          },
          Done: { Type: 'Succeed' },
        },
      },
      { certificate: 'api' },
      {
        overrides: {
          taskResourceLocalHandlers: {
            Publish: async () => {
              calls += 1;
              if (calls === 1) throw Object.assign(new Error('slow down'), { name: 'Throttled' });
              return { Payload: { published: true } };
            },
          },
        },
      },
    );
    expect(result.status).toBe('SUCCEEDED');
    // ExecutionStarted, PassStateEntered/Exited, TaskStateEntered, TaskScheduled, TaskStarted,
    // TaskFailed, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited, MapStateEntered,
    // MapStateStarted, 3 × (MapIterationStarted, PassStateEntered, PassStateExited,
    // MapIterationSucceeded), MapStateSucceeded, MapStateExited, SucceedStateEntered/Exited,
    // ExecutionSucceeded.
    expect(result.stats.historyEvents).toBe(1 + 2 + 8 + (4 + 3 * 4) + 2 + 1);
    expect(result.stats.largestPayloadBytes).toBe(
      payloadBytes({ certificate: 'api', items: [1, 2, 3], done: [1, 2, 3] }),
    );
  });

  it('measures UTF-8 bytes, not characters', () => {
    expect(payloadBytes({ a: 'é' })).toBe(Buffer.byteLength('{"a":"é"}'));
    expect(payloadBytes('€')).toBe(5);
    expect(historyEventsOf({ type: 'StateExited', stateType: 'Task', sync: true })).toBe(3);
  });

  it('stops a run whose state payload would pass 262 144 bytes, before the next state', async () => {
    const big = 'x'.repeat(262_144);
    const run = runDefinition(
      {
        StartAt: 'Grow',
        States: {
          Grow: { Type: 'Pass', Result: big, ResultPath: '$.big', Next: 'Publish' },
          Publish: { ...notify, End: true },
        },
      },
      {},
    );
    await expect(run).rejects.toThrow(ExecutionLimitExceeded);
    await expect(run).rejects.toMatchObject({ limit: 'payloadBytes', max: 262_144 });
  });

  it('stops a run past 25 000 history events', async () => {
    const items = Array.from({ length: 6300 }, (_, i) => i);
    const run = runDefinition(
      {
        StartAt: 'Each',
        States: {
          Each: {
            Type: 'Map',
            ItemsPath: '$.items',
            MaxConcurrency: 0,
            ItemProcessor: { StartAt: 'Item', States: { Item: { Type: 'Pass', End: true } } },
            ResultPath: null,
            End: true,
          },
        },
      },
      { items },
    );
    await expect(run).rejects.toMatchObject({
      name: 'ExecutionLimitExceeded',
      limit: 'historyEvents',
      max: 25_000,
    });
  }, 60_000);
});
