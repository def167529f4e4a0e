import {
  EventBridgeClient,
  EventBridgeServiceException,
  InternalException,
  PutEventsCommand,
  ResourceNotFoundException,
} from '@aws-sdk/client-eventbridge';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventBridgeNotifier } from '../../lib/aws/eventbridge-notifier.ts';
import { mockAwsClient } from '../support/aws-mock.ts';

const events = mockAwsClient(EventBridgeClient);

beforeEach(() => events.reset());
afterEach(() => events.reset());

function notifier(): EventBridgeNotifier {
  return new EventBridgeNotifier({
    client: new EventBridgeClient({}),
    eventBusName: 'portcullis-bus',
    source: 'portcullis',
  });
}

describe('EventBridgeNotifier.publish', () => {
  it('puts one entry with source, detail type, JSON detail and bus name', async () => {
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });

    await notifier().publish('CertificateRotated', { fleet: 'prod', certificate: 'api', serial: '1fa0' });

    expect(events.commandCalls(PutEventsCommand)[0]!.args[0].input).toEqual({
      Entries: [
        {
          Source: 'portcullis',
          DetailType: 'CertificateRotated',
          Detail: '{"fleet":"prod","certificate":"api","serial":"1fa0"}',
          EventBusName: 'portcullis-bus',
        },
      ],
    });
  });

  it('uses the default bus and source when none are configured', async () => {
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });

    await new EventBridgeNotifier({ client: new EventBridgeClient({}) }).publish('RotationFailed', {});

    expect(events.commandCalls(PutEventsCommand)[0]!.args[0].input.Entries?.[0]).toMatchObject({
      Source: 'portcullis',
      EventBusName: 'default',
    });
  });

  it.each([
    ['ThrottlingException', 'Throttled'],
    ['InternalFailure', 'Throttled'],
    ['InvalidArgument', 'ValidationError'],
    ['MalformedDetail', 'ValidationError'],
    ['AccessDeniedException', 'AccessDenied'],
    ['NotAuthorizedForSourceException', 'AwsServiceError'],
  ])('turns a refused entry with %s into %s naming the code', async (code, expected) => {
    events.on(PutEventsCommand).resolves({
      FailedEntryCount: 1,
      Entries: [{ ErrorCode: code, ErrorMessage: 'entry refused' }],
    });

    const error = await notifier()
      .publish('CertificateRotated', { fleet: 'prod' })
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ name: expected });
    expect((error as Error).message).toContain(code);
  });

  it.each([
    [
      'ResourceNotFoundException',
      () => new ResourceNotFoundException({ message: 'no bus', $metadata: {} }),
      'NotFoundError',
    ],
    [
      'InternalException',
      () => new InternalException({ message: 'boom', $metadata: { httpStatusCode: 500 } }),
      'ServiceUnavailable',
    ],
    [
      'ThrottlingException',
      () =>
        new EventBridgeServiceException({
          name: 'ThrottlingException',
          $fault: 'client',
          message: 'Rate exceeded',
          $metadata: { httpStatusCode: 400 },
        }),
      'Throttled',
    ],
  ])('maps a thrown %s to %s', async (_code, make, expected) => {
    events.on(PutEventsCommand).rejects(make());

    await expect(notifier().publish('CertificateRotated', {})).rejects.toMatchObject({ name: expected });
  });

  it('refuses an event over the 256 KiB entry limit without calling EventBridge', async () => {
    await expect(notifier().publish('Big', { blob: 'x'.repeat(300 * 1024) })).rejects.toMatchObject({
      name: 'ValidationError',
    });
    expect(events.commandCalls(PutEventsCommand)).toHaveLength(0);
  });
});
