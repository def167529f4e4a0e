import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { RenderedGateway } from './render.ts';

/**
 * Writes rendered files under `dir`, each atomically (temp file in the same directory, fsync,
 * rename): HAProxy, a reload or the runtime API never read a half-written file. Returns the
 * absolute paths written, in a stable order.
 */
export async function writeGateway(dir: string, rendered: RenderedGateway): Promise<string[]> {
  for (const directory of rendered.directories ?? []) {
    await mkdir(join(dir, directory), { recursive: true, mode: 0o700 });
  }
  const written: string[] = [];
  for (const [relative, file] of Object.entries(rendered.files).sort(([a], [b]) => a.localeCompare(b))) {
    const target = join(dir, relative);
    await writeFileAtomic(target, file.content, file.mode);
    written.push(target);
  }
  return written;
}

/** Atomic replace of one file with `mode` applied before the content becomes visible. */
export async function writeFileAtomic(target: string, content: string, mode: number): Promise<void> {
  await mkdir(dirname(target), { recursive: true, mode: 0o755 });
  const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', mode);
  try {
    await handle.writeFile(content, 'utf8');
    await handle.sync();
    await handle.close();
    // The umask may have narrowed `mode` at creation (or widened nothing): set it exactly.
    await chmod(temp, mode);
    await rename(temp, target);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw error;
  }
}
