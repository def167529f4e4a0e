/**
 * The FleetReadiness custom resource: the check of a fleet's secrets that decides, at every
 * deploy, how many tasks the gateway service runs. The handler runs against the real
 * SecretsManagerStore over a mocked Secrets Manager (aws-sdk-client-mock with the in-memory
 * service of test/support), the fleet's secrets made by `portcullis init`'s own code with a
 * local CA, and answers a loopback HTTP server standing in for the pre-signed response URL.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initFleet } from '../../cli/commands/init.ts';
import { makeFleetReadinessHandler } from '../../functions/fleet-readiness.ts';
import {
  CUSTOM_RESOURCE_RESPONSE_MAX_BYTES,
  customResourceResponse,
  parseCustomResourceRequest,
  sendCustomResourceResponse,
} from '../../lib/aws/custom-resource.ts';
import { SecretsManagerStore } from '../../lib/aws/secrets-manager-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import type { SecretStore } from '../../lib/ports.ts';
import { readinessAnswer, readinessResourceId } from '../../lib/workflows/fleet-readiness.ts';
import { mockAwsClient } from '../support/aws-mock.ts';
import { FakeSecretsManager, serviceError } from '../support/fake-secrets-manager.ts';

const FLEET = 'edge';
const PREFIX = `portcullis/${FLEET}`;
const CONFIG_ID = `${PREFIX}/fleet-config`;
const fleetConfig = (certificates = ['api']) => ({
  fleet: FLEET,
  routes: [],
  certificates: certificates.map((name) => ({
    name,
    secretId: `${PREFIX}/cert/${name}`,
    commonName: `${name}.edge.test`,
    dns: [`${name}.edge.test`],
    usage: 'server',
    validityDays: 30,
  })),
  trust: { secretId: `${PREFIX}/trust` },
  nudgeKey: { secretId: `${PREFIX}/nudge-key` },
  allowlist: { source: { secretId: `${PREFIX}/allowlist` } },
});

const sm = mockAwsClient(SecretsManagerClient);
let secrets: FakeSecretsManager;
let store: SecretStore;
let dir: string;
let authority: LocalAuthority;
let server: Server;
let responseUrl: string;
let received: { method: string; path: string; headers: IncomingHttpHeaders; body: string }[] = [];
/** Status codes the response URL answers with, first to last (then 200). */
let answers: number[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-readiness-'));
  authority = await LocalAuthority.open(join(dir, 'ca'));
  server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => {
      body += chunk.toString('utf8');
    });
    request.on('end', () => {
      received.push({
        method: request.method ?? '',
        path: request.url ?? '',
        headers: request.headers,
        body,
      });
      response.statusCode = answers.shift() ?? 200;
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  responseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/bucket/response?X-Amz-Signature=x`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  sm.reset();
  secrets = new FakeSecretsManager();
  secrets.install(sm);
  store = new SecretsManagerStore({ client: new SecretsManagerClient({ region: 'eu-west-1' }) });
  received = [];
  answers = [];
});

afterEach(() => {
  sm.reset();
});

const handler = (over: Partial<Parameters<typeof makeFleetReadinessHandler>[0]> = {}) =>
  makeFleetReadinessHandler({ store: () => store, send: { timeoutMs: 2000 }, ...over });
const context = (remainingMs = 55_000) => ({ getRemainingTimeInMillis: () => remainingMs });

function request(
  type: 'Create' | 'Update' | 'Delete',
  options: { physicalResourceId?: string; properties?: Record<string, unknown> } = {},
) {
  return {
    RequestType: type,
    ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:portcullis-prod-edge-fleetReadiness',
    ResponseURL: responseUrl,
    StackId: 'arn:aws:cloudformation:eu-west-1:111122223333:stack/portcullis-prod-edge/guid',
    RequestId: 'request-1',
    LogicalResourceId: 'FleetReadiness',
    ResourceType: 'Custom::FleetReadiness',
    ...(options.physicalResourceId === undefined ? {} : { PhysicalResourceId: options.physicalResourceId }),
    ResourceProperties: {
      ServiceToken: 'arn:…',
      ServiceTimeout: '180',
      Fleet: FLEET,
      FleetConfigSecretId: CONFIG_ID,
      DesiredCount: '3',
      MinCapacity: '3',
      MaxCapacity: '9',
      Deployment: 'deploy-1',
      ...options.properties,
    },
  };
}

/** The one response the handler PUT, parsed. */
function response(): {
  Status: string;
  Reason?: string;
  PhysicalResourceId: string;
  StackId: string;
  RequestId: string;
  LogicalResourceId: string;
  Data: Record<string, string>;
} {
  expect(received).toHaveLength(1);
  expect(received[0]!.method).toBe('PUT');
  expect(received[0]!.path).toBe('/bucket/response?X-Amz-Signature=x');
  expect(Buffer.byteLength(received[0]!.body)).toBeLessThanOrEqual(CUSTOM_RESOURCE_RESPONSE_MAX_BYTES);
  return JSON.parse(received[0]!.body);
}

/** Calls that read (GetSecretValue, DescribeSecret) so far. */
function reads(): number {
  return sm.commandCalls(GetSecretValueCommand).length + sm.commandCalls(DescribeSecretCommand).length;
}

async function initialise(config = fleetConfig()) {
  await initFleet({
    store,
    authority,
    fleet: FLEET,
    fleetConfigText: JSON.stringify(config),
    allowlist: ['203.0.113.0/24'],
  });
}

describe('FleetReadiness on Create', () => {
  it('gives the service no task and no autoscaling room before init, naming what it waits for', async () => {
    await handler()(request('Create'), context());
    const answer = response();
    expect(answer).toMatchObject({
      Status: 'SUCCESS',
      PhysicalResourceId: readinessResourceId(FLEET, false),
      RequestId: 'request-1',
      LogicalResourceId: 'FleetReadiness',
      Data: { Ready: 'false', DesiredCount: '0', MinCapacity: '0', MaxCapacity: '0' },
    });
    expect(answer.Reason).toContain(`${CONFIG_ID} (missing)`);
    expect(answer.Reason).toContain('portcullis init');
  });

  it('waits for every secret the fleet config names while only the fleet config exists', async () => {
    await store.create(CONFIG_ID, JSON.stringify(fleetConfig()), { clientRequestToken: crypto.randomUUID() });
    await handler()(request('Create'), context());
    const answer = response();
    expect(answer.Data).toMatchObject({ Ready: 'false', DesiredCount: '0' });
    for (const id of ['cert/api', 'trust', 'allowlist', 'nudge-key'])
      expect(answer.Reason).toContain(`${PREFIX}/${id} (missing)`);
  });

  it('gives the configured counts once init created the fleet’s secrets', async () => {
    await initialise();
    const writesBefore = sm.calls().length - reads();
    await handler()(request('Create'), context());
    expect(response()).toMatchObject({
      Status: 'SUCCESS',
      PhysicalResourceId: readinessResourceId(FLEET, true),
      Data: { Ready: 'true', DesiredCount: '3', MinCapacity: '3', MaxCapacity: '9' },
    });
    // It only reads: the fleet config and the certificate's value, the others described.
    expect(sm.calls().length - reads()).toBe(writesBefore);
    expect(sm.commandCalls(PutSecretValueCommand)).toHaveLength(0);
  });

  it('refuses a certificate secret that holds no usable bundle', async () => {
    await initialise();
    await store.put(`${PREFIX}/cert/api`, JSON.stringify({ certificatePem: 'x' }), {
      clientRequestToken: crypto.randomUUID(),
    });
    await handler()(request('Create'), context());
    const answer = response();
    expect(answer.Data.Ready).toBe('false');
    expect(answer.Reason).toContain(`${PREFIX}/cert/api (AWSCURRENT is not a usable certificate bundle)`);
  });
});

describe('FleetReadiness on Update (every later deploy)', () => {
  it('starts the tasks at the first deploy after init', async () => {
    await initialise();
    await handler()(request('Update', { physicalResourceId: readinessResourceId(FLEET, false) }), context());
    expect(response()).toMatchObject({
      PhysicalResourceId: readinessResourceId(FLEET, true),
      Data: { Ready: 'true', DesiredCount: '3' },
    });
  });

  it('keeps a fleet that was ready serving when its config names a secret not created yet', async () => {
    await initialise();
    await store.put(CONFIG_ID, JSON.stringify(fleetConfig(['api', 'new'])), {
      clientRequestToken: crypto.randomUUID(),
    });
    await handler()(request('Update', { physicalResourceId: readinessResourceId(FLEET, true) }), context());
    const answer = response();
    expect(answer).toMatchObject({
      Status: 'SUCCESS',
      PhysicalResourceId: readinessResourceId(FLEET, true),
      Data: { Ready: 'true', DesiredCount: '3', MinCapacity: '3', MaxCapacity: '9' },
    });
    expect(answer.Reason).toContain('keeps its tasks');
    expect(answer.Reason).toContain(`${PREFIX}/cert/new (missing)`);
  });

  it('passes changed counts through once ready', async () => {
    await initialise();
    await handler()(
      request('Update', {
        physicalResourceId: readinessResourceId(FLEET, true),
        properties: { DesiredCount: '6', MinCapacity: '6', MaxCapacity: '12' },
      }),
      context(),
    );
    expect(response().Data).toEqual({
      Ready: 'true',
      DesiredCount: '6',
      MinCapacity: '6',
      MaxCapacity: '12',
    });
  });
});

describe('FleetReadiness failures', () => {
  it('fails the deploy, rather than guess a count, when Secrets Manager refuses the read', async () => {
    await initialise();
    secrets.refusals.push({
      operation: 'GetSecretValue',
      error: serviceError(SecretsManagerServiceException, 'AccessDeniedException', 'not authorized'),
    });
    await handler()(request('Update', { physicalResourceId: readinessResourceId(FLEET, true) }), context());
    const answer = response();
    expect(answer.Status).toBe('FAILED');
    expect(answer.PhysicalResourceId).toBe(readinessResourceId(FLEET, true));
    expect(answer.Reason).toMatch(/^AccessDenied: /);
    expect(answer.Data).toEqual({});
  });

  it('fails a Create with bad properties, still with a physical id for the rollback to delete', async () => {
    await handler()(request('Create', { properties: { MinCapacity: '10', MaxCapacity: '9' } }), context());
    const answer = response();
    expect(answer).toMatchObject({ Status: 'FAILED', PhysicalResourceId: 'FleetReadiness-failed' });
    expect(answer.Reason).toContain('ValidationError: FleetReadiness MinCapacity is above MaxCapacity');
    expect(sm.calls()).toHaveLength(0);
  });

  it('answers FAILED before the Lambda timeout when the check hangs', async () => {
    const hanging = { describe: () => new Promise(() => {}), get: () => new Promise(() => {}) } as never;
    const started = Date.now();
    // 1 s of budget: the handler keeps 5 s of the remaining 6 s for its answer.
    await handler({ store: () => hanging })(request('Create'), context(6000));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(response()).toMatchObject({ Status: 'FAILED', Reason: expect.stringMatching(/^CheckTimedOut: /) });
  });

  it('answers Delete without reading anything', async () => {
    await handler()(request('Delete', { physicalResourceId: readinessResourceId(FLEET, true) }), context());
    expect(response()).toMatchObject({
      Status: 'SUCCESS',
      PhysicalResourceId: readinessResourceId(FLEET, true),
    });
    expect(sm.calls()).toHaveLength(0);
  });

  it('throws on an event that is not a CloudFormation request, answering nobody', async () => {
    await expect(handler()({ detail: {} }, context())).rejects.toThrow(
      /not a CloudFormation custom resource request/,
    );
    expect(received).toHaveLength(0);
  });
});

describe('the response protocol', () => {
  const base = () => parseCustomResourceRequest(request('Create'));

  it('shortens a long Reason so that the response stays within 4096 bytes', () => {
    const body = customResourceResponse(base(), {
      status: 'SUCCESS',
      physicalResourceId: 'p',
      reason: 'ü'.repeat(10_000),
      data: { Ready: 'false' },
    });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(CUSTOM_RESOURCE_RESPONSE_MAX_BYTES);
    const parsed = JSON.parse(body) as { Reason: string; Data: unknown };
    expect(parsed.Reason.endsWith('…')).toBe(true);
    expect(parsed.Reason.length).toBeGreaterThan(1000);
    expect(parsed.Data).toEqual({ Ready: 'false' });
  });

  it('PUTs without a content type, retrying a 5xx but not a 4xx', async () => {
    answers = [503];
    await sendCustomResourceResponse(
      base(),
      { status: 'SUCCESS', physicalResourceId: 'p' },
      { timeoutMs: 2000 },
    );
    expect(received).toHaveLength(2);
    expect(received[1]!.headers['content-type'] ?? '').toBe('');
    received = [];
    answers = [403];
    await expect(
      sendCustomResourceResponse(base(), { status: 'SUCCESS', physicalResourceId: 'p' }, { timeoutMs: 2000 }),
    ).rejects.toThrow(/HTTP 403/);
    expect(received).toHaveLength(1);
  });

  it('stays ready once ready, and gives zero tasks otherwise (pure)', () => {
    const capacity = { desiredCount: 3, minCapacity: 3, maxCapacity: 9 };
    expect(readinessAnswer(FLEET, { ready: false }, capacity).capacity.desiredCount).toBe(0);
    expect(readinessAnswer(FLEET, { ready: false }, capacity, readinessResourceId(FLEET, false)).ready).toBe(
      false,
    );
    expect(
      readinessAnswer(FLEET, { ready: false }, capacity, readinessResourceId(FLEET, true)),
    ).toMatchObject({
      ready: true,
      kept: true,
      capacity,
    });
    // Another fleet's id proves nothing about this one.
    expect(readinessAnswer(FLEET, { ready: false }, capacity, readinessResourceId('other', true)).ready).toBe(
      false,
    );
  });
});
