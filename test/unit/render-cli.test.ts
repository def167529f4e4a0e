import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseAllowlistText, run } from '../../cli/commands/proxy.ts';
import { expectValidConfig } from '../support/haproxy.ts';

const exec = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
const example = join(root, 'examples/lattice-fleet.yaml');

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...args) => void out.push(args.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...args) => void err.push(args.join(' ')));
  return { out, err };
}

describe('portcullis proxy render', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-'));
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the files, prints them, and HAProxy accepts the result', async () => {
    const out = join(dir, 'ok');
    await writeFile(join(dir, 'allow.json'), JSON.stringify({ cidrs: ['198.51.100.0/24', '2001:db8::/48'] }));
    const io = capture();
    const code = await run([
      'render',
      '--config',
      example,
      '--out',
      out,
      '--allowlist',
      join(dir, 'allow.json'),
    ]);
    expect(code).toBe(0);
    expect(io.out.join('\n')).toContain(`wrote ${join(out, 'haproxy.cfg')}`);
    expect(await readFile(join(out, 'acl/allowlist.acl'), 'utf8')).toBe('198.51.100.0/24\n2001:db8::/48\n');
    await expectValidConfig(join(out, 'haproxy.cfg'));
  });

  it('exits 1 with each problem as path: reason', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'fleet: edge\nroutes:\n  - serverName: 10.0.0.1\n');
    const io = capture();
    expect(await run(['render', '--config', join(dir, 'bad.yaml'), '--out', join(dir, 'bad')])).toBe(1);
    expect(io.err.join('\n')).toContain(
      'routes.0.serverName: must be a DNS name or *.suffix, got "10.0.0.1"',
    );
  });

  it('exits 1 on an invalid allowlist', async () => {
    await writeFile(join(dir, 'allow.txt'), '10.0.0.0/8\n0.0.0.0/0 # everyone\n');
    const io = capture();
    const code = await run([
      'render',
      '--config',
      example,
      '--out',
      join(dir, 'x'),
      '--allowlist',
      join(dir, 'allow.txt'),
    ]);
    expect(code).toBe(1);
    expect(io.err.join('\n')).toMatch(/1: 0\.0\.0\.0\/0 allows every address/);
  });

  it('exits 2 on usage errors and 0 on --help', async () => {
    const io = capture();
    expect(await run(['render', '--config', example])).toBe(2);
    expect(await run(['render', '--bogus'])).toBe(2);
    expect(await run(['launch'])).toBe(2);
    expect(await run(['render', '--help'])).toBe(0);
    expect(io.out.join('\n')).toContain('Usage: portcullis proxy render');
  });

  it('runs as a subprocess through the main entry point', async () => {
    const out = join(dir, 'sub');
    const { stdout } = await exec(process.execPath, [
      join(root, 'cli/main.ts'),
      'proxy',
      'render',
      '--config',
      example,
      '--out',
      out,
    ]);
    expect(stdout).toContain('rendered fleet lattice-edge');
    expect(await readFile(join(out, 'acl/allowlist.acl'), 'utf8')).toBe('');
    const failed = await exec(process.execPath, [
      join(root, 'cli/main.ts'),
      'proxy',
      'render',
      '--out',
      out,
    ]).catch((error: { code: number }) => error);
    expect((failed as { code: number }).code).toBe(2);
  });
});

describe('parseAllowlistText', () => {
  it('reads the secret JSON, a JSON array, or lines with comments', () => {
    expect(parseAllowlistText('{"cidrs":["10.0.0.0/8"],"reason":"x"}')).toEqual(['10.0.0.0/8']);
    expect(parseAllowlistText('["::1"]')).toEqual(['::1']);
    expect(parseAllowlistText('# office\n10.0.0.0/8  # hq\n\n192.0.2.1\n')).toEqual([
      '10.0.0.0/8',
      '192.0.2.1',
    ]);
    expect(() => parseAllowlistText('{"cidrs": 5}')).toThrow(/must be/);
  });
});
