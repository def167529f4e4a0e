import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DemoEnvironment,
  rotateDemoCertificate,
  servedSerials,
  startDemoEnvironment,
} from '../../cli/demo/environment.ts';
import { sameSerial } from '../../lib/pki/serial.ts';
import { readCurrentCertificate } from '../../lib/workflows/rotation-steps.ts';

describe('rotate-certificates on a local fleet with a task the nudge cannot reach', () => {
  let env: DemoEnvironment | undefined;

  beforeAll(async () => {
    env = await startDemoEnvironment({ tasks: 2, print: () => {} });
    expect(env.missing).toEqual([]);
  });

  afterAll(async () => {
    await env?.close();
  });

  it('rolls the process fleet and ends with every task serving the new certificate', async () => {
    const fleet = env!.fleet;
    const before = await servedSerials(fleet, env!.observed);
    // task-2's sidecar dies; its HAProxy keeps serving the old certificate, unreachable for nudges.
    const victim = fleet.processes().find((p) => p.taskId === 'task-2')!;
    process.kill(victim.sidecarPid!, 'SIGKILL');

    const outcome = await rotateDemoCertificate(env!.ports, { rolloutMaxPolls: 60 });

    expect(outcome.status, `${outcome.error}: ${outcome.cause}`).toBe('SUCCEEDED');
    const visited = outcome.events.filter((e) => e.type === 'StateExited').map((e) => e.stateName);
    // The batch that holds task-2 reports it unreachable; only a roll fixes it.
    expect((outcome.output as { rotated: { rolledTasks: string[] }[] }).rotated[0]?.rolledTasks).toEqual([
      'task-2',
    ]);
    expect(visited).toContain('RollService');
    expect(visited).toContain('CheckRollout');
    const current = await readCurrentCertificate(env!.store, 'portcullis/demo/cert/api');
    expect(typeof current).toBe('object');
    const serial = (current as { serial: string }).serial;
    expect(sameSerial(serial, before[0]!.serial!)).toBe(false);
    const after = await servedSerials(fleet, env!.observed);
    expect(after.map((a) => a.taskId)).toEqual(['task-1', 'task-2']);
    for (const task of after) expect(sameSerial(task.serial ?? '', serial), task.taskId).toBe(true);
    // The roll replaced every task: new processes, second generation.
    expect(fleet.records().map((r) => r.generation)).toEqual([2, 2]);
    expect(fleet.processes().find((p) => p.taskId === 'task-2')!.sidecarPid).not.toBe(victim.sidecarPid);
  }, 90_000);

  it('follows a roll in progress started since the given time instead of starting another', async () => {
    const fleet = env!.fleet;
    const since = new Date();
    const completed = (id: string) =>
      expect.poll(() => fleet.rolloutState(id), { timeout: 60_000, interval: 200 }).toBe('COMPLETED');
    const first = await fleet.roll();
    expect(await fleet.roll({ reuseSince: since })).toEqual({
      deploymentId: first.deploymentId,
      reused: true,
    });
    await completed(first.deploymentId);
    // A finished roll is not followed: the task that needed one may still be there.
    const second = await fleet.roll({ reuseSince: since });
    expect(second.deploymentId).not.toBe(first.deploymentId);
    await completed(second.deploymentId);
  }, 90_000);
});
