/**
 * update-allowlist on a live local fleet (2 tasks, each a real HAProxy and a real sidecar) with
 * lists larger than a secret value holds, and the operator's edges: --file and stdin,
 * --dry-run, an empty set, a digest mismatch, an unreachable task during a removal, and a
 * client that dies mid-change (EPIPE, SIGINT).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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
import { fleetSecretIds } from '../../cli/demo/secrets.ts';
import { connectOnce } from '../../embedded/traffic.ts';
import { localAllowlistObjects } from '../../lib/local/file-object-store.ts';
import { Stage } from '../../lib/ports.ts';
import { AllowlistManifest, encodeEntries, sha256Hex } from '../../lib/secrets/allowlist-storage.ts';
import { CLI_MAIN, type CliRun, lastJson, portcullis } from '../support/cli.ts';

const secretId = fleetSecretIds(DEMO_FLEET).allowlist;

/** `n` distinct entries, IPv4 and IPv6 alternating, with several prefix lengths. */
function mixedEntries(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      const k = i / 2;
      out.push(`10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}${k % 7 === 0 ? '/32' : ''}`);
    } else {
      const k = (i - 1) / 2;
      out.push(k % 5 === 0 ? `2001:db8:${k.toString(16)}::/64` : `2001:db8:ffff::${k.toString(16)}`);
    }
  }
  return out;
}

/** Runs the CLI with `input` on stdin. */
function portcullisWithInput(input: string, ...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input);
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
}

describe('update-allowlist with 100 000 entries on a local fleet', () => {
  let dir: string;
  let env: DemoEnvironment | undefined;
  const local = () => ['--fleet', DEMO_FLEET, '--local', dir];

  const currentVersion = async () => (await env!.store.get(secretId, { stage: Stage.Current })).versionId;

  /** Every task serves the version the store holds as AWSCURRENT, and none is left in AWSPENDING. */
  async function expectConverged(): Promise<void> {
    const current = await currentVersion();
    const run = await portcullis('status', ...local(), '--json');
    const tasks = lastJson<{ tasks: TaskRow[] }>(run.stdout).tasks;
    for (const task of tasks) expect(task.allowlist?.versionId, task.taskId).toBe(current);
    const description = await env!.store.describe(secretId);
    expect(description.versions.filter((v) => v.stages.includes(Stage.Pending))).toEqual([]);
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-allowlist-'));
    env = await startDemoEnvironment({ tasks: 2, stateDir: dir, print: () => {} });
    expect(env.missing).toEqual([]);
  });

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('stages, applies and verifies 100 000 mixed IPv4/IPv6 entries from a file through a manifest and a versioned object', async () => {
    const entries = [DemoSources.trafficCidr, DemoSources.otherCidr, ...mixedEntries(99_998)];
    const file = join(dir, 'big.txt');
    await writeFile(
      file,
      `# partners\n${entries.map((e, i) => (i % 1000 === 0 ? `${e}  # batch ${i}` : e)).join('\n')}\n\n`,
    );
    const run = await portcullis('allowlist', 'set', '--file', file, ...local(), '--reason', 'big', '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(lastJson(run.stdout)).toMatchObject({
      status: 'SUCCEEDED',
      size: 100_000,
      addedCount: 99_998,
      removedCount: 0,
    });

    // The secret holds a manifest (a list this size is ~2.3 MB, the secret value at most 64 KiB)…
    const current = await env!.store.get(secretId, { stage: Stage.Current });
    expect(Buffer.byteLength(current.value)).toBeLessThan(1024);
    const manifest = AllowlistManifest.parse(JSON.parse(current.value));
    expect(manifest).toMatchObject({ manifest: 1, entries: 100_000 });
    // …pinning one version of an object whose bytes it digests.
    const body = await localAllowlistObjects(join(dir, 'store'), DEMO_FLEET).store.get(manifest.object);
    expect(sha256Hex(body)).toBe(manifest.sha256);

    const status = lastJson<{ tasks: TaskRow[] }>((await portcullis('status', ...local(), '--json')).stdout);
    for (const task of status.tasks) {
      expect(task).toMatchObject({
        inSync: true,
        allowlist: { versionId: current.versionId, size: 100_000 },
      });
    }
    const route = env!.routes[env!.routes.length - 1]!;
    for (const endpoint of env!.fleet.endpoints()) {
      expect((await connectOnce({ endpoint, route, source: DemoSources.traffic })).ok).toBe(true);
    }
    // Over execFile's 1 MiB output buffer: read through a pipe.
    const show = await portcullisWithInput('', 'allowlist', 'show', ...local(), '--json');
    expect(lastJson<{ cidrs: string[] }>(show.stdout).cidrs).toHaveLength(100_000);
  }, 120_000);

  it('--dry-run reads stdin, prints added, removed and the sizes, warns of absent entries, and changes nothing', async () => {
    const before = await currentVersion();
    const run = await portcullisWithInput(
      '# two present, one not there\n10.0.0.1\n2001:db8::/64 # lab\n192.0.2.99\n',
      'allowlist',
      'remove',
      '--file',
      '-',
      ...local(),
      '--reason',
      'preview',
      '--dry-run',
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('100000 → 99998 entries (0 added, 2 removed)');
    expect(run.stdout).toContain('- 10.0.0.1/32');
    expect(run.stdout).toContain('- 2001:db8::/64');
    expect(run.stdout).toContain('dry run: nothing was changed');
    expect(run.stderr).toContain('warning: 1 entry is not in the list and stays absent: 192.0.2.99/32');
    expect(await currentVersion()).toBe(before);
  });

  it('refuses a change past allowlist.maxEntries before anything starts, naming the limit', async () => {
    const before = await currentVersion();
    const run = await portcullis('allowlist', 'add', '192.0.2.0/24', ...local(), '--reason', 'one too many');
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('100001 entries exceed the limit of 100000 (allowlist.maxEntries)');
    expect(await currentVersion()).toBe(before);
  });

  it('names an unknown option instead of the raw parser message', async () => {
    const run = await portcullis('allowlist', 'set', '--dryrun', ...local(), '--reason', 'x');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('allowlist does not know the option --dryrun');
    expect(run.stderr).toContain('--dry-run');
    expect(run.stderr).not.toContain('Unknown option');
  });

  it('refuses a set that empties the list, or removes more than half, without --yes and a terminal', async () => {
    const before = await currentVersion();
    const empty = await portcullis('allowlist', 'set', ...local(), '--reason', 'oops');
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('empties the allowlist (100000 → 0 entries)');
    expect(empty.stderr).toContain('--yes');
    const half = await portcullis(
      'allowlist',
      'set',
      DemoSources.trafficCidr,
      ...local(),
      '--reason',
      'oops',
    );
    expect(half.code).toBe(1);
    expect(half.stderr).toContain('removes 99999 of 100000 entries');
    expect(await currentVersion()).toBe(before);
  });

  it('refuses an object whose bytes do not match the manifest and keeps serving the list in force', async () => {
    const current = await env!.store.get(secretId, { stage: Stage.Current });
    const manifest = AllowlistManifest.parse(JSON.parse(current.value));
    const objects = localAllowlistObjects(join(dir, 'store'), DEMO_FLEET);
    // One entry dropped: the count and the digest of the bytes no longer match what is promised.
    const body = encodeEntries(['192.0.2.0/24']);
    const tampered = await objects.store.put(`${objects.prefix}lists/tampered.cidrs`, body, {
      sha256: sha256Hex(body),
    });
    const versionId = 'tampered-manifest-version-0000000001';
    await env!.store.put(secretId, JSON.stringify({ ...manifest, object: tampered }), {
      clientRequestToken: versionId,
      stages: [Stage.Pending],
    });
    const [task] = await env!.fleet.listTasks();
    await expect(env!.ports.taskClient.nudge(task!, { secretId, versionId })).rejects.toThrow(
      /digest-mismatch.*AllowlistDigestMismatch/,
    );
    const status = await env!.ports.taskClient.status(task!);
    expect(status.allowlist).toEqual({ versionId: current.versionId, size: 100_000 });
    await env!.store.moveStage(secretId, Stage.Pending, undefined);
  });

  it('keeps the change going when stdout is closed (EPIPE): it completes and every task serves AWSCURRENT', async () => {
    const child = spawn(
      process.execPath,
      [CLI_MAIN, 'allowlist', 'remove', '10.0.0.1', ...local(), '--reason', 'epipe'],
      { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    // Like `| head -1`: the reader goes away after the first line.
    child.stdout!.once('data', () => child.stdout!.destroy());
    const code = await exited(child);
    expect(code, stderr).toBe(0);
    expect(stderr).not.toContain('EPIPE');
    await expectConverged();
    const list = lastJson<{ cidrs: string[] }>(
      (await portcullisWithInput('', 'allowlist', 'show', ...local(), '--json')).stdout,
    );
    expect(list.cidrs).not.toContain('10.0.0.1/32');
  }, 60_000);

  it('finishes a change interrupted by SIGINT before exiting 130, leaving no task on a version that is not AWSCURRENT', async () => {
    const before = await currentVersion();
    const child = spawn(
      process.execPath,
      [CLI_MAIN, 'allowlist', 'remove', '10.0.0.2', ...local(), '--reason', 'sigint'],
      { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdout!.on('data', (d) => {
      stdout += d;
      // Staged, tasks not yet verified: the moment a dying client used to leave behind.
      if (!interrupted && stdout.includes('✓ StageAllowlist')) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    const code = await exited(child);
    expect(stdout).toContain('✓ StageAllowlist');
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('SIGINT received; finishing the change');
    expect(await currentVersion()).not.toBe(before);
    await expectConverged();
  }, 60_000);

  it('fails a removal that could not reach every task, naming it', async () => {
    const paused = env!.fleet.processes()[1]!;
    process.kill(paused.sidecarPid!, 'SIGSTOP');
    try {
      const run = await portcullis(
        'allowlist',
        'remove',
        DemoSources.otherCidr,
        ...local(),
        '--reason',
        'offboard',
        '--json',
      );
      expect(run.code).toBe(1);
      expect(lastJson(run.stdout)).toMatchObject({ status: 'SUCCEEDED', unreachableTasks: [paused.taskId] });
      expect(run.stderr).toContain(`the removal did not reach 1 task: ${paused.taskId}`);
    } finally {
      process.kill(paused.sidecarPid!, 'SIGCONT');
    }
  }, 60_000);

  it('keeps every allowlist object a manifest named under the fleet prefix, each version in its own file', async () => {
    const root = join(dir, 'store', 'objects');
    const buckets = await readdir(root);
    expect(buckets).toEqual(['portcullis-local']);
    const text = await readFile(join(dir, 'events.jsonl'), 'utf8');
    expect(text).toContain('AllowlistUpdated');
  });
});
