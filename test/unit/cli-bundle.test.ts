import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectValidConfig } from '../support/haproxy.ts';

const run = promisify(execFile);
const repo = new URL('../..', import.meta.url).pathname;

// The sidecar image runs this bundle (proxy/sidecar/Dockerfile): it must work on its own, outside
// the repository and without node_modules.
describe('the bundled portcullis CLI', () => {
  let dir: string;
  let bundle: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-bundle-'));
    bundle = join(dir, 'portcullis.mjs');
    await run(process.execPath, [join(repo, 'scripts/bundle.ts'), '--outfile', bundle], { cwd: repo });
  }, 60_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists every command from a directory without node_modules', async () => {
    const { stdout } = await run(process.execPath, [bundle, '--help'], { cwd: dir });
    for (const command of ['proxy', 'sidecar', 'demo', 'init', 'rotate', 'status', 'history', 'allowlist']) {
      expect(stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
  });

  it('validates a sidecar config the way the image entrypoint runs it', async () => {
    const { stdout } = await run(
      process.execPath,
      [bundle, 'sidecar', '--config', join(repo, 'examples/sidecar-local.yaml'), '--check'],
      { cwd: dir },
    );
    expect(stdout).toContain('is valid');
  });

  it('renders a gateway configuration that HAProxy accepts', async () => {
    const out = join(dir, 'gateway');
    await run(
      process.execPath,
      [bundle, 'proxy', 'render', '--config', join(repo, 'examples/lattice-fleet.yaml'), '--out', out],
      {
        cwd: dir,
      },
    );
    await expectValidConfig(join(out, 'haproxy.cfg'));
  });
});
