import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../lib/local/files.ts';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-files-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('replaces the file with exactly the given mode, whatever the umask', async () => {
    const path = join(dir, 'public.pem');
    await writeFile(path, 'old');
    const umask = process.umask(0o077);
    try {
      await writeFileAtomic(path, 'new', { mode: 0o644, syncDirectory: true });
    } finally {
      process.umask(umask);
    }
    expect(await readFile(path, 'utf8')).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readdir(dir)).toEqual(['public.pem']);
  });

  it('creates the parent directories only when asked', async () => {
    const path = join(dir, 'a', 'b', 'file');
    await expect(writeFileAtomic(path, 'x', { mode: 0o600 })).rejects.toMatchObject({ code: 'ENOENT' });
    await writeFileAtomic(path, 'x', { mode: 0o600, makeDirectory: true });
    expect(await readFile(path, 'utf8')).toBe('x');
  });

  it('leaves neither a temporary file nor a change when the rename fails', async () => {
    const target = join(dir, 'target');
    await writeFileAtomic(join(target, 'inner'), 'kept', { mode: 0o600, makeDirectory: true });
    // A non-empty directory cannot be replaced by a file.
    await expect(writeFileAtomic(target, 'x', { mode: 0o600 })).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['target']);
    expect(await readFile(join(target, 'inner'), 'utf8')).toBe('kept');
  });
});
