import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { summariseBatches, taskBatchOf, UNREACHABLE_SAMPLE } from '../../lib/rotation/tasks.ts';
import { makeUpdateTasks } from '../../lib/workflows/task-steps.ts';
import { createSimulatedFixture, type SimulatedFixture } from '../support/simulated-fleet.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-batches-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('task batches', () => {
  it('puts every task in exactly one of the batches, whatever the order, each batch a fair share', () => {
    const ids = Array.from(
      { length: 1000 },
      () => `arn:aws:ecs:eu-west-1:1:task/c/${randomUUID().replace(/-/g, '')}`,
    );
    const sizes = new Array(10).fill(0) as number[];
    for (const id of ids) sizes[taskBatchOf(id, 10)]! += 1;
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1000);
    for (const size of sizes) expect(size).toBeGreaterThan(50);
    expect(ids.map((id) => taskBatchOf(id, 10))).toEqual([...ids].map((id) => taskBatchOf(id, 10)));
    expect(taskBatchOf('task-1', 1)).toBe(0);
  });

  it('folds batch results: counts exact, unreachable ids bounded per batch', () => {
    expect(
      summariseBatches([
        { updated: 40, unreachable: ['a'], unreachableCount: 1 },
        { updated: 50, unreachable: [], unreachableCount: 0 },
      ]),
    ).toEqual({ needsRoll: true, updated: [], unreachable: ['a'], updatedCount: 90, unreachableCount: 1 });
  });
});

describe('UpdateTasks', () => {
  async function staged(fx: SimulatedFixture) {
    const versionId = randomUUID();
    await fx.store.create('sim/cert/c000', JSON.stringify({ kind: 'portcullis/placeholder' }), {
      clientRequestToken: randomUUID(),
    });
    await fx.store.put('sim/cert/c000', JSON.stringify({ serial: '0a1b' }), {
      clientRequestToken: versionId,
      stages: ['AWSPENDING'],
    });
    return {
      kind: 'certificate' as const,
      name: 'c000',
      secretId: 'sim/cert/c000',
      versionId,
      serial: '0a1b',
    };
  }

  it('nudges and verifies its share of the fleet, returning counts and at most 50 unreachable ids', async () => {
    const fx = await createSimulatedFixture(dir, { tasks: 300, certificates: 1 });
    const target = await staged(fx);
    fx.fleet.faults = fx.fleet.tasks
      .slice(0, 120)
      .map((t) => ({ taskId: t.taskId, secretId: '*', unreachable: true }));
    const update = makeUpdateTasks(fx.ports);
    const results = [];
    for (let index = 0; index < 3; index++) results.push(await update({ batch: { index, of: 3 }, target }));
    expect(results.reduce((n, r) => n + r.updated + r.unreachableCount, 0)).toBe(300);
    expect(results.reduce((n, r) => n + r.unreachableCount, 0)).toBe(120);
    for (const r of results) expect(r.unreachable.length).toBeLessThanOrEqual(UNREACHABLE_SAMPLE);
    const reachable = fx.fleet.tasks.slice(120);
    expect(
      reachable.every((t) => fx.fleet.served.get(t.taskId)?.get('sim/cert/c000') === target.versionId),
    ).toBe(true);
  });

  it('fails by name when a task serves something else, starting no task after it', async () => {
    const fx = await createSimulatedFixture(dir, { tasks: 40, certificates: 1 });
    const target = await staged(fx);
    fx.fleet.faults = [{ taskId: fx.fleet.tasks[0]!.taskId, secretId: '*', ignoreNudges: true }];
    await expect(makeUpdateTasks(fx.ports)({ batch: { index: 0, of: 1 }, target })).rejects.toMatchObject({
      name: 'ServedVersionMismatch',
    });
    // Ten at a time: the failure stops the batch before the rest of the fleet is touched.
    expect(fx.fleet.served.size).toBeLessThan(40);
  });
});
