import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskRow } from '../../cli/commands/status.ts';
import {
  DEMO_FLEET,
  type DemoEnvironment,
  DemoSources,
  startDemoEnvironment,
} from '../../cli/demo/environment.ts';
import { connectOnce } from '../../embedded/traffic.ts';
import { lastJson, portcullis } from '../support/cli.ts';

interface StatusJson {
  fleet: string;
  current: { certificates: Record<string, string | null>; allowlistVersionId: string | null };
  tasks: TaskRow[];
}

describe('the portcullis CLI against a running local fleet (--local DIR)', () => {
  let dir: string;
  let env: DemoEnvironment | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-fleet-'));
    env = await startDemoEnvironment({ tasks: 2, stateDir: dir, print: () => {} });
    expect(env.missing).toEqual([]);
  });

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('status shows every task ready and in sync with the store', async () => {
    const run = await portcullis('status', '--fleet', DEMO_FLEET, '--local', dir, '--json');
    expect(run.code, run.stderr).toBe(0);
    const status = lastJson<StatusJson>(run.stdout);
    expect(status.tasks.map((t) => t.taskId)).toEqual(['task-1', 'task-2']);
    for (const task of status.tasks) {
      expect(task).toMatchObject({ health: 'ready', inSync: true });
      expect(task.certificates.api?.serial).toBe(status.current.certificates.api);
      expect(task.allowlist?.versionId).toBe(status.current.allowlistVersionId);
    }
    const table = await portcullis('status', '--fleet', DEMO_FLEET, '--local', dir);
    expect(table.stdout).toMatch(/^TASK\s+HEALTH/);
    expect(table.stdout).toMatch(/task-2\s+ready\s+api=/);
  });

  it('allowlist remove reaches every task: the removed source is refused, the rest still served', async () => {
    const run = await portcullis(
      'allowlist',
      'remove',
      DemoSources.trafficCidr,
      '--fleet',
      DEMO_FLEET,
      '--local',
      dir,
      '--reason',
      'test',
      '--json',
    );
    expect(run.code, run.stderr).toBe(0);
    expect(lastJson(run.stdout)).toMatchObject({ status: 'SUCCEEDED', removed: [DemoSources.trafficCidr] });
    const route = env!.routes[env!.routes.length - 1]!;
    for (const endpoint of env!.fleet.endpoints()) {
      expect((await connectOnce({ endpoint, route, source: DemoSources.traffic, timeoutMs: 3000 })).ok).toBe(
        false,
      );
      expect((await connectOnce({ endpoint, route, source: DemoSources.other })).ok).toBe(true);
    }
    const status = lastJson<StatusJson>(
      (await portcullis('status', '--fleet', DEMO_FLEET, '--local', dir, '--json')).stdout,
    );
    // Left: the other client's range (verification needs no allowlist entry: it has its own listener).
    for (const task of status.tasks) expect(task).toMatchObject({ inSync: true, allowlist: { size: 1 } });
  });

  it('rotate --force puts a new certificate on every task, verified by a handshake', async () => {
    const before = lastJson<StatusJson>(
      (await portcullis('status', '--fleet', DEMO_FLEET, '--local', dir, '--json')).stdout,
    );
    const run = await portcullis(
      'rotate',
      '--fleet',
      DEMO_FLEET,
      '--local',
      dir,
      '--certificate',
      'api',
      '--force',
    );
    expect(run.code, run.stderr).toBe(0);
    // Each batch of tasks is nudged and verified by a handshake in UpdateTaskBatch.
    expect(run.stdout).toMatch(/✓ UpdateTaskBatch/);
    expect(run.stdout).toMatch(/succeeded: /);
    const after = lastJson<StatusJson>(
      (await portcullis('status', '--fleet', DEMO_FLEET, '--local', dir, '--json')).stdout,
    );
    expect(after.current.certificates.api).not.toBe(before.current.certificates.api);
    for (const task of after.tasks) {
      expect(task.certificates.api?.serial).toBe(after.current.certificates.api);
      expect(task.inSync).toBe(true);
    }
  });

  it('status exits 1 and names the task when a sidecar is down', async () => {
    const pid = env!.fleet.processes()[1]!.sidecarPid!;
    process.kill(pid, 'SIGKILL');
    const run = await portcullis('status', '--fleet', DEMO_FLEET, '--local', dir, '--json');
    expect(run.code).toBe(1);
    const status = lastJson<StatusJson>(run.stdout);
    expect(status.tasks[1]).toMatchObject({ taskId: 'task-2', health: 'unreachable' });
    expect(status.tasks[0]).toMatchObject({ health: 'ready' });
  });
});
