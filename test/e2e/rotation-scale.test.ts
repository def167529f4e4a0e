/**
 * rotate-certificates (100 due certificates) and update-allowlist at fleet scale on the local runner, over 1 000
 * simulated tasks (the real store and CA; tasks in memory). The runner counts each
 * execution's history events and largest payload as Step Functions does; both must stay under
 * half of the limits, and one failing task must end as it does in a two-task fleet.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecutionLimitExceeded } from '../../lib/errors.ts';
import { runStateMachine, StepFunctionsLimits, statsTotals } from '../../lib/local/state-machine-runner.ts';
import { Stage } from '../../lib/ports.ts';
import { createSimulatedFixture } from '../support/simulated-fleet.ts';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-scale-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const settings = { graceSeconds: 0, rolloutPollSeconds: 0, rolloutMaxPolls: 3 };

describe('rotate-certificates at fleet scale', () => {
  it('rotates 100 certificates on 1 000 tasks under half of the history and payload limits; one task that keeps the old serial rolls back only its certificate, one that cannot be reached is rolled', async () => {
    const fx = await createSimulatedFixture(dir, { tasks: 1000, certificates: 100 });
    const stubborn = fx.fleet.tasks[499]!.taskId;
    const gone = fx.fleet.tasks[699]!.taskId;
    fx.fleet.faults = [
      { taskId: stubborn, secretId: 'sim/cert/c042', ignoreNudges: true },
      { taskId: gone, secretId: 'sim/cert/c007', unreachable: true },
    ];
    const result = await runStateMachine('rotate-certificates', settings, fx.ports, {
      instant: true,
      executionName: 'scale',
    });

    // The outcome of a two-task fleet: the run fails with the task's error once every
    // certificate has ended, that certificate is rolled back, the unreachable task is rolled.
    expect(result).toMatchObject({ status: 'FAILED', error: 'ServedVersionMismatch' });
    const failed = fx.notifier.events.filter((e) => e.detailType === 'CertificateRotationFailed');
    expect(failed.map((e) => [e.detail.certificate, e.detail.error])).toEqual([
      ['c042', 'ServedVersionMismatch'],
    ]);
    expect(failed[0]?.detail).toMatchObject({ rollback: { revokedSerial: expect.any(String) } });
    expect(fx.notifier.events.filter((e) => e.detailType === 'CertificateRotated')).toHaveLength(99);
    const c042 = await fx.store.describe('sim/cert/c042');
    expect(c042.versions.find((v) => v.stages.includes(Stage.Pending))).toBeUndefined();
    expect(JSON.parse((await fx.store.get('sim/cert/c042', { stage: Stage.Current })).value)).toEqual({
      kind: 'portcullis/placeholder',
    });
    const c007 = fx.notifier.events.find((e) => e.detail.certificate === 'c007')!;
    expect(c007.detail.tasks).toMatchObject({ unreachable: [gone], unreachableCount: 1, updated: 999 });
    expect(fx.fleet.rolls).toHaveLength(1);
    // Every other certificate is current and served by all 1 000 tasks.
    const c050 = await fx.store.get('sim/cert/c050', { stage: Stage.Current });
    expect(
      fx.fleet.tasks.every((t) => fx.fleet.served.get(t.taskId)?.get('sim/cert/c050') === c050.versionId),
    ).toBe(true);

    const totals = statsTotals(result.stats);
    expect(totals.executions).toBe(101);
    expect(totals.maxHistoryEvents).toBeLessThan(StepFunctionsLimits.historyEvents / 2);
    expect(totals.largestPayloadBytes).toBeLessThan(StepFunctionsLimits.payloadBytes / 2);
    // The parent's history grows with the certificates, a child's with its batches: neither with the tasks.
    const child = result.stats.children.find((c) => c.historyEvents > 0)!;
    expect(child.historyEvents).toBeLessThan(400);
  }, 60_000);

  it('updates the allowlist of 1 000 tasks in batches, far under the limits, naming the one task it could not reach', async () => {
    const fx = await createSimulatedFixture(dir, { tasks: 1000, certificates: 1 });
    const gone = fx.fleet.tasks[321]!.taskId;
    fx.fleet.faults = [{ taskId: gone, secretId: '*', unreachable: true }];
    const result = await runStateMachine(
      'update-allowlist',
      { add: ['192.0.2.0/24'], reason: 'partner office' },
      fx.ports,
      { instant: true, executionName: 'allowlist-scale' },
    );
    expect(result).toMatchObject({
      status: 'SUCCEEDED',
      output: { updatedTasks: 999, unreachableTasks: [gone], unreachableTaskCount: 1 },
    });
    const current = await fx.store.get('sim/allowlist', { stage: Stage.Current });
    expect(JSON.parse(current.value).cidrs).toEqual(['10.0.0.0/8', '192.0.2.0/24']);
    const totals = statsTotals(result.stats);
    // 10 batches, not 1 000 tasks: a few dozen events.
    expect(totals.maxHistoryEvents).toBeLessThan(200);
    expect(totals.largestPayloadBytes).toBeLessThan(StepFunctionsLimits.payloadBytes / 2);
  }, 60_000);

  it('fails a run that would pass a Step Functions limit, naming the limit', async () => {
    const fx = await createSimulatedFixture(join(dir, 'a'), { tasks: 20, certificates: 3 });
    const tooMany = runStateMachine('rotate-certificates', settings, fx.ports, {
      instant: true,
      limits: { historyEvents: 60 },
    });
    await expect(tooMany).rejects.toThrow(ExecutionLimitExceeded);
    await expect(tooMany).rejects.toMatchObject({ limit: 'historyEvents', max: 60 });
    // A fresh fleet: the stopped run above left its leases.
    const other = await createSimulatedFixture(join(dir, 'b'), { tasks: 20, certificates: 3 });
    const tooLarge = runStateMachine('rotate-certificates', settings, other.ports, {
      instant: true,
      limits: { payloadBytes: 1500 },
    });
    await expect(tooLarge).rejects.toMatchObject({ name: 'ExecutionLimitExceeded', limit: 'payloadBytes' });
  }, 30_000);
});
