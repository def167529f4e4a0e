/**
 * Network limits of the AWS SDK clients: a missing route or a stalled endpoint ends in a typed,
 * named error within seconds, never in the Lambda function's own timeout.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { ECSClient, ListTasksCommand } from '@aws-sdk/client-ecs';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  AWS_CONNECT_TIMEOUT_MS,
  AWS_MAX_ATTEMPTS,
  AWS_REQUEST_TIMEOUT_MS,
  AwsEndpointUnreachable,
  AwsRequestTimeout,
  awsClientConfig,
  defaultEcsClient,
  defaultSecretsManagerClient,
  EcsFleet,
  mapAwsError,
  SecretsManagerStore,
  ServiceUnavailable,
  transportFailure,
} from '../../lib/aws/index.ts';
import { mockAwsClient } from '../support/aws-mock.ts';

const REPO = join(import.meta.dirname, '..', '..');
const context = { service: 'SecretsManager', operation: 'GetSecretValue', resource: 'demo/secret' };
const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };

/** The errors @smithy/node-http-handler throws, as its 2.x (ACM PCA here) and 4.x versions word them. */
const timeoutError = (message: string, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error(message), { name: 'TimeoutError', $metadata: { attempts: 3 }, ...extra });
const CONNECT_TIMEOUTS = [
  timeoutError('Socket timed out without establishing a connection within 3000 ms'),
  timeoutError(
    '@smithy/node-http-handler - the request socket did not establish a connection with the server within the configured timeout of 3000 ms.',
  ),
];
const REQUEST_TIMEOUTS = [
  timeoutError('Connection timed out after 5000 ms'),
  timeoutError(
    '@smithy/node-http-handler - [ERROR] a request has exceeded the configured 5000 ms requestTimeout.',
    { code: 'ETIMEDOUT' },
  ),
  timeoutError(
    '@smithy/node-http-handler - the request socket timed out after 5000 ms of inactivity (configured by client requestHandler).',
  ),
];
const nodeError = (code: string, message = `connect ${code} 10.0.0.1:443`) =>
  Object.assign(new Error(message), { code });

describe('awsClientConfig', () => {
  it('bounds connect and request time, and keeps every retry inside the shortest Lambda timeout', async () => {
    const config = awsClientConfig();
    expect(config).toEqual({
      maxAttempts: AWS_MAX_ATTEMPTS,
      requestHandler: {
        connectionTimeout: AWS_CONNECT_TIMEOUT_MS,
        requestTimeout: AWS_REQUEST_TIMEOUT_MS,
        throwOnRequestTimeout: true,
      },
    });
    expect(AWS_CONNECT_TIMEOUT_MS).toBeLessThan(AWS_REQUEST_TIMEOUT_MS);
    // The SDK's standard retry mode waits at most 20 s between attempts, but from a 100 ms base
    // with full jitter: two retries wait well under 1 s. Leave a third of the budget for the
    // handler's own work and for a second call.
    const sls = parse(await readFile(join(REPO, 'serverless.yml'), 'utf8')) as {
      provider: { timeout: number };
      functions: Record<string, { timeout?: number }>;
    };
    const shortest = Math.min(
      sls.provider.timeout,
      ...Object.values(sls.functions).map((f) => f.timeout ?? sls.provider.timeout),
    );
    expect(shortest).toBe(30);
    expect(AWS_MAX_ATTEMPTS * AWS_REQUEST_TIMEOUT_MS + 1000).toBeLessThanOrEqual((shortest * 1000 * 2) / 3);
  });

  it.each([{ connectTimeoutMs: 0 }, { requestTimeoutMs: -1 }, { maxAttempts: 1.5 }])(
    'refuses %j with ValidationError',
    (limits) => {
      expect(() => awsClientConfig(limits)).toThrow(expect.objectContaining({ name: 'ValidationError' }));
    },
  );

  it('is what the adapters’ module-scope clients are built with', async () => {
    for (const client of [defaultSecretsManagerClient(), defaultEcsClient()]) {
      expect(await client.config.maxAttempts()).toBe(AWS_MAX_ATTEMPTS);
      // The handler resolves its options lazily; read them the way it does.
      const handler = client.config.requestHandler as unknown as { configProvider: Promise<unknown> };
      expect(await handler.configProvider).toMatchObject({
        connectionTimeout: AWS_CONNECT_TIMEOUT_MS,
        requestTimeout: AWS_REQUEST_TIMEOUT_MS,
        throwOnRequestTimeout: true,
      });
    }
  });
});

describe('mapAwsError on transport failures', () => {
  it.each(CONNECT_TIMEOUTS.map((e) => [e.message, e] as const))(
    'names a connect timeout AwsEndpointUnreachable: %s',
    (_, error) => {
      const mapped = mapAwsError(error, context);
      expect(mapped).toBeInstanceOf(AwsEndpointUnreachable);
      expect(mapped.name).toBe('AwsEndpointUnreachable');
      // Still a ServiceUnavailable for code that only asks whether AWS answered.
      expect(mapped).toBeInstanceOf(ServiceUnavailable);
      expect(mapped.message).toContain("SecretsManager GetSecretValue on 'demo/secret' failed");
      expect(mapped.message).toContain('(3 attempts)');
      expect(mapped.message).toContain('a NAT gateway or a VPC endpoint');
      expect(mapped.cause).toBe(error);
    },
  );

  it.each(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])(
    'names %s (no connection made) AwsEndpointUnreachable',
    (code) => {
      expect(mapAwsError(nodeError(code), context).name).toBe('AwsEndpointUnreachable');
    },
  );

  it('names the kernel connect timeout AwsEndpointUnreachable', () => {
    expect(mapAwsError(nodeError('ETIMEDOUT'), context).name).toBe('AwsEndpointUnreachable');
  });

  it.each(REQUEST_TIMEOUTS.map((e) => [e.message, e] as const))(
    'names a request timeout AwsRequestTimeout: %s',
    (_, error) => {
      const mapped = mapAwsError(error, context);
      expect(mapped.name).toBe('AwsRequestTimeout');
      expect(mapped).toBeInstanceOf(AwsRequestTimeout);
      expect(mapped).toBeInstanceOf(ServiceUnavailable);
    },
  );

  it('leaves resets, service errors and non-errors to the general table', () => {
    expect(transportFailure(nodeError('ECONNRESET', 'socket hang up'))).toBeUndefined();
    expect(mapAwsError(nodeError('ECONNRESET', 'socket hang up'), context).name).toBe('ServiceUnavailable');
    expect(transportFailure({ name: 'ResourceNotFoundException', message: 'x' })).toBeUndefined();
    expect(transportFailure('TimeoutError')).toBeUndefined();
    expect(transportFailure(null)).toBeUndefined();
  });
});

describe('adapters on a client whose endpoint cannot be reached', () => {
  it('end in AwsEndpointUnreachable, not a hang or an anonymous error', async () => {
    const sm = new SecretsManagerClient({ region: 'eu-west-1', credentials });
    const ecs = new ECSClient({ region: 'eu-west-1', credentials });
    mockAwsClient(sm).on(GetSecretValueCommand).rejects(CONNECT_TIMEOUTS[1]);
    mockAwsClient(ecs).on(ListTasksCommand).rejects(CONNECT_TIMEOUTS[1]);

    await expect(new SecretsManagerStore({ client: sm }).get('demo/secret')).rejects.toMatchObject({
      name: 'AwsEndpointUnreachable',
    });
    await expect(
      new EcsFleet({
        client: ecs,
        cluster: 'c',
        service: 's',
        adminPort: 9901,
        verifyPort: 8444,
      }).listTasks(),
    ).rejects.toMatchObject({ name: 'AwsEndpointUnreachable' });
  });
});

describe('a real SDK client against a loopback endpoint', () => {
  let server: Server;
  let port: number;
  let connections: number;
  const sockets = new Set<Socket>();

  beforeEach(async () => {
    connections = 0;
    // Accepts every connection and reads the request, but never answers.
    server = createServer((socket) => {
      connections += 1;
      sockets.add(socket);
      socket.on('data', () => {});
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  afterEach(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const client = (endpoint: string) =>
    new SecretsManagerClient({
      ...awsClientConfig({ connectTimeoutMs: 200, requestTimeoutMs: 400, maxAttempts: 2 }),
      region: 'eu-west-1',
      endpoint,
      credentials,
    });

  it('gives up on a server that never answers with AwsRequestTimeout after every attempt', async () => {
    const started = Date.now();

    const error = await new SecretsManagerStore({ client: client(`http://127.0.0.1:${port}`) })
      .get('demo/secret')
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(AwsRequestTimeout);
    expect((error as Error).message).toContain('(2 attempts)');
    expect(connections).toBe(2);
    // Two attempts of 400 ms plus the SDK's backoff: nowhere near a Lambda timeout.
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('reports a refused connection as AwsEndpointUnreachable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));

    await expect(
      new SecretsManagerStore({ client: client(`http://127.0.0.1:${closedPort}`) }).get('demo/secret'),
    ).rejects.toMatchObject({ name: 'AwsEndpointUnreachable' });
  });
});
