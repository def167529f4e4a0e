/**
 * The operator's view of a running local fleet: `status` in every output format and in watch
 * mode (bounded by --count, stopped by Ctrl-C), `history` of what the control plane did, and
 * every task's /metrics read by both exposition readers.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { TaskRow } from '../../cli/commands/status.ts';
import {
  DEMO_FLEET,
  type DemoEnvironment,
  rotateDemoCertificate,
  startDemoEnvironment,
} from '../../cli/demo/environment.ts';
import { CLI_MAIN, portcullis } from '../support/cli.ts';
import { checkExposition, sampleValue } from '../support/exposition.ts';

interface StatusJson {
  fleet: string;
  tasks: TaskRow[];
}

describe('observing a running local fleet', () => {
  let dir: string;
  let env: DemoEnvironment | undefined;
  const local = () => ['--fleet', DEMO_FLEET, '--local', dir];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-observe-'));
    env = await startDemoEnvironment({ tasks: 2, stateDir: dir, print: () => {} });
    expect(env.missing).toEqual([]);
    const rotation = await rotateDemoCertificate(env.ports, { rolloutMaxPolls: 60, print: () => {} });
    expect(rotation.status).toBe('SUCCEEDED');
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('status shows every object in sync, the fleet config included, in json, yaml and wide', async () => {
    const [json, yaml, wide] = await Promise.all([
      portcullis('status', ...local(), '-o', 'json'),
      portcullis('status', ...local(), '-o', 'yaml'),
      portcullis('status', ...local(), '-o', 'wide'),
    ]);
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as StatusJson;
    for (const task of report.tasks) {
      expect(task).toMatchObject({ health: 'ready', inSync: true, outOfSync: [] });
      expect(task.fleetConfig?.versionId).toMatch(/\S/);
      expect(task.certificates.api?.daysToExpiry).toBeGreaterThan(0);
      expect(Date.parse(task.certificates.api?.renewAt ?? '')).toBeLessThan(
        Date.parse(task.certificates.api!.notAfter),
      );
    }
    expect((parseYaml(yaml.stdout) as StatusJson).tasks.map((t) => t.taskId)).toEqual(
      report.tasks.map((t) => t.taskId),
    );
    expect(wide.stdout.split('\n')[0]).toMatch(/ADDRESS.*RENEW AT.*FLEET CONFIG/);
    expect(await portcullis('status', ...local(), '-o', 'xml')).toMatchObject({ code: 2 });
  });

  it('status --watch prints --count rounds, one JSON object per line', async () => {
    const run = await portcullis(
      'status',
      ...local(),
      '--watch',
      '--interval',
      '0.2',
      '--count',
      '3',
      '-o',
      'json',
    );
    expect(run.code, run.stderr).toBe(0);
    const rounds = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as StatusJson);
    expect(rounds).toHaveLength(3);
    for (const round of rounds) expect(round.tasks.every((t) => t.inSync)).toBe(true);
  });

  it('status --watch stops on Ctrl-C with the last round’s exit code', async () => {
    const child = spawn(
      process.execPath,
      [CLI_MAIN, 'status', ...local(), '--watch', '--interval', '30', '-o', 'json'],
      {
        env: { ...process.env, NO_COLOR: '1' },
      },
    );
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) child.kill('SIGINT');
    });
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(out.trim().split('\n')).toHaveLength(1);
  });

  it('history lists the rotation the control plane did', async () => {
    const run = await portcullis('history', ...local(), '-o', 'json');
    expect(run.code, run.stderr).toBe(0);
    const events = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { detailType: string });
    expect(events.map((e) => e.detailType)).toContain('CertificateRotated');
    const table = await portcullis('history', ...local(), '--type', 'CertificateRotated');
    expect(table.stdout.split('\n')[1]).toMatch(/CertificateRotated\s+certificate=api/);
  });

  it('every task’s /metrics parses and shows it in sync', async () => {
    for (const task of await env!.fleet.listTasks()) {
      const text = await (await fetch(`http://${task.address}:${task.adminPort}/metrics`)).text();
      const families = checkExposition(text);
      expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(1);
      expect(sampleValue(families, 'portcullis_object_in_sync', { object: 'fleet', kind: 'fleet' })).toBe(1);
    }
  });
});
