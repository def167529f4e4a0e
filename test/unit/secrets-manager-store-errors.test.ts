import { ResourceNotFoundException } from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import {
  AwsServiceError,
  describeAwsError,
  isAwsErrorCode,
  mapAwsError,
  ServiceUnavailable,
} from '../../lib/aws/errors.ts';
import { CertificateNotReady, NotFoundError, ValidationError } from '../../lib/errors.ts';

const context = { service: 'SecretsManager', operation: 'GetSecretValue', resource: 'demo/secret' };

function awsError(name: string, status = 400, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${name} happened`), {
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId: 'req-42' },
    ...extra,
  });
}

describe('mapAwsError', () => {
  it.each([
    ['ResourceNotFoundException', 400, 'NotFoundError'],
    ['ClusterNotFoundException', 400, 'NotFoundError'],
    ['ThrottlingException', 400, 'Throttled'],
    ['TooManyRequestsException', 400, 'Throttled'],
    ['RequestLimitExceeded', 503, 'Throttled'],
    ['LimitExceededException', 400, 'Throttled'],
    ['ConcurrentModificationException', 400, 'Throttled'],
    ['RequestInProgressException', 400, 'Throttled'],
    ['KMSThrottlingException', 400, 'Throttled'],
    ['InvalidParameterException', 400, 'ValidationError'],
    ['InvalidRequestException', 400, 'ValidationError'],
    ['ValidationException', 400, 'ValidationError'],
    ['ResourceExistsException', 400, 'ConflictError'],
    ['ConflictException', 409, 'ConflictError'],
    ['AccessDeniedException', 400, 'AccessDenied'],
    ['ExpiredTokenException', 400, 'AccessDenied'],
    ['DecryptionFailure', 400, 'EncryptionKeyError'],
    ['EncryptionFailure', 400, 'EncryptionKeyError'],
    ['KMSDisabledException', 400, 'EncryptionKeyError'],
    ['InternalServiceError', 500, 'ServiceUnavailable'],
    ['SomeNewServerFault', 502, 'ServiceUnavailable'],
    ['SomeNewThing', 429, 'Throttled'],
    ['SomeForbiddenThing', 403, 'AccessDenied'],
    ['SomeMissingThing', 404, 'NotFoundError'],
    ['SomeNewClientFault', 400, 'AwsServiceError'],
  ])('maps %s (HTTP %i) to %s', (code, status, expected) => {
    const mapped = mapAwsError(awsError(code, status), context);

    expect(mapped.name).toBe(expected);
    expect(mapped.cause).toBeInstanceOf(Error);
  });

  it('maps a real SDK exception class by its name', () => {
    const error = new ResourceNotFoundException({ message: 'not here', $metadata: {} });

    expect(mapAwsError(error, context)).toBeInstanceOf(NotFoundError);
  });

  it('treats $retryable.throttling as Throttled whatever the code', () => {
    expect(mapAwsError(awsError('Odd', 400, { $retryable: { throttling: true } }), context).name).toBe(
      'Throttled',
    );
  });

  it('treats connection resets as ServiceUnavailable, and timeouts as its named kind AwsRequestTimeout', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const timeout = Object.assign(new Error('timed out'), { name: 'TimeoutError' });

    expect(mapAwsError(reset, context).name).toBe('ServiceUnavailable');
    expect(mapAwsError(timeout, context).name).toBe('AwsRequestTimeout');
    expect(mapAwsError(timeout, context)).toBeInstanceOf(ServiceUnavailable);
  });

  it('names the service, operation, resource, code and request id in the message', () => {
    const mapped = mapAwsError(awsError('ResourceNotFoundException'), context);

    expect(mapped.message).toBe(
      "SecretsManager GetSecretValue on 'demo/secret' failed: ResourceNotFoundException: ResourceNotFoundException happened (request req-42)",
    );
  });

  it('shortens very long service messages', () => {
    const long = Object.assign(new Error('x'.repeat(5000)), { name: 'InvalidParameterException' });

    expect(mapAwsError(long, context).message.length).toBeLessThan(500);
  });

  it('returns Portcullis errors unchanged', () => {
    const original = new ValidationError('bad');

    expect(mapAwsError(original, context)).toBe(original);
  });

  it('lets a service-specific override win over the generic table', () => {
    const mapped = mapAwsError(awsError('RequestInProgressException'), {
      service: 'ACMPCA',
      operation: 'GetCertificate',
      overrides: {
        RequestInProgressException: (message, cause) => new CertificateNotReady(message, { cause }),
      },
    });

    expect(mapped).toBeInstanceOf(CertificateNotReady);
  });

  it('keeps the code and status on AwsServiceError', () => {
    const mapped = mapAwsError(awsError('BrandNewException', 400), context);

    expect(mapped).toBeInstanceOf(AwsServiceError);
    expect((mapped as AwsServiceError).code).toBe('BrandNewException');
    expect((mapped as AwsServiceError).httpStatusCode).toBe(400);
  });

  it('copes with thrown non-errors', () => {
    expect(mapAwsError('boom', context).name).toBe('AwsServiceError');
    expect(mapAwsError(undefined, context).name).toBe('AwsServiceError');
    expect(describeAwsError(null).code).toBe('UnknownError');
  });
});

describe('isAwsErrorCode', () => {
  it('matches the SDK error name and never a Portcullis error', () => {
    expect(isAwsErrorCode(awsError('ResourceExistsException'), 'ResourceExistsException')).toBe(true);
    expect(isAwsErrorCode(awsError('ResourceExistsException'), 'ResourceNotFoundException')).toBe(false);
    expect(isAwsErrorCode(new ValidationError('x'), 'ValidationError')).toBe(false);
  });
});
