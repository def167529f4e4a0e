import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Throttled } from '../../lib/errors.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { withFileLock } from '../../lib/local/files.ts';

describe('withFileLock', () => {
  let dir: string;
  let lockPath: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-lock-'));
    lockPath = join(dir, '.lock');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function age(path: string, seconds: number): Promise<void> {
    const past = new Date(Date.now() - seconds * 1000);
    await utimes(path, past, past);
  }

  it('creates the lock file with mode 0600 while held and removes it afterwards', async () => {
    const mode = await withFileLock(lockPath, async () => (await stat(lockPath)).mode & 0o777);

    expect(mode).toBe(0o600);
    await expect(stat(lockPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('runs callers of one process one at a time', async () => {
    let inside = 0;
    let most = 0;

    await Promise.all(
      Array.from({ length: 8 }, () =>
        withFileLock(lockPath, async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((resolve) => setImmediate(resolve));
          inside--;
        }),
      ),
    );

    expect(most).toBe(1);
  });

  it('releases the lock when the critical section throws', async () => {
    await expect(
      withFileLock(lockPath, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');

    expect(await withFileLock(lockPath, async () => 'again')).toBe('again');
  });

  it('waits for a live holder and gives up with Throttled', async () => {
    await writeFile(lockPath, JSON.stringify({ pid: process.pid, host: 'another-host', nonce: 'n', at: '' }));

    await expect(withFileLock(lockPath, async () => 'never', { timeoutMs: 150 })).rejects.toBeInstanceOf(
      Throttled,
    );
    expect(JSON.parse(await readFile(lockPath, 'utf8')).nonce).toBe('n');
  });

  it('breaks a torn or foreign lock once it is older than staleMs', async () => {
    await writeFile(lockPath, '{"pid":12');
    await age(lockPath, 120);

    expect(await withFileLock(lockPath, async () => 'got it', { timeoutMs: 2000, staleMs: 60_000 })).toBe(
      'got it',
    );
  });

  it('lets the holder notice when its lock was taken over', async () => {
    const error = await withFileLock(lockPath, async (lock) => {
      await writeFile(
        lockPath,
        JSON.stringify({ pid: process.pid, host: 'h', nonce: 'someone-else', at: '' }),
      );
      return lock.assertHeld().catch((e: unknown) => e);
    });

    expect(error).toBeInstanceOf(Throttled);
    // The other holder's lock is left alone on release.
    expect(JSON.parse(await readFile(lockPath, 'utf8')).nonce).toBe('someone-else');
  });
});

describe('FileSecretStore within one process', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-fss-inproc-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps every one of many concurrent puts', async () => {
    const store = await FileSecretStore.open(dir);
    await store.create('s', 'v', { clientRequestToken: 'first'.padEnd(32, '-') });

    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.put('s', `value-${i}`, { clientRequestToken: `put-${i}`.padEnd(32, '-') }),
      ),
    );

    const versions = await store.listVersions('s');
    expect(versions).toHaveLength(21);
    expect(versions.filter((v) => v.stages.includes('AWSCURRENT'))).toHaveLength(1);
    expect(versions.filter((v) => v.stages.includes('AWSPREVIOUS'))).toHaveLength(1);
  });
});
