/**
 * Which HAProxy binaries the dataplane benchmark runs the gateway on: the image's release
 * (`scripts/haproxy-release`, built by `scripts/build-haproxy.sh` into its cache when missing)
 * first, then every other release asked for (by default the distribution's `haproxy` on PATH, the
 * release the suite also runs on), each measured in the same rounds as NGINX.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseHaproxyVersion } from '../../proxy/haproxy/capabilities.ts';
import { BenchmarkError } from './errors.ts';

export interface HaproxyBuild {
  binary: string;
  /** `3.2.0`, `2.6.12`, … as `haproxy -v` prints it. */
  version: string;
  /** The first line of `haproxy -v`. */
  banner: string;
  /** `image`: the release the fleet's image runs; `compared`: measured beside it. */
  role: 'image' | 'compared';
}

const repo = fileURLToPath(new URL('../../', import.meta.url));

/** The release the image pins (`scripts/haproxy-release`). */
export function imageRelease(): string {
  return readFileSync(`${repo}scripts/haproxy-release`, 'utf8').trim();
}

/** `haproxy -v` of a binary, or a `BenchmarkError` naming it. */
export function probeHaproxy(binary: string, role: HaproxyBuild['role']): HaproxyBuild {
  const run = spawnSync(binary, ['-v'], { encoding: 'utf8', timeout: 10_000 });
  if (run.error !== undefined || run.status !== 0) {
    throw new BenchmarkError(`${binary} -v failed: ${run.error?.message ?? run.stderr.trim()}`);
  }
  const banner = run.stdout.split('\n')[0]?.trim() ?? '';
  const v = parseHaproxyVersion(banner);
  // The release only: a source build says `3.2.0-e134140d2`, Debian `2.6.12-1+deb12u4`.
  return { binary, version: `${v.major}.${v.minor}.${v.patch}`, banner, role };
}

/**
 * `scripts/build-haproxy.sh`: returns the cached binary at once, or builds it (~60-90 s, needs
 * root or sudo for its build dependencies) and prints its path on the last line.
 */
function buildImageRelease(log: (text: string) => void): string {
  log(
    `HAProxy ${imageRelease()} (the image's release): scripts/build-haproxy.sh (builds it once when not cached)`,
  );
  const run = spawnSync('bash', [`${repo}scripts/build-haproxy.sh`], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 15 * 60_000,
  });
  const binary = run.stdout?.trim().split('\n').at(-1);
  if (run.status !== 0 || binary === undefined || binary === '') {
    throw new BenchmarkError(`scripts/build-haproxy.sh failed (exit ${run.status})`);
  }
  return binary;
}

/**
 * The builds to measure, the image's release first.
 * @param options.image `--haproxy BIN`; default: the cached or freshly built image release.
 * @param options.compare `--compare-haproxy a,b` (`none` for no comparison); default `haproxy`
 *   from PATH, kept only when it is another release than the image's.
 * @example resolveHaproxyBuilds({}, log) // [{ version: '3.2.0', role: 'image' }, { version: '2.6.12', role: 'compared' }]
 */
export function resolveHaproxyBuilds(
  options: { image?: string; compare?: string },
  log: (text: string) => void,
  build: (log: (text: string) => void) => string = buildImageRelease,
): HaproxyBuild[] {
  const image = probeHaproxy(options.image ?? build(log), 'image');
  if (options.image === undefined && image.version !== imageRelease()) {
    throw new BenchmarkError(`${image.binary} is HAProxy ${image.version}, the image runs ${imageRelease()}`);
  }
  const asked =
    options.compare === undefined
      ? ['haproxy']
      : options.compare === 'none'
        ? []
        : options.compare.split(',');
  const builds = [image];
  for (const binary of asked.filter(Boolean)) {
    let compared: HaproxyBuild;
    try {
      compared = probeHaproxy(binary, 'compared');
    } catch (error) {
      // The default comparison is optional; one named on the command line is not.
      if (options.compare === undefined) {
        log(`no HAProxy to compare with: ${(error as Error).message}`);
        continue;
      }
      throw error;
    }
    if (builds.some((b) => b.version === compared.version)) {
      log(`${binary} is HAProxy ${compared.version}, already measured: skipped`);
      continue;
    }
    builds.push(compared);
  }
  return builds;
}
