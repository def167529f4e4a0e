/**
 * `portcullis sidecar --config FILE` as the container runs it: a child process that renders from a
 * FileSecretStore, answers on its admin port, logs JSON lines and stops cleanly on SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { freePort } from '../support/gateway.ts';

let dir: string;
let child: ChildProcess | undefined;
let output = '';
let adminPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-scc-'));
  const store = await FileSecretStore.open(join(dir, 'store'));
  const token = () => `${randomUUID()}-${randomBytes(4).toString('hex')}`;
  await store.create(
    'fleet',
    JSON.stringify({
      fleet: 'cli-test',
      listeners: {
        bind: ['127.0.0.1'],
        tls: await freePort(),
        http: null,
        health: await freePort(),
        metrics: null,
      },
      nudgeKey: { secretId: 'nudge-key' },
      allowlist: { source: { secretId: 'allowlist' } },
    }),
    { clientRequestToken: token() },
  );
  await store.create('nudge-key', JSON.stringify({ key: randomBytes(32).toString('base64') }), {
    clientRequestToken: token(),
  });
  await store.create('allowlist', JSON.stringify({ cidrs: ['10.0.0.0/8'] }), { clientRequestToken: token() });
  adminPort = await freePort();
  await writeFile(
    join(dir, 'sidecar.yaml'),
    [
      'store: { kind: file, dir: store }',
      'fleetConfig: { secretId: fleet }',
      'gatewayDir: gw',
      `admin: { host: 127.0.0.1, port: ${adminPort} }`,
      'autoOwnAddresses: false',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGKILL');
    await new Promise((resolve) => child?.once('exit', resolve));
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('portcullis sidecar', () => {
  it('renders from the store, serves its admin API and stops cleanly on SIGTERM', async () => {
    // Relative paths in the file are relative to the file, wherever the process runs.
    child = spawn(
      process.execPath,
      [join(process.cwd(), 'cli/main.ts'), 'sidecar', '--config', join(dir, 'sidecar.yaml')],
      {
        cwd: tmpdir(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    await expect
      .poll(
        async () => {
          try {
            return (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).status;
          } catch {
            return 0;
          }
        },
        { timeout: 15_000, interval: 100 },
      )
      .toBe(200);
    const status = (await (await fetch(`http://127.0.0.1:${adminPort}/v1/status`)).json()) as Record<
      string,
      unknown
    >;
    expect(status).toMatchObject({ ready: false, phase: 'rendered', allowlist: { size: 1 } });
    expect(await readFile(join(dir, 'gw', 'acl', 'allowlist.acl'), 'utf8')).toBe('10.0.0.0/8\n');

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lines = output.trim().split('\n');
    expect(lines.length).toBeGreaterThan(2);
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ component: 'sidecar' });
    expect(output).toContain('"message":"sidecar stopped"');
  });
});
