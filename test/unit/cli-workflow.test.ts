import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAwsWorkflow } from '../../cli/demo/workflow.ts';
import { mockAwsClient } from '../support/aws-mock.ts';

const sfn = mockAwsClient(SFNClient);
const ARN = 'arn:aws:states:eu-west-1:111122223333:stateMachine:portcullis-prod-rotate-certificates';
const EXECUTION =
  'arn:aws:states:eu-west-1:111122223333:execution:portcullis-prod-rotate-certificates:rotate-x';

beforeEach(() => sfn.reset());
afterEach(() => sfn.reset());

describe('startAwsWorkflow', () => {
  it('starts the execution with the deterministic name and the input as JSON', async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION, startDate: new Date() });

    const outcome = await startAwsWorkflow({
      client: new SFNClient({}),
      stateMachineArn: ARN,
      executionName: 'rotate-prod-api-20260102T0300Z',
      input: { fleet: 'prod', certificates: ['api'], force: true },
      wait: false,
    });

    expect(sfn.commandCalls(StartExecutionCommand)[0]!.args[0].input).toEqual({
      stateMachineArn: ARN,
      name: 'rotate-prod-api-20260102T0300Z',
      input: '{"fleet":"prod","certificates":["api"],"force":true}',
    });
    expect(outcome).toMatchObject({ status: 'RUNNING', executionArn: EXECUTION });
    expect(sfn.commandCalls(DescribeExecutionCommand)).toHaveLength(0);
  });

  it('follows the history to the end, printing each state once, and returns the outcome', async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION, startDate: new Date() });
    const at = new Date('2026-01-02T03:00:00Z');
    const history: HistoryEvent[] = [
      { id: 1, type: 'ExecutionStarted', timestamp: at },
      { id: 2, type: 'TaskStateEntered', timestamp: at, stateEnteredEventDetails: { name: 'PlanRotation' } },
      { id: 3, type: 'TaskStateExited', timestamp: at, stateExitedEventDetails: { name: 'PlanRotation' } },
    ];
    const more: HistoryEvent[] = [
      ...history,
      {
        id: 4,
        type: 'TaskFailed',
        timestamp: at,
        taskFailedEventDetails: {
          resourceType: 'lambda',
          resource: 'invoke',
          error: 'ServedVersionMismatch',
          cause: 'task t1 serves 1',
        },
      },
      {
        id: 5,
        type: 'ExecutionFailed',
        timestamp: at,
        executionFailedEventDetails: { error: 'ServedVersionMismatch', cause: 'task t1 serves 1' },
      },
    ];
    sfn.on(GetExecutionHistoryCommand).resolvesOnce({ events: history }).resolves({ events: more });
    sfn.on(DescribeExecutionCommand).resolvesOnce({ status: 'RUNNING' }).resolves({
      status: 'FAILED',
      error: 'ServedVersionMismatch',
      cause: 'task t1 serves 1',
      stopDate: at,
    });
    const lines: string[] = [];

    const outcome = await startAwsWorkflow({
      client: new SFNClient({}),
      stateMachineArn: ARN,
      executionName: 'rotate-prod-api-20260102T0300Z',
      input: {},
      wait: true,
      pollMs: 1,
      print: (line) => lines.push(line),
    });

    expect(outcome).toMatchObject({
      status: 'FAILED',
      error: 'ServedVersionMismatch',
      cause: 'task t1 serves 1',
    });
    expect(lines.filter((l) => l === '✓ PlanRotation')).toHaveLength(1);
    expect(lines).toContain('✗ execution failed: ServedVersionMismatch — task t1 serves 1');
    expect(outcome.events.map((e) => e.type)).toEqual([
      'StateEntered',
      'StateExited',
      'StateFailed',
      'ExecutionFailed',
    ]);
  });

  it('explains an execution name already used with other input', async () => {
    sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'exists', $metadata: {} }));

    await expect(
      startAwsWorkflow({
        client: new SFNClient({}),
        stateMachineArn: ARN,
        executionName: 'rotate-x',
        input: {},
        wait: false,
      }),
    ).rejects.toThrow(/already exists with other input.*--execution-name/);
  });
});
