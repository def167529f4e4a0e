import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectionResult, renderMarkdown, summarise } from '../../bench/dataplane.ts';
import { imageRelease, probeHaproxy, resolveHaproxyBuilds } from '../../bench/lib/haproxy-builds.ts';
import { computeRatios, meets } from '../../bench/lib/report.ts';
import { dataplaneResults } from '../support/bench.ts';

let dir: string;
/** A stand-in `haproxy` that prints the banner a real build prints for `-v`. */
async function fakeHaproxy(name: string, banner: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(
    path,
    `#!/bin/sh\n[ "$1" = -v ] || exit 2\necho '${banner}'\necho 'Status: long-term supported branch'\n`,
  );
  await chmod(path, 0o755);
  return path;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-bench-builds-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('resolveHaproxyBuilds', () => {
  const logs: string[] = [];
  const log = (text: string) => logs.push(text);

  it("puts the image's release first and the distribution's release beside it", async () => {
    const image = await fakeHaproxy(
      'image',
      `HAProxy version ${imageRelease()}-e134140d2 2025/05/28 - https://haproxy.org/`,
    );
    const debian = await fakeHaproxy(
      'debian',
      'HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/',
    );
    const builds = resolveHaproxyBuilds({ compare: debian }, log, () => image);
    expect(builds.map((b) => [b.version, b.role, b.binary])).toEqual([
      [imageRelease(), 'image', image],
      ['2.6.12', 'compared', debian],
    ]);
    expect(builds[1]?.banner).toBe('HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/');
  });

  it('refuses a build of another release as the image release unless named with --haproxy', async () => {
    const old = await fakeHaproxy('old', 'HAProxy version 2.8.5 2023/12/07');
    expect(() => resolveHaproxyBuilds({ compare: 'none' }, log, () => old)).toThrow(
      `is HAProxy 2.8.5, the image runs ${imageRelease()}`,
    );
    expect(resolveHaproxyBuilds({ image: old, compare: 'none' }, log).map((b) => b.version)).toEqual([
      '2.8.5',
    ]);
  });

  it('skips a comparison of the same release and a missing default one, but not a missing named one', async () => {
    const image = await fakeHaproxy('same-a', `HAProxy version ${imageRelease()} 2025/05/28`);
    const same = await fakeHaproxy('same-b', `HAProxy version ${imageRelease()}-1 2025/06/01`);
    expect(resolveHaproxyBuilds({ image, compare: same }, log)).toHaveLength(1);
    expect(logs.at(-1)).toContain('already measured');
    expect(() => resolveHaproxyBuilds({ image, compare: join(dir, 'absent') }, log)).toThrow(
      /absent -v failed/,
    );
    const previousPath = process.env.PATH;
    process.env.PATH = dir; // no `haproxy` in it
    try {
      expect(resolveHaproxyBuilds({ image }, log)).toHaveLength(1);
      expect(logs.at(-1)).toContain('no HAProxy to compare with');
    } finally {
      process.env.PATH = previousPath;
    }
  });

  it('names a binary that does not answer -v', async () => {
    const broken = join(dir, 'broken');
    await writeFile(broken, '#!/bin/sh\necho oops >&2\nexit 1\n');
    await chmod(broken, 0o755);
    expect(() => probeHaproxy(broken, 'compared')).toThrow(/broken -v failed: oops/);
  });
});

function run(
  haproxy: string | undefined,
  path: ConnectionResult['path'],
  entries: number,
  cps: number,
  cpu: number | null,
) {
  return {
    path,
    ...(haproxy !== undefined ? { haproxy } : {}),
    round: 0,
    allowlistEntries: entries,
    connections: cps,
    errors: 0,
    errorSamples: [],
    seconds: 1,
    connectionsPerSecond: cps,
    latencyMs: { p50: 1, p99: 2 },
    cpuMicrosPerConnection: { proxy: cpu, upstream: 300, generator: 500, harness: 5 },
    proxyUserSystemMicros: cpu === null ? null : { user: cpu / 2, system: cpu / 2 },
    machineBusy: 1,
    dnsQueries: 0,
  } satisfies ConnectionResult;
}

describe('the gateway on two HAProxy releases in one run', () => {
  const connections = [
    run(undefined, 'direct', 0, 2000, null),
    run('3.2.0', 'gateway', 0, 1800, 200),
    run('2.6.12', 'gateway', 0, 1700, 240),
    run('3.2.0', 'gateway', 1000, 1790, 210),
    run('2.6.12', 'gateway', 1000, 1650, 250),
    run(undefined, 'nginx', 0, 1850, 160),
    run(undefined, 'nginx', 1000, 1800, 180),
  ];
  const bulk = [
    {
      path: 'gateway' as const,
      haproxy: '2.6.12',
      bytes: 1,
      repeats: [],
      mibPerSecond: 900,
      proxyCpuMicrosPerMiB: 1,
    },
    {
      path: 'gateway' as const,
      haproxy: '3.2.0',
      bytes: 1,
      repeats: [],
      mibPerSecond: 1000,
      proxyCpuMicrosPerMiB: 1,
    },
  ];

  it("keeps the image release's runs as the gateway and each other release apart", () => {
    const summary = summarise(connections, bulk, '3.2.0');
    expect(summary.gateway.bySize[0]).toEqual({ connectionsPerSecond: 1800, cpuMicrosPerConnection: 200 });
    expect(summary.gateway.bulkMiBps).toBe(1000);
    expect(summary.comparedGateways?.['2.6.12']).toEqual({
      bySize: {
        0: { connectionsPerSecond: 1700, cpuMicrosPerConnection: 240 },
        1000: { connectionsPerSecond: 1650, cpuMicrosPerConnection: 250 },
      },
      bulkMiBps: 900,
    });
  });

  it('adds ratios of the compared release against the image release and NGINX, without targets', () => {
    const ratios = computeRatios(summarise(connections, bulk, '3.2.0'), 0, 1000);
    const compared = ratios.filter((r) => r.name.startsWith('gateway on 2.6.12'));
    expect(compared.map((r) => [r.name, Number(r.value.toFixed(3))])).toEqual([
      ['gateway on 2.6.12 / on 3.2.0 CPU per connection (0 entries)', 1.2],
      ['gateway on 2.6.12 / on 3.2.0 CPU per connection (1000 entries)', Number((250 / 210).toFixed(3))],
      [
        'gateway on 2.6.12 / on 3.2.0 new connections per second (0 entries)',
        Number((1700 / 1800).toFixed(3)),
      ],
      ['gateway on 2.6.12 / on 3.2.0 bulk throughput', 0.9],
      ['gateway on 2.6.12 / NGINX CPU per connection (0 entries)', 1.5],
    ]);
    expect(compared.every((r) => r.target === undefined)).toBe(true);
    // The targets stay the image release's.
    expect(ratios.find((r) => r.name === 'gateway / NGINX CPU per connection (0 entries)')?.value).toBe(
      200 / 160,
    );
  });

  it('labels every gateway row with its release', () => {
    const base = dataplaneResults({ connections, bulk }, '3.2.0');
    const text = renderMarkdown({
      ...base,
      environment: {
        ...base.environment,
        haproxy:
          'HAProxy version 3.2.0 2025/05/28 - https://haproxy.org/; HAProxy version 2.6.12 - https://haproxy.org/',
      },
      gateways: [
        { version: '3.2.0', banner: 'HAProxy version 3.2.0', role: 'image' },
        { version: '2.6.12', banner: 'HAProxy version 2.6.12', role: 'compared' },
      ],
      ratios: computeRatios(summarise(connections, bulk, '3.2.0'), 0, 1000).map((r) => ({
        ...r,
        met: meets(r) ?? null,
      })),
    });
    expect(text).toContain('| gateway (HAProxy 3.2.0) | 0 | 0 | 1800 | 200 |');
    expect(text).toContain('| gateway (HAProxy 2.6.12) | 0 | 1000 | 1650 | 250 |');
    expect(text).toContain('| gateway (HAProxy 2.6.12) | 0 | 900 |');
    expect(text).toContain('HAProxy version 3.2.0 2025/05/28; HAProxy version 2.6.12,');
    expect(text).toContain('| gateway on 2.6.12 / on 3.2.0 bulk throughput | 0.90× | — |');
  });
});
