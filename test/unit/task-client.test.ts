import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpTaskClient } from '../../lib/task-client/index.ts';

const task = {
  taskId: 't-1',
  address: '127.0.0.1',
  adminPort: 9901,
  tlsAddress: '127.0.0.1',
  tlsPort: 443,
  lastStatus: 'RUNNING',
};

describe('HttpTaskClient options', () => {
  it('refuses an empty nudge key', () => {
    expect(() => new HttpTaskClient({ nudgeKey: Buffer.alloc(0) })).toThrow(/nudge key is empty/);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('refuses a timeout of %s ms', (timeoutMs) => {
    expect(() => new HttpTaskClient({ nudgeKey: Buffer.alloc(32, 1), timeoutMs })).toThrow(/timeoutMs/);
  });

  it('refuses a nudge without a secret id before connecting anywhere', async () => {
    const client = new HttpTaskClient({ nudgeKey: Buffer.alloc(32, 1) });

    await expect(client.nudge(task, { secretId: '' })).rejects.toMatchObject({ name: 'ValidationError' });
  });
});

describe('HttpTaskClient against a sidecar that is not ready yet', () => {
  let server: Server;
  let port: number;
  /** What the loopback sidecar answers: per path, status code and JSON body. */
  let answers: Record<string, { statusCode: number; body: unknown }>;

  beforeEach(async () => {
    server = createServer((req, res) => {
      const answer = answers[(req.url ?? '').split('?')[0]!] ?? { statusCode: 404, body: {} };
      req.resume();
      req.on('end', () => {
        res.writeHead(answer.statusCode, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const client = () => new HttpTaskClient({ nudgeKey: Buffer.alloc(32, 1), timeoutMs: 2000 });
  const at = () => ({ ...task, adminPort: port });
  const unknownSecret = {
    statusCode: 404,
    body: {
      error: { name: 'NotFoundError', message: 'secret prod/cert/api is not one this sidecar serves' },
    },
  };
  const status = (ready: boolean) => ({ statusCode: 200, body: { ready, certificates: {} } });

  it('reports a 404 to a nudge as TaskUnreachable while the sidecar says it is not ready', async () => {
    answers = { '/v1/nudge': unknownSecret, '/v1/status': status(false) };

    const error = await client()
      .nudge(at(), { secretId: 'prod/cert/api' })
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'TaskUnreachable' });
    expect((error as Error).message).toMatch(/not ready yet/);
  });

  it('keeps NotFoundError for a ready sidecar that does not serve the secret', async () => {
    answers = { '/v1/nudge': unknownSecret, '/v1/status': status(true) };

    await expect(client().nudge(at(), { secretId: 'prod/cert/api' })).rejects.toMatchObject({
      name: 'NotFoundError',
    });
  });

  it('reports a 404 as TaskUnreachable when the status that should explain it fails too', async () => {
    answers = { '/v1/nudge': unknownSecret, '/v1/status': { statusCode: 500, body: {} } };

    await expect(client().nudge(at(), { secretId: 'prod/cert/api' })).rejects.toMatchObject({
      name: 'TaskUnreachable',
    });
  });

  it('reports the sidecar 503 (no nudge key loaded yet) as TaskUnreachable', async () => {
    answers = {
      '/v1/nudge': {
        statusCode: 503,
        body: { error: { name: 'SidecarNotReady', message: 'no nudge key loaded' } },
      },
    };

    await expect(client().nudge(at(), { secretId: 'prod/cert/api' })).rejects.toMatchObject({
      name: 'TaskUnreachable',
    });
  });
});
