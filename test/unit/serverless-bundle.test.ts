/**
 * The packaging pieces behind `sls package`: the deterministic ZIP writer, the bundle plugin's
 * pure helpers (handler parsing, runtime → esbuild target, chunk closure) and the plugin itself
 * on a tiny service in a temporary directory.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import BundlePlugin, {
  closure,
  esbuildTarget,
  formatReport,
  parseHandler,
  resolveOptions,
} from '../../serverless/bundle-plugin.ts';
import { zip } from '../../serverless/zip.ts';
import { unzip } from '../deploy/unzip.ts';

describe('zip', () => {
  it('round-trips names, contents and Unix modes', () => {
    const entries = [
      { name: 'functions/plan-rotation.mjs', data: Buffer.from('export const handler = 1;\n') },
      { name: 'functions/chunks/chunk-A.mjs', data: Buffer.alloc(100_000, 'a'), mode: 0o755 },
      { name: 'empty.txt', data: Buffer.alloc(0) },
      { name: 'ünïcode/名前.txt', data: Buffer.from('x') },
    ];
    const out = unzip(zip(entries));
    expect(out.map((e) => e.name)).toEqual(entries.map((e) => e.name));
    expect(out.map((e) => e.data)).toEqual(entries.map((e) => Buffer.from(e.data)));
    expect(out.map((e) => e.mode)).toEqual([0o644, 0o755, 0o644, 0o644]);
  });

  it('is deterministic: the same files give the same bytes', () => {
    const entries = [{ name: 'a.mjs', data: Buffer.from('same') }];
    expect(zip(entries).equals(zip(entries))).toBe(true);
  });

  it('round-trips arbitrary contents', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^[a-z0-9]{1,12}(\/[a-z0-9][a-z0-9.]{0,11}){0,2}$/), {
          minLength: 1,
          maxLength: 5,
        }),
        fc.uint8Array({ maxLength: 2048 }),
        (names, bytes) => {
          const entries = names.map((name, i) => ({
            name,
            data: bytes.subarray(0, (i * 97) % (bytes.length + 1)),
          }));
          const out = unzip(zip(entries));
          expect(out.map((e) => [e.name, Buffer.from(e.data).toString('hex')])).toEqual(
            entries.map((e) => [e.name, Buffer.from(e.data).toString('hex')]),
          );
        },
      ),
      { numRuns: 50 },
    );
  });

  it.each([
    ['', 'empty'],
    ['/abs.mjs', 'absolute'],
    ['../escape.mjs', 'parent'],
    ['a/../../b', 'nested parent'],
    ['win\\path', 'backslash'],
  ])('refuses the entry name %j (%s)', (name) => {
    expect(() => zip([{ name, data: Buffer.from('x') }])).toThrow(RangeError);
  });

  it('refuses duplicate entry names', () => {
    const data = Buffer.from('x');
    expect(() =>
      zip([
        { name: 'a', data },
        { name: 'a', data },
      ]),
    ).toThrow(/duplicate/);
  });
});

describe('bundle plugin helpers', () => {
  it('splits a handler into module path and export name', () => {
    expect(parseHandler('functions/plan-rotation.handler')).toEqual({
      module: 'functions/plan-rotation',
      exportName: 'handler',
    });
    expect(parseHandler('a.b.c')).toEqual({ module: 'a.b', exportName: 'c' });
  });

  it.each(['handler', '.handler', 'functions/x.'])('refuses the handler %j', (handler) => {
    expect(() => parseHandler(handler)).toThrow(/<path>.<export>/);
  });

  it('maps Node.js Lambda runtimes to esbuild targets and refuses others', () => {
    expect(esbuildTarget('nodejs24.x')).toBe('node24');
    expect(esbuildTarget('nodejs22.x')).toBe('node22');
    expect(() => esbuildTarget('python3.13')).toThrow(/not a Node.js runtime/);
    expect(() => esbuildTarget(undefined)).toThrow(/not a Node.js runtime/);
  });

  it('defaults to minified bundles without source maps or externals', () => {
    expect(resolveOptions(undefined)).toEqual({ minify: true, sourcemap: false, external: [] });
    expect(resolveOptions({ sourcemap: true, external: ['@aws-sdk/*'] })).toEqual({
      minify: true,
      sourcemap: true,
      external: ['@aws-sdk/*'],
    });
  });

  it('collects an entry and the chunks it imports transitively, once each, entry first', () => {
    const imports = new Map<string, string[]>([
      ['functions/a.mjs', ['functions/chunks/z.mjs', 'functions/chunks/x.mjs']],
      ['functions/b.mjs', ['functions/chunks/x.mjs']],
      ['functions/chunks/z.mjs', ['functions/chunks/y.mjs', 'functions/chunks/x.mjs']],
      ['functions/chunks/y.mjs', ['functions/chunks/z.mjs']],
      ['functions/chunks/x.mjs', []],
    ]);
    expect(closure('functions/a.mjs', imports)).toEqual([
      'functions/a.mjs',
      'functions/chunks/x.mjs',
      'functions/chunks/y.mjs',
      'functions/chunks/z.mjs',
    ]);
    expect(closure('functions/b.mjs', imports)).toEqual(['functions/b.mjs', 'functions/chunks/x.mjs']);
  });

  it('prints one row per function with sizes in KiB', () => {
    const text = formatReport([
      {
        function: 'planRotation',
        handler: 'functions/plan-rotation.handler',
        entry: 'functions/plan-rotation.ts',
        artifact: 'planRotation.zip',
        files: ['functions/plan-rotation.mjs'],
        bundleBytes: 2048,
        zipBytes: 512,
      },
    ]);
    expect(text.split('\n')).toHaveLength(2);
    expect(text).toMatch(/planRotation\s+2\.0 KiB\s+0\.5 KiB/);
  });
});

describe('BundlePlugin', () => {
  let dir: string;
  const logs: string[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-bundle-'));
    await mkdir(join(dir, 'functions'));
    await writeFile(join(dir, 'functions/shared.ts'), 'export const greeting: string = "hello";\n');
    await writeFile(
      join(dir, 'functions/one.ts'),
      'import { greeting } from "./shared.ts";\nexport const handler = async () => greeting + " one";\n',
    );
    await writeFile(
      join(dir, 'functions/two.ts'),
      'import { greeting } from "./shared.ts";\nexport const handler = async () => greeting + " two";\n',
    );
    await writeFile(join(dir, 'functions/wrong.ts'), 'export const main = async () => 1;\n');
    logs.length = 0;
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function plugin(functions: Record<string, { handler: string; package?: { artifact?: string } }>) {
    const serverless = {
      serviceDir: dir,
      service: {
        custom: { bundle: { minify: false } },
        provider: { runtime: 'nodejs24.x' },
        getAllFunctions: () => Object.keys(functions),
        getFunction: (name: string) => functions[name]!,
      },
    };
    const log = { notice: (m: string) => logs.push(m), info: (m: string) => logs.push(m), verbose: () => {} };
    return new BundlePlugin(serverless, {}, { log });
  }

  it('gives each function an archive with its entry and the shared chunk, and reports the sizes', async () => {
    const functions = {
      one: { handler: 'functions/one.handler' } as { handler: string; package?: { artifact?: string } },
      two: { handler: 'functions/two.handler' } as { handler: string; package?: { artifact?: string } },
    };
    await plugin(functions).hooks['before:package:createDeploymentArtifacts']!();
    for (const name of ['one', 'two'] as const) {
      const artifact = functions[name].package?.artifact;
      expect(artifact).toBe(join(dir, '.serverless', `${name}.zip`));
      const files = unzip(await readFile(artifact!));
      expect(files[0]!.name).toBe(`functions/${name}.mjs`);
      expect(files.slice(1).map((f) => f.name)).toEqual([
        expect.stringMatching(/^functions\/chunks\/chunk-.+\.mjs$/),
      ]);
      expect(files.map((f) => f.data.toString()).join('\n')).toContain('hello');
    }
    const report = JSON.parse(await readFile(join(dir, '.serverless/bundle-report.json'), 'utf8')) as {
      function: string;
    }[];
    expect(report.map((r) => r.function)).toEqual(['one', 'two']);
    expect(logs.join('\n')).toMatch(/Bundled 2 function\(s\) with esbuild \(node24\)/);
  });

  it('refuses a handler whose module does not export the named function', async () => {
    await expect(
      plugin({ wrong: { handler: 'functions/wrong.handler' } }).hooks[
        'before:package:createDeploymentArtifacts'
      ]!(),
    ).rejects.toThrow(/does not export 'handler'/);
  });

  it('refuses a handler whose source file does not exist', async () => {
    await expect(
      plugin({ gone: { handler: 'functions/gone.handler' } }).hooks[
        'before:package:createDeploymentArtifacts'
      ]!(),
    ).rejects.toThrow(/no source for function 'gone'/);
  });
});
