import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';

const STORE_URL = pathToFileURL(
  fileURLToPath(new URL('../../lib/local/file-secret-store.ts', import.meta.url)),
).href;
const LOCK_URL = pathToFileURL(fileURLToPath(new URL('../../lib/local/files.ts', import.meta.url))).href;
const SECRET = 'portcullis/demo/allowlist';
const WRITERS = 3;
const PUTS_PER_WRITER = 12;

const token = (writer: number, i: number) =>
  `writer-${writer}-put-${String(i).padStart(4, '0')}`.padEnd(32, '.');
const expectedValue = (writer: number, i: number) => JSON.stringify({ writer, i });

// Each writer puts its versions in order, a third of them as AWSPENDING and the rest as
// AWSCURRENT, and moves a custom stage now and then: every kind of index change, interleaved.
const WRITER = `
const { FileSecretStore } = await import(${JSON.stringify(STORE_URL)});
const [root, secret, writer, count] = process.argv.slice(1);
const store = await FileSecretStore.open(root, { lock: { timeoutMs: 20000 } });
for (let i = 0; i < Number(count); i++) {
  const clientRequestToken = ('writer-' + writer + '-put-' + String(i).padStart(4, '0')).padEnd(32, '.');
  const value = JSON.stringify({ writer: Number(writer), i });
  await store.put(secret, value, { clientRequestToken, ...(i % 3 === 0 ? { stages: ['AWSPENDING'] } : {}) });
  if (i % 4 === 1) await store.moveStage(secret, 'blue', clientRequestToken);
  if (i === 0) console.log('started');
}
console.log('done');
`;

// Holds the store's lock for the secret and never lets go: killed, it leaves a stale lock behind.
const HOLDER = `
const { withFileLock } = await import(${JSON.stringify(LOCK_URL)});
const { encodePathSegment } = await import(${JSON.stringify(STORE_URL)});
const { join } = await import('node:path');
const [root, secret] = process.argv.slice(1);
await withFileLock(join(root, 'secrets', encodePathSegment(secret), '.lock'), async () => {
  console.log('locked');
  await new Promise((resolve) => setTimeout(resolve, 60000));
});
`;

interface Child {
  process: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

describe('FileSecretStore shared by several processes', () => {
  let root: string;
  const children: ChildProcess[] = [];

  function run(script: string, args: string[]): Child {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const exit = once(child, 'exit').then(([code]) => code as number | null);
    return { process: child, output: () => out, exit };
  }

  async function waitFor(child: Child, text: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!child.output().includes(text)) {
      if (child.process.exitCode !== null || Date.now() > deadline) {
        throw new Error(`child never printed ${text}: ${child.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'portcullis-fss-proc-'));
    const store = await FileSecretStore.open(root);
    await store.create(SECRET, 'initial', { clientRequestToken: 'initial-version'.padEnd(32, '.') });
  });

  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit').catch(() => undefined);
      }
    }
    await rm(root, { recursive: true, force: true });
  });

  it('loses no put and keeps the index consistent when writers race', async () => {
    const writers = Array.from({ length: WRITERS }, (_, w) =>
      run(WRITER, [root, SECRET, String(w), String(PUTS_PER_WRITER)]),
    );

    const codes = await Promise.all(writers.map((w) => w.exit));

    expect(codes, writers.map((w) => w.output()).join('\n')).toEqual(writers.map(() => 0));
    const store = await FileSecretStore.open(root);
    const versions = await store.listVersions(SECRET);
    const ids = versions.map((v) => v.versionId);
    expect(ids).toHaveLength(1 + WRITERS * PUTS_PER_WRITER);
    expect(new Set(ids).size).toBe(ids.length);
    for (let w = 0; w < WRITERS; w++) {
      const positions = Array.from({ length: PUTS_PER_WRITER }, (_, i) => ids.indexOf(token(w, i)));
      expect(positions.every((p) => p >= 0)).toBe(true);
      // Each writer's versions appear in the order it put them: no index update was lost.
      expect([...positions].sort((a, b) => a - b)).toEqual(positions);
      for (let i = 0; i < PUTS_PER_WRITER; i++) {
        expect((await store.get(SECRET, { versionId: token(w, i) })).value).toBe(expectedValue(w, i));
      }
    }
    const holders = new Map<string, number>();
    for (const v of versions) for (const s of v.stages) holders.set(s, (holders.get(s) ?? 0) + 1);
    expect(holders.get('AWSCURRENT')).toBe(1);
    expect([...holders.values()].every((n) => n === 1)).toBe(true);
  });

  it('breaks the lock of a writer that was killed while holding it', async () => {
    const holder = run(HOLDER, [root, SECRET]);
    await waitFor(holder, 'locked');
    holder.process.kill('SIGKILL');
    await holder.exit;

    const store = await FileSecretStore.open(root, { lock: { timeoutMs: 10_000, staleMs: 60_000 } });
    const result = await store.put(SECRET, 'after-crash', {
      clientRequestToken: 'after-crash'.padEnd(32, '.'),
    });

    expect(result.created).toBe(true);
    expect((await store.get(SECRET)).value).toBe('after-crash');
  });

  it('stays readable and writable after a writer is killed mid-run', async () => {
    const writer = run(WRITER, [root, SECRET, '0', '400']);
    await waitFor(writer, 'started');
    writer.process.kill('SIGKILL');
    await writer.exit;

    const store = await FileSecretStore.open(root, { lock: { timeoutMs: 10_000 } });
    const current = await store.get(SECRET);
    await store.put(SECRET, 'after-kill', { clientRequestToken: 'after-kill'.padEnd(32, '.') });

    expect(current.value === 'initial' || current.value.startsWith('{"writer":0')).toBe(true);
    expect((await store.get(SECRET)).value).toBe('after-kill');
    const versions = await store.listVersions(SECRET);
    for (const v of versions) await store.get(SECRET, { versionId: v.versionId });
  });
});
