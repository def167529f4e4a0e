import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic as writeAtomic } from '../../lib/local/files.ts';
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

/**
 * Atomic replace of one file with exactly `mode` applied before the content becomes visible,
 * creating its directory: `lib/local/files.ts`' {@link writeAtomic} with the gateway's options.
 */
export function writeFileAtomic(target: string, content: string, mode: number): Promise<void> {
  return writeAtomic(target, content, { mode, makeDirectory: true });
}
