/**
 * The crash-safe file primitives of the embedded stores (secret store, local CA), the local
 * fleet and the gateway's rendered files.
 *
 * An exclusive lock file shared by processes on one machine, for read-modify-write of small
 * on-disk indexes. `link(record, path)` is the atomic test-and-set; the file records the holder's
 * pid, host and a nonce so a crashed holder's lock can be broken. And atomic replacement of a
 * file, so that readers without the lock never see half of one.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Throttled } from '../errors.ts';

export interface FileLockOptions {
  /** Give up waiting after this long with `Throttled` (default 10 000 ms). */
  timeoutMs?: number;
  /**
   * A lock older than this is broken even if its holder's pid still exists (pid reuse, a hung
   * holder); default 30 000 ms. A lock whose holder process is gone is broken at once.
   */
  staleMs?: number;
}

/** Handed to the critical section. */
export interface HeldLock {
  /** Throws `Throttled` when the lock was broken as stale and possibly taken by someone else. */
  assertHeld(): Promise<void>;
}

interface LockRecord {
  pid: number;
  host: string;
  nonce: string;
  at: string;
}

// Serialises callers inside one process so they queue on a promise instead of polling the file.
const inProcess = new Map<string, Promise<unknown>>();

/**
 * Runs `fn` while holding the lock file at `lockPath` (created, and removed afterwards).
 *
 * @example
 * await withFileLock(join(dir, '.lock'), async (lock) => { …read…; await lock.assertHeld(); …write… });
 */
export async function withFileLock<T>(
  lockPath: string,
  fn: (lock: HeldLock) => Promise<T>,
  options: FileLockOptions = {},
): Promise<T> {
  const previous = inProcess.get(lockPath) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(() => lockAndRun(lockPath, fn, options));
  const tail = run.catch(() => undefined);
  inProcess.set(lockPath, tail);
  try {
    return await run;
  } finally {
    if (inProcess.get(lockPath) === tail) inProcess.delete(lockPath);
  }
}

async function lockAndRun<T>(
  lockPath: string,
  fn: (lock: HeldLock) => Promise<T>,
  options: FileLockOptions,
): Promise<T> {
  const nonce = randomBytes(12).toString('hex');
  await acquire(lockPath, nonce, options);
  try {
    return await fn({
      assertHeld: async () => {
        if ((await readRecord(lockPath))?.nonce !== nonce) {
          throw new Throttled(`lock ${lockPath} was taken over while held; retry`);
        }
      },
    });
  } finally {
    await release(lockPath, nonce);
  }
}

async function acquire(lockPath: string, nonce: string, options: FileLockOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const staleMs = options.staleMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  const record: LockRecord = { pid: process.pid, host: hostname(), nonce, at: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    if (await createLockFile(lockPath, record)) return;
    await breakIfStale(lockPath, staleMs);
    if (Date.now() >= deadline) {
      throw new Throttled(`timed out after ${timeoutMs} ms waiting for lock ${lockPath}`);
    }
    const backoff = Math.min(2 * 2 ** Math.min(attempt, 5), 50);
    await sleep(backoff / 2 + Math.random() * backoff);
  }
}

/**
 * Creates the lock file with its record in one step: the record goes to a temporary file that is
 * then hard-linked to `lockPath` (which fails if the lock exists). Opening `lockPath` and writing
 * after would leave an empty lock behind a holder killed in between, which only age could break.
 * False when the lock is taken.
 */
async function createLockFile(lockPath: string, record: LockRecord): Promise<boolean> {
  const temporary = `${lockPath}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(temporary, 'wx', 0o600);
  try {
    await fh.writeFile(JSON.stringify(record));
  } finally {
    await fh.close();
  }
  try {
    await link(temporary, lockPath);
    return true;
  } catch (error) {
    // ENOENT: a holder's sweep of `*.tmp` removed our record file first; try again.
    if (isCode(error, 'EEXIST') || isCode(error, 'ENOENT')) return false;
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

async function breakIfStale(lockPath: string, staleMs: number): Promise<void> {
  let raw: string;
  let mtimeMs: number;
  try {
    raw = await readFile(lockPath, 'utf8');
    mtimeMs = (await stat(lockPath)).mtimeMs;
  } catch (error) {
    if (isCode(error, 'ENOENT')) return;
    throw error;
  }
  const holder = parseRecord(raw);
  const holderGone = holder !== undefined && holder.host === hostname() && !pidAlive(holder.pid);
  // An unparsable lock is either being written right now or was torn by a crash: only age tells.
  if (!holderGone && Date.now() - mtimeMs <= staleMs) return;

  // Move the stale lock aside atomically, then check that what moved is the lock we judged:
  // another waiter may have broken it and a third process taken a fresh one in between.
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch (error) {
    if (isCode(error, 'ENOENT')) return;
    throw error;
  }
  const moved = await readFile(aside, 'utf8').catch(() => '');
  if (moved !== raw) {
    // We took a live lock: put it back if nobody re-took the name; else its holder's
    // assertHeld() notices before it commits.
    await link(aside, lockPath).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

async function release(lockPath: string, nonce: string): Promise<void> {
  if ((await readRecord(lockPath))?.nonce === nonce) {
    await unlink(lockPath).catch((error: unknown) => {
      if (!isCode(error, 'ENOENT')) throw error;
    });
  }
}

async function readRecord(lockPath: string): Promise<LockRecord | undefined> {
  try {
    return parseRecord(await readFile(lockPath, 'utf8'));
  } catch (error) {
    if (isCode(error, 'ENOENT')) return undefined;
    throw error;
  }
}

function parseRecord(raw: string): LockRecord | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockRecord>;
    if (typeof value.pid === 'number' && typeof value.host === 'string' && typeof value.nonce === 'string') {
      return value as LockRecord;
    }
  } catch {
    // torn or foreign content: judged by age instead
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isCode(error, 'EPERM');
  }
}

/** True when `error` is a Node.js system error with this `code` (`ENOENT`, `EEXIST`, …). */
export function isCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

/** Makes the directory entries of `dir` (a rename, a new file) durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `path` with `data` so that readers and a crash see the old content or the new, never
 * a part: the data goes to a temporary file beside it (created with `mode`, then set to exactly
 * `mode` whatever the umask), is fsynced and renamed over `path`; on any failure the temporary
 * file is removed. Temporary names end in `.tmp`, so a sweep can remove what a crash left.
 * `makeDirectory` creates the parent directories first (0755). The rename itself survives a
 * crash only once the directory is fsynced: `syncDirectory` does that here; callers that rename
 * a whole directory into place afterwards sync once instead.
 * @example await writeFileAtomic(join(dir, 'index.json'), text, { mode: 0o600, syncDirectory: true });
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: { mode: number; syncDirectory?: boolean; makeDirectory?: boolean },
): Promise<void> {
  if (options.makeDirectory) await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', options.mode);
  try {
    try {
      await handle.writeFile(data);
      // The umask may have narrowed `mode` at creation: set it exactly before the file is visible.
      await handle.chmod(options.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  if (options.syncDirectory) await fsyncDirectory(dirname(path));
}
