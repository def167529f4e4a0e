/**
 * `portcullis demo` interrupted at several moments, by each signal that ends it (Ctrl-C, a
 * supervisor's SIGTERM, a closed terminal's SIGHUP, and the doubled Ctrl-C `npm run demo`
 * delivers: once from the terminal, once forwarded by npm): every run leaves its temporary
 * directory (CA private key included) and every child process behind it gone.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { processesMentioning } from '../support/processes.ts';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');
const children = new Set<ChildProcess>();
const bases: string[] = [];

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const base of bases.splice(0)) await rm(base, { recursive: true, force: true });
});

/**
 * Runs the demo with its own TMPDIR, sends `signals` once `moment` appears in its output, and
 * returns the exit code and what is left in that TMPDIR and among the processes.
 */
async function interrupt(moment: RegExp, signals: NodeJS.Signals[], gapMs = 0) {
  // Short: HAProxy's unix socket paths under it must stay within sun_path's 108 bytes.
  const base = await mkdtemp(join(tmpdir(), 'pdi-'));
  bases.push(base);
  const child = spawn(process.execPath, [MAIN, 'demo', '--tasks', '1'], {
    env: { ...process.env, NO_COLOR: '1', TMPDIR: base },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  let sent = false;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const onData = async (text: string) => {
    output += text;
    if (sent || !moment.test(output)) return;
    sent = true;
    for (const [i, signal] of signals.entries()) {
      if (i > 0 && gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
      child.kill(signal);
    }
  };
  child.stdout!.setEncoding('utf8').on('data', onData);
  child.stderr!.setEncoding('utf8').on('data', onData);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await exited;
  clearTimeout(timer);
  children.delete(child);
  return { code, sent, output, left: await readdir(base), processes: await processesMentioning(base) };
}

describe('portcullis demo interrupted', () => {
  it.each([
    ['SIGINT right after the state directory is made', /state directory /, ['SIGINT'], 0],
    ['SIGTERM while the gateway tasks start', /starting 1 gateway task/, ['SIGTERM'], 0],
    ['SIGHUP during the rotation', /rotate-certificates|IssueCertificate/, ['SIGHUP'], 0],
    // Signals sent back to back coalesce into one; npm's forwarded copy comes a little later.
    [
      'a doubled Ctrl-C (terminal, then npm) once the fleet is ready',
      /fleet of 1 ready/,
      ['SIGINT', 'SIGINT'],
      50,
    ],
    ['a doubled Ctrl-C while traffic flows', /traffic: /, ['SIGINT', 'SIGINT'], 400],
  ] as const)(
    'leaves nothing behind: %s',
    async (_, moment, signals, gapMs) => {
      const run = await interrupt(moment, [...signals], gapMs);
      expect(run.sent, run.output).toBe(true);
      expect(run.code, run.output).toBe(130);
      expect(run.left, run.output).toEqual([]);
      expect(run.processes).toEqual([]);
    },
    90_000,
  );
});
