import { describe, expect, it } from 'vitest';
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
