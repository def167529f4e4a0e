/** Running the `portcullis` CLI as an operator does, for the CLI tests. */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The CLI entry point (`node cli/main.ts …`). */
export const CLI_MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');

/** What one CLI run ended with. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node cli/main.ts …` without colours; bounded to 60 s (a timeout ends with a non-zero code). */
export function portcullis(...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI_MAIN, ...args],
      { timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The last line of a `--json` run's output, parsed. */
export function lastJson<T = Record<string, unknown>>(text: string): T {
  const lines = text.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}
