import { cp, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CurrentState, TaskRow } from '../../cli/commands/status.ts';
import type { FleetRegistry } from '../../embedded/process-fleet.ts';
import { encodePathSegment } from '../../lib/local/file-secret-store.ts';
import type { TaskStatus } from '../../lib/ports.ts';
import { lastJson, portcullis } from '../support/cli.ts';

/** A stand-in sidecar on loopback (ephemeral port) answering `GET /v1/status` with `status`. */
async function fakeSidecar(status: TaskStatus): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    const found = request.method === 'GET' && request.url === '/v1/status';
    response.writeHead(found ? 200 : 404, { 'content-type': 'application/json' });
    response.end(JSON.stringify(found ? status : { error: { message: 'no such thing' } }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * A local fleet registry listing one running task whose sidecar is `adminPort`, owned by this
 * (live) process, so `status --local` asks it as it would a task of `portcullis demo`.
 */
function registry(local: string, adminPort: number): FleetRegistry {
  return {
    format: 2,
    fleet: 'clitest',
    ownerPid: process.pid,
    storeDir: join(local, 'store'),
    fleetConfigSecretId: 'portcullis/clitest/fleet-config',
    tasks: [
      {
        taskId: 'task-1',
        generation: 1,
        address: '127.0.0.1',
        ports: { admin: adminPort, tls: adminPort, health: adminPort, verify: null },
        dir: join(local, 'fleet', 'task-1'),
        sidecarPid: null,
        haproxyPid: null,
        startedAt: new Date().toISOString(),
        lastStatus: 'RUNNING',
      },
    ],
  };
}

const fleetConfig = {
  fleet: 'clitest',
  routes: [],
  certificates: [
    {
      name: 'api',
      secretId: 'portcullis/clitest/cert/api',
      commonName: 'api.clitest.test',
      dns: ['api.clitest.test'],
      usage: 'server',
    },
  ],
  trust: { secretId: 'portcullis/clitest/trust' },
  nudgeKey: { secretId: 'portcullis/clitest/nudge-key' },
  allowlist: { source: { secretId: 'portcullis/clitest/allowlist' } },
};

describe('the portcullis CLI against a local directory', () => {
  let dir: string;
  let local: string;
  let configFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-'));
    local = join(dir, 'local');
    configFile = join(dir, 'fleet.json');
    await writeFile(configFile, JSON.stringify(fleetConfig));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints help for every command and exits 0', async () => {
    const commands = ['init', 'rotate', 'status', 'allowlist', 'demo'];
    const runs = await Promise.all(commands.map((command) => portcullis(command, '--help')));
    runs.forEach((run, i) => {
      expect(run.code, commands[i]).toBe(0);
      expect(run.stdout, commands[i]).toMatch(/^Usage: portcullis /);
    });
  });

  it('exits 2 on usage errors', async () => {
    const runs = await Promise.all([
      portcullis(),
      portcullis('frobnicate'),
      portcullis('rotate'),
      portcullis('status', '--fleet', 'clitest', '--bogus'),
      portcullis('allowlist', 'frob', '--fleet', 'clitest'),
      portcullis('allowlist', 'add', '--fleet', 'clitest', '10.0.0.0/8'),
      portcullis('demo', '--tasks', 'many'),
    ]);
    for (const run of runs) expect(run.code, run.stderr).toBe(2);
    expect(runs[5]!.stderr).toMatch(/needs --reason/);
  });

  it('init creates the fleet secrets and a first certificate, and a second run keeps them', async () => {
    const first = await portcullis(
      'init',
      '--fleet',
      'clitest',
      '--local',
      local,
      '--config',
      configFile,
      '--allowlist',
      '203.0.113.0/24',
    );
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/created fleet-config +portcullis\/clitest\/fleet-config/);
    expect(first.stdout).toMatch(/created nudge-key/);
    expect(first.stdout).toMatch(/issued +certificate +portcullis\/clitest\/cert\/api serial [0-9a-f]+/);
    expect(first.stdout).not.toMatch(/PRIVATE KEY/);

    const second = await portcullis(
      'init',
      '--fleet',
      'clitest',
      '--local',
      local,
      '--config',
      configFile,
      '--json',
    );
    expect(second.code, second.stderr).toBe(0);
    const steps = lastJson(second.stdout).steps as { action: string }[];
    expect(steps.map((s) => s.action)).toEqual(['kept', 'kept', 'kept', 'kept', 'kept']);
  });

  it('allowlist show prints the current list', async () => {
    const run = await portcullis('allowlist', 'show', '--fleet', 'clitest', '--local', local, '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(lastJson(run.stdout)).toMatchObject({ cidrs: ['203.0.113.0/24'], reason: 'portcullis init' });
  });

  it('refuses a bad CIDR with exit 1 and a clear message, changing nothing', async () => {
    const before = lastJson(
      (await portcullis('allowlist', 'show', '--fleet', 'clitest', '--local', local, '--json')).stdout,
    );
    const run = await portcullis(
      'allowlist',
      'add',
      '--fleet',
      'clitest',
      '--local',
      local,
      '10.0.0.0/33',
      '--reason',
      'typo',
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/invalid CIDR:\n\s+"10\.0\.0\.0\/33": .*32/);
    const after = lastJson(
      (await portcullis('allowlist', 'show', '--fleet', 'clitest', '--local', local, '--json')).stdout,
    );
    expect(after.versionId).toBe(before.versionId);
  });

  it('refuses a /0 entry the fleet does not allow, before starting anything', async () => {
    const run = await portcullis(
      'allowlist',
      'add',
      '--fleet',
      'clitest',
      '--local',
      local,
      '0.0.0.0/0',
      '--reason',
      'open up',
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/allows every address/);
  });

  it('status reports no tasks when no local fleet runs', async () => {
    const run = await portcullis('status', '--fleet', 'clitest', '--local', local, '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(lastJson(run.stdout)).toMatchObject({ fleet: 'clitest', tasks: [] });
  });

  it('status still lists the tasks when the allowlist secret is gone, reports it once as missing and exits 1', async () => {
    // A copy of the store without the allowlist secret, as an interrupted init or a deletion leaves it.
    const broken = join(dir, 'broken');
    const allowlistId = 'portcullis/clitest/allowlist';
    await cp(join(local, 'store'), join(broken, 'store'), { recursive: true });
    const allowlistDir = join(broken, 'store', 'secrets', encodePathSegment(allowlistId));
    expect((await stat(allowlistDir)).isDirectory()).toBe(true);
    await rm(allowlistDir, { recursive: true });
    const served: TaskStatus = {
      ready: true,
      certificates: {
        api: { versionId: 'v-api', serial: '0a1b2c3d4e5f60718293', notAfter: '2027-01-01T00:00:00.000Z' },
      },
      allowlist: { versionId: 'allow-before-the-deletion', size: 1 },
      lastApply: { at: '2026-11-23T17:00:00.000Z', ok: true },
    };
    const { server, port } = await fakeSidecar(served);
    try {
      await mkdir(join(broken, 'fleet'), { recursive: true });
      await writeFile(join(broken, 'fleet', 'registry.json'), JSON.stringify(registry(broken, port)));

      const [json, table] = await Promise.all([
        portcullis('status', '--fleet', 'clitest', '--local', broken, '--json'),
        portcullis('status', '--fleet', 'clitest', '--local', broken),
      ]);

      expect(json.code, json.stderr).toBe(1);
      expect(json.stderr).toBe('');
      const report = lastJson<{ current: Required<CurrentState>; tasks: TaskRow[] }>(json.stdout);
      expect(report.current.missing).toEqual([
        { role: 'allowlist', secretId: allowlistId, state: 'missing', error: 'NotFoundError' },
      ]);
      expect(report.current.allowlistVersionId).toBeNull();
      expect(report.current.certificates.api).toMatch(/^[0-9a-f]+$/);
      expect(report.tasks).toEqual([
        {
          taskId: 'task-1',
          address: `127.0.0.1:${port}`,
          health: 'ready',
          certificates: {
            api: {
              ...served.certificates.api,
              daysToExpiry: expect.any(Number),
              renewAt: null,
              inSync: false,
            },
          },
          allowlist: served.allowlist,
          trust: null,
          fleetConfig: null,
          lastApply: served.lastApply,
          // What it serves is behind the store's current, and it does not say its fleet config.
          outOfSync: ['certificate api', 'trust', 'fleet config'],
          inSync: false,
        },
      ]);

      expect(table.code, table.stderr).toBe(1);
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(3);
      expect(lines[0]).toBe(`allowlist  ${allowlistId}  expected: missing (NotFoundError)`);
      expect(lines[1]).toMatch(/^TASK\s+HEALTH/);
      expect(lines[2]).toMatch(
        /^task-1\s+ready\s+api=0a1b2c3d4e5f… 2027-01-01 \d+\.\dd\s+allow-be… \(1\)\s+17:00:00 ok\s+no \(certificate api, trust, fleet config\)$/,
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('allowlist add runs update-allowlist locally and the store serves the new list', async () => {
    const run = await portcullis(
      'allowlist',
      'add',
      '--fleet',
      'clitest',
      '--local',
      local,
      '198.51.100.0/24',
      '--reason',
      'partner',
      '--json',
    );
    expect(run.code, run.stderr).toBe(0);
    expect(lastJson(run.stdout)).toMatchObject({ status: 'SUCCEEDED', added: ['198.51.100.0/24'], size: 2 });
    const show = lastJson(
      (await portcullis('allowlist', 'show', '--fleet', 'clitest', '--local', local, '--json')).stdout,
    );
    expect(show).toMatchObject({ cidrs: ['198.51.100.0/24', '203.0.113.0/24'], reason: 'partner' });
  });

  it('rotate --dry-run plans without changing the certificate', async () => {
    const run = await portcullis(
      'rotate',
      '--fleet',
      'clitest',
      '--local',
      local,
      '--force',
      '--dry-run',
      '--json',
    );
    expect(run.code, run.stderr).toBe(0);
    const outcome = lastJson(run.stdout) as { status: string; certificates: { from: string; to: string }[] };
    expect(outcome.status).toBe('SUCCEEDED');
    expect(outcome.certificates[0]!.to).toBe(outcome.certificates[0]!.from);
  });

  it('rotate --force issues, stages and promotes a new certificate', async () => {
    const run = await portcullis('rotate', '--fleet', 'clitest', '--local', local, '--force', '--json');
    expect(run.code, run.stderr).toBe(0);
    const outcome = lastJson(run.stdout) as {
      status: string;
      certificates: { name: string; from: string; to: string }[];
    };
    expect(outcome.status).toBe('SUCCEEDED');
    expect(outcome.certificates[0]!.name).toBe('api');
    expect(outcome.certificates[0]!.to).toMatch(/^[0-9a-f]+$/);
    expect(outcome.certificates[0]!.to).not.toBe(outcome.certificates[0]!.from);
  });
});
