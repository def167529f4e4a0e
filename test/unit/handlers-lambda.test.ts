import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { lambdaHandler } from '../../functions/shared/lambda.ts';
import { makeIssueCertificate, schemas } from '../../lib/workflows/index.ts';
import { createControlPlaneFixture } from '../support/fakes.ts';

function fakeContext(functionName: string): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:eu-west-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '256',
    awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: '2026/11/23/[$LATEST]0123456789abcdef',
    getRemainingTimeInMillis: () => 30_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

describe('the notify Lambda entry', () => {
  const eventBridge = mockClient(EventBridgeClient);
  const saved = { ...process.env };

  beforeAll(() => {
    process.env.FLEET_NAME = 'demo';
    process.env.EVENT_BUS_NAME = 'portcullis-test';
  });

  afterEach(() => {
    eventBridge.reset();
  });

  afterAll(() => {
    eventBridge.restore();
    process.env = saved;
  });

  it('publishes the event on the configured bus with the fleet in its detail', async () => {
    eventBridge.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
    const { handler } = await import('../../functions/notify.ts');
    const result = await handler(
      { detailType: 'CertificateRotated', detail: { certificate: 'api', newSerial: 'aa' } },
      fakeContext('notify'),
    );
    expect(result).toEqual({ published: true, detailType: 'CertificateRotated' });
    const [call] = eventBridge.commandCalls(PutEventsCommand);
    const entry = call?.args[0].input.Entries?.[0];
    expect(entry).toMatchObject({
      EventBusName: 'portcullis-test',
      DetailType: 'CertificateRotated',
      Source: 'portcullis',
    });
    expect(JSON.parse(entry?.Detail ?? '{}')).toEqual({ certificate: 'api', newSerial: 'aa', fleet: 'demo' });
  });

  it('fails with ValidationError, before any AWS call, when the input does not parse', async () => {
    const { handler } = await import('../../functions/notify.ts');
    await expect(
      handler({ detailType: 'Whatever', detail: {} }, fakeContext('notify')),
    ).rejects.toMatchObject({
      name: 'ValidationError',
    });
    expect(eventBridge.commandCalls(PutEventsCommand)).toHaveLength(0);
  });
});

describe('a step wrapped by lambdaHandler on local ports', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-lambda-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('issues once through middy and answers a re-run with the same certificate', async () => {
    const fx = await createControlPlaneFixture(dir, { tasks: 0 });
    const handler = lambdaHandler(
      'issueCertificate',
      makeIssueCertificate(fx.ports),
      schemas.IssueCertificateInput,
    );
    const event = { executionName: 'exec-lambda', certificate: 'api' };
    const first = await handler(event, fakeContext('issue-certificate'));
    const second = await handler(event, fakeContext('issue-certificate'));
    expect(second.certificateId).toBe(first.certificateId);
    expect(fx.authority.issued).toHaveLength(1);
  });
});
