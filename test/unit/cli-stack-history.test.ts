/**
 * `--stack` and `portcullis history` on their AWS path: CloudFormation DescribeStacks and
 * CloudWatch Logs FilterLogEvents answered by aws-sdk-client-mock (class mocks, so the clients
 * the CLI builds itself are caught), with the exact calls and the error mapping; the local
 * history from events.jsonl; `--version` and options given before the command.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CloudFormationClient,
  CloudFormationServiceException,
  DescribeStacksCommand,
} from '@aws-sdk/client-cloudformation';
import {
  CloudWatchLogsClient,
  FilterLogEventsCommand,
  ResourceNotFoundException as LogsResourceNotFoundException,
} from '@aws-sdk/client-cloudwatch-logs';
import { DescribeTasksCommand, ECSClient, ListTasksCommand } from '@aws-sdk/client-ecs';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  formatEvents,
  run as history,
  parseSince,
  readLocalEvents,
  selectEvents,
} from '../../cli/commands/history.ts';
import { run as rotate } from '../../cli/commands/rotate.ts';
import { STACK_OUTPUTS, stackSettings, stateMachineArn } from '../../cli/demo/stack.ts';
import { openTarget } from '../../cli/demo/target.ts';
import { hoistGlobalOptions, main, VERSION } from '../../cli/main.ts';
import { AccessDenied } from '../../lib/aws/errors.ts';
import { eventFromLogMessage, readEventHistory } from '../../lib/aws/event-history.ts';
import { S3ObjectStore } from '../../lib/aws/s3-object-store.ts';
import { readStackOutputs } from '../../lib/aws/stack-outputs.ts';
import { NotFoundError, ValidationError } from '../../lib/errors.ts';
import { mockAwsClient, sdkError } from '../support/aws-mock.ts';

const cfn = mockAwsClient(CloudFormationClient);
const logs = mockAwsClient(CloudWatchLogsClient);
const ecs = mockAwsClient(ECSClient);
const sfn = mockAwsClient(SFNClient);
afterEach(() => {
  sfn.reset();
  cfn.reset();
  logs.reset();
  ecs.reset();
});

const STACK = 'portcullis-prod-edge';
const ARN = (name: string) => `arn:aws:states:eu-west-1:111122223333:stateMachine:${STACK}-${name}`;
const OUTPUTS = {
  RotateCertificatesStateMachineArn: ARN('rotate-certificates'),
  UpdateAllowlistStateMachineArn: ARN('update-allowlist'),
  ConvergeTaskStateMachineArn: ARN('converge-task'),
  ClusterName: STACK,
  ServiceName: 'gateway',
  FleetName: 'edge',
  FleetConfigSecretId: 'portcullis/edge/fleet-config',
  SidecarLogGroupName: '/portcullis/prod/edge/sidecar',
  EventLogGroupName: `/aws/events/${STACK}`,
  AllowlistBucketName: 'portcullis-prod-edge-allowlists',
  CertificateAuthorityArn: 'arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/ca',
};

function stackAnswer(outputs: Record<string, string> = OUTPUTS) {
  cfn.on(DescribeStacksCommand).resolves({
    Stacks: [
      {
        StackName: STACK,
        StackStatus: 'UPDATE_COMPLETE',
        CreationTime: new Date(),
        Outputs: Object.entries(outputs).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })),
      },
    ],
  });
}

async function capture(
  command: () => Promise<number>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    out.push(args.map(String).join(' '));
  });
  const error = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
    err.push(args.map(String).join(' '));
  });
  const write = vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    err.push(String(chunk));
    return true;
  }) as typeof process.stderr.write);
  try {
    return { code: await command(), stdout: out.join('\n'), stderr: err.join('') };
  } finally {
    log.mockRestore();
    error.mockRestore();
    write.mockRestore();
  }
}

describe('readStackOutputs', () => {
  it('asks DescribeStacks for the stack and returns its outputs by key', async () => {
    stackAnswer();
    expect(
      await readStackOutputs(STACK, { client: new CloudFormationClient({ region: 'eu-west-1' }) }),
    ).toEqual(OUTPUTS);
    expect(cfn.commandCalls(DescribeStacksCommand).map((c) => c.args[0].input)).toEqual([
      { StackName: STACK },
    ]);
  });

  it('maps a missing stack to NotFoundError and a refusal to AccessDenied', async () => {
    const client = new CloudFormationClient({ region: 'eu-west-1' });
    const refusal = (name: string, message: string) =>
      new CloudFormationServiceException({
        name,
        $fault: 'client',
        message,
        $metadata: { httpStatusCode: 400 },
      });
    cfn
      .on(DescribeStacksCommand)
      .rejects(refusal('ValidationError', `Stack with id ${STACK} does not exist`));
    await expect(readStackOutputs(STACK, { client })).rejects.toBeInstanceOf(NotFoundError);
    cfn.reset();
    cfn.on(DescribeStacksCommand).rejects(refusal('ValidationError', '1 validation error detected'));
    await expect(readStackOutputs(STACK, { client })).rejects.toBeInstanceOf(ValidationError);
    cfn.reset();
    cfn.on(DescribeStacksCommand).rejects(refusal('AccessDenied', 'not authorized'));
    await expect(readStackOutputs(STACK, { client })).rejects.toBeInstanceOf(AccessDenied);
  });
});

describe('stack settings', () => {
  it('reads every output the commands use, and refuses a stack that is not Portcullis', () => {
    const settings = stackSettings(STACK, OUTPUTS);
    for (const [key, output] of Object.entries(STACK_OUTPUTS))
      expect(settings[key as keyof typeof settings], key).toBe(OUTPUTS[output as keyof typeof OUTPUTS]);
    expect(() => stackSettings('other', { Bucket: 'x' })).toThrow(ValidationError);
  });

  it('takes a state machine ARN from the option, then the environment, then the stack', () => {
    const settings = stackSettings(STACK, OUTPUTS);
    expect(stateMachineArn('rotate', undefined, settings)).toBe(OUTPUTS.RotateCertificatesStateMachineArn);
    expect(stateMachineArn('allowlist', undefined, settings)).toBe(OUTPUTS.UpdateAllowlistStateMachineArn);
    expect(stateMachineArn('rotate', 'arn:explicit', settings)).toBe('arn:explicit');
    vi.stubEnv('ROTATE_STATE_MACHINE_ARN', 'arn:from-env');
    try {
      expect(stateMachineArn('rotate', undefined, settings)).toBe('arn:from-env');
    } finally {
      vi.unstubAllEnvs();
    }
    expect(() => stateMachineArn('rotate', undefined, undefined)).toThrow(/--stack/);
  });
});

describe('openTarget --stack', () => {
  it('reads fleet, fleet config secret, cluster and service from the stack; explicit options win', async () => {
    stackAnswer();
    ecs.on(ListTasksCommand).resolves({ taskArns: [] });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [] });
    const target = await openTarget({ stack: STACK, region: 'eu-west-1', service: 'other' });
    try {
      expect(target.fleet).toBe('edge');
      expect(target.fleetConfigSecretId).toBe('portcullis/edge/fleet-config');
      expect(target.stack?.eventLogGroupName).toBe(`/aws/events/${STACK}`);
      // Large allowlist changes upload to the stack's bucket, under the fleet's prefix.
      expect(target.allowlistObjects()?.prefix).toBe('allowlists/edge/');
      const objects = target.allowlistObjects()?.store;
      expect(objects).toBeInstanceOf(S3ObjectStore);
      expect((objects as S3ObjectStore).bucket).toBe(OUTPUTS.AllowlistBucketName);
      expect(await target.fleetPort().listTasks()).toEqual([]);
      expect(ecs.commandCalls(ListTasksCommand)[0]?.args[0].input).toMatchObject({
        cluster: STACK,
        serviceName: 'other',
      });
    } finally {
      await target.close();
    }
  });

  it('rotate --stack starts the stack’s rotate-certificates machine for the stack’s fleet, in --region', async () => {
    stackAnswer();
    sfn
      .on(StartExecutionCommand)
      .resolves({ executionArn: `${ARN('rotate-certificates')}:x`, startDate: new Date() });
    const run = await capture(() => rotate(['--stack', STACK, '--region', 'eu-west-2', '--force']));
    expect(run.code, run.stderr).toBe(0);
    const call = sfn.commandCalls(StartExecutionCommand)[0]!;
    expect(call.args[0].input.stateMachineArn).toBe(OUTPUTS.RotateCertificatesStateMachineArn);
    expect(JSON.parse(call.args[0].input.input ?? '{}')).toMatchObject({ fleet: 'edge', force: true });
    const client = (sfn.calls()[0] as { thisValue?: SFNClient } | undefined)?.thisValue;
    expect(await client?.config.region()).toBe('eu-west-2');
  });

  it('refuses --stack with --local', async () => {
    await expect(openTarget({ stack: STACK, local: '/tmp/x' })).rejects.toBeInstanceOf(ValidationError);
    expect(cfn.calls()).toHaveLength(0);
  });
});

const rotated = (time: string, fleet = 'edge') =>
  JSON.stringify({
    version: '0',
    id: 'e1',
    'detail-type': 'CertificateRotated',
    source: 'portcullis',
    account: '111122223333',
    time,
    region: 'eu-west-1',
    resources: [],
    detail: { fleet, certificate: 'api', serial: 'abc' },
  });

describe('readEventHistory', () => {
  it('pages through FilterLogEvents from the start time and reads EventBridge events', async () => {
    logs
      .on(FilterLogEventsCommand)
      .resolvesOnce({
        events: [{ message: rotated('2026-01-02T00:00:00Z'), timestamp: 1 }, { message: 'not json' }],
        nextToken: 'page-2',
      })
      .resolvesOnce({ events: [{ message: rotated('2026-01-01T00:00:00Z'), timestamp: 2 }] });
    const since = new Date('2025-12-25T00:00:00Z');
    const events = await readEventHistory('/aws/events/x', since, {
      client: new CloudWatchLogsClient({ region: 'eu-west-1' }),
    });
    expect(events.map((e) => e.time)).toEqual(['2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z']);
    expect(events[0]).toMatchObject({ source: 'portcullis', detailType: 'CertificateRotated' });
    expect(logs.commandCalls(FilterLogEventsCommand).map((c) => c.args[0].input)).toEqual([
      { logGroupName: '/aws/events/x', startTime: since.getTime() },
      { logGroupName: '/aws/events/x', startTime: since.getTime(), nextToken: 'page-2' },
    ]);
  });

  it('stops at maxPages, and maps a missing log group to NotFoundError', async () => {
    const client = new CloudWatchLogsClient({ region: 'eu-west-1' });
    logs.on(FilterLogEventsCommand).resolves({ events: [], nextToken: 'again' });
    await readEventHistory('/g', new Date(0), { client, maxPages: 3 });
    expect(logs.commandCalls(FilterLogEventsCommand)).toHaveLength(3);
    logs.reset();
    logs
      .on(FilterLogEventsCommand)
      .rejects(sdkError(LogsResourceNotFoundException, 'The specified log group does not exist.'));
    await expect(readEventHistory('/g', new Date(0), { client })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('reads only EventBridge events from log messages', () => {
    expect(eventFromLogMessage(rotated('2026-01-01T00:00:00Z'), 0)?.detail).toEqual({
      fleet: 'edge',
      certificate: 'api',
      serial: 'abc',
    });
    for (const junk of ['', '[]', '{"a":1}', 'null']) expect(eventFromLogMessage(junk, 0)).toBeUndefined();
  });
});

describe('portcullis history', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-history-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the stack’s event log on AWS and prints the fleet’s events oldest first', async () => {
    stackAnswer();
    logs.on(FilterLogEventsCommand).resolves({
      events: [
        { message: rotated(new Date(Date.now() - 60_000).toISOString()) },
        { message: rotated(new Date(Date.now() - 120_000).toISOString(), 'another-fleet') },
      ],
    });
    const run = await capture(() => history(['--stack', STACK, '--region', 'eu-west-1', '-o', 'json']));
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split('\n').map((l) => JSON.parse(l) as { detail: { fleet: string } });
    expect(lines.map((l) => l.detail.fleet)).toEqual(['edge']);
    expect(logs.commandCalls(FilterLogEventsCommand)[0]?.args[0].input.logGroupName).toBe(
      `/aws/events/${STACK}`,
    );
  });

  it('reads events.jsonl locally, skipping a line cut short', async () => {
    const file = join(dir, 'events.jsonl');
    await writeFile(
      file,
      [
        JSON.stringify({
          time: '2026-01-01T00:00:00.000Z',
          source: 'portcullis',
          detailType: 'AllowlistUpdated',
          detail: { fleet: 'demo', versionId: 'v2' },
        }),
        '{"time":"2026-01-01T00:01',
        JSON.stringify({
          time: '2026-01-01T00:02:00.000Z',
          source: 'portcullis',
          detailType: 'CertificateRotated',
          detail: { fleet: 'demo', certificate: 'api' },
        }),
        '',
      ].join('\n'),
    );
    const events = await readLocalEvents(file);
    expect(events.map((e) => e.detailType)).toEqual(['AllowlistUpdated', 'CertificateRotated']);
    expect(await readLocalEvents(join(dir, 'none.jsonl'))).toEqual([]);
    const selected = selectEvents(events, {
      fleet: 'demo',
      since: new Date(0),
      types: ['CertificateRotated'],
      limit: 10,
    });
    expect(formatEvents(selected).split('\n')[1]).toMatch(
      /^2026-01-01 00:02:00\s+CertificateRotated\s+certificate=api$/,
    );
    const run = await capture(() =>
      history(['--fleet', 'demo', '--local', dir, '--since', '2025-12-31T00:00:00Z']),
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split('\n')).toHaveLength(3);
  });

  it('parses --since durations and refuses nonsense', () => {
    const now = new Date('2026-01-10T00:00:00Z');
    expect(parseSince('24h', now).toISOString()).toBe('2026-01-09T00:00:00.000Z');
    expect(parseSince('7d', now).toISOString()).toBe('2026-01-03T00:00:00.000Z');
    expect(parseSince('2026-01-01T00:00:00Z', now).toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(() => parseSince('soon', now)).toThrow(ValidationError);
  });
});

describe('portcullis main', () => {
  it('prints the version of package.json', async () => {
    const run = await capture(() => main(['--version']));
    expect(run).toMatchObject({ code: 0, stdout: `portcullis ${VERSION}` });
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
    expect((await capture(() => main(['--profile', 'ops', '-V']))).stdout).toBe(`portcullis ${VERSION}`);
  });

  it('takes --profile and --region before the command', () => {
    expect(hoistGlobalOptions(['--profile', 'ops', '--region=eu-west-1', 'status', '--fleet', 'x'])).toEqual([
      'status',
      '--fleet',
      'x',
      '--profile',
      'ops',
      '--region',
      'eu-west-1',
    ]);
    expect(hoistGlobalOptions(['status', '--profile', 'ops'])).toEqual(['status', '--profile', 'ops']);
  });
});
