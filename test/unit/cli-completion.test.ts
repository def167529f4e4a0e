import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bashCompletion, registeredCommandOptions } from '../../cli/commands/completion.ts';
import { commands } from '../../cli/main.ts';

const run = promisify(execFile);

/** What bash completes for the words typed so far (the last one partial), with the script loaded. */
async function complete(script: string, ...words: string[]): Promise<string[]> {
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const { stdout } = await run('bash', [
    '-c',
    `source "${script}"; COMP_WORDS=(portcullis ${quoted}); COMP_CWORD=${words.length}; _portcullis; printf '%s\\n' "\${COMPREPLY[@]}"`,
  ]);
  return stdout.split('\n').filter((l) => l !== '');
}

describe('portcullis completion bash', () => {
  let dir: string;
  let script: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-completion-'));
    script = join(dir, 'portcullis.bash');
    await writeFile(script, bashCompletion(await registeredCommandOptions()));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('completes command names, then each command’s words and the shared options', async () => {
    expect(await complete(script, 'st')).toEqual(['status']);
    expect(await complete(script, 'h')).toEqual(['history']);
    expect(await complete(script, 'allowlist', 're')).toEqual(['remove']);
    expect(await complete(script, 'status', '--st')).toEqual(['--stack']);
    expect(await complete(script, 'history', '--prof')).toEqual(['--profile']);
  });

  it('completes the output formats after -o', async () => {
    expect(await complete(script, 'status', '-o', '')).toEqual(['table', 'wide', 'json', 'yaml']);
  });

  it('covers every registered command', async () => {
    const text = bashCompletion(await registeredCommandOptions());
    for (const name of Object.keys(commands)) expect(text).toContain(`    ${name}) words=`);
  });

  it('offers exactly the options each command parses, and file names after a path option', async () => {
    expect((await complete(script, 'init', '--allowlist')).sort()).toEqual([
      '--allowlist',
      '--allowlist-bucket',
      '--allowlist-file',
    ]);
    expect(await complete(script, 'allowlist', '--y')).toEqual(['--yes']);
    expect(await complete(script, 'allowlist', '--dr')).toEqual(['--dry-run']);
    expect(await complete(script, 'rotate', '--bu')).toEqual(['--bucket-minutes']);
    // Local-only commands take no AWS target options.
    expect(await complete(script, 'demo', '--st')).toEqual(['--state-dir']);
    expect(await complete(script, 'sidecar', '--reg')).toEqual([]);
    // Every option a command parses is offered (the parser's options are the source).
    const options = await registeredCommandOptions();
    for (const [name, declared] of Object.entries(options))
      for (const option of Object.keys(declared ?? {}))
        expect(await complete(script, name, `--${option}`), `${name} --${option}`).toContain(`--${option}`);
    const file = join(dir, 'cidrs.txt');
    await writeFile(file, '203.0.113.0/24\n');
    expect(await complete(script, 'init', '--allowlist-file', join(dir, 'cid'))).toEqual([file]);
  });
});
