/** This machine's processes, for tests that check a run leaves none behind. */
import { readdir, readFile } from 'node:fs/promises';

/** Processes (other than this one) whose command line mentions `text`: `pid: command line`. */
export async function processesMentioning(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      if (cmdline.includes(text)) found.push(`${name}: ${cmdline.slice(0, 200)}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}
