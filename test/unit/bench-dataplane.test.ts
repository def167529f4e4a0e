import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectionResult, renderMarkdown, roundOrder, summarise } from '../../bench/dataplane.ts';
import {
  addToSection,
  bindPerThread,
  dataplanePlan,
  dropLines,
  dropSection,
  GATEWAY_VARIANTS,
  nativeSni,
  replaceOnce,
} from '../../bench/dataplane-plan.ts';
import { benchAllowlist, seededRandom } from '../../bench/lib/allowlist.ts';
import { perfStatus } from '../../bench/lib/env.ts';
import { splitEvenly } from '../../bench/lib/loadgen.ts';
import { combineWindows, parseNativeWindow } from '../../bench/lib/native-loadgen.ts';
import { renderSniProxyNginx, renderUpstreamNginx } from '../../bench/lib/nginx.ts';
import {
  busyShare,
  clockTicks,
  type ProcStat,
  parseProcStat,
  parseSystemCpu,
  processTree,
  treeTimesBetween,
} from '../../bench/lib/proc.ts';
import { computeRatios, type DataplaneSummary, formatRatioTable, meets } from '../../bench/lib/report.ts';
import { median, percentile } from '../../bench/lib/stats.ts';
import { normaliseAllowlist, parseCidr } from '../../lib/allowlist/index.ts';
import { parseFleetConfig } from '../../lib/config/index.ts';
import { gatewayLayout, renderGateway, writeGateway } from '../../proxy/haproxy/index.ts';
import { dataplaneResults } from '../support/bench.ts';
import { expectValidConfig } from '../support/haproxy.ts';

describe('parseProcStat', () => {
  it('reads pid, parent and CPU ticks from a /proc/<pid>/stat line', () => {
    const line =
      '4242 (haproxy) S 4241 4241 1 0 -1 4194560 1523 0 0 0 731 214 0 0 20 0 2 0 12345 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0';
    expect(parseProcStat(line)).toEqual({
      pid: 4242,
      comm: 'haproxy',
      state: 'S',
      ppid: 4241,
      utime: 731,
      stime: 214,
    });
  });

  it('counts fields from the last parenthesis when the command name holds spaces and parentheses', () => {
    const line = '77 (nginx: worker (x) ) R 70 70 70 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1';
    expect(parseProcStat(line)).toMatchObject({
      pid: 77,
      comm: 'nginx: worker (x) ',
      state: 'R',
      ppid: 70,
      utime: 5,
      stime: 6,
    });
  });

  it.each(['', 'garbage', '12 (short) S 1 2', 'x (a) S 1 1 1 0 -1 0 0 0 0 0 1 1'])('rejects %j', (text) => {
    expect(parseProcStat(text)).toBeUndefined();
  });
});

describe('parseSystemCpu', () => {
  it('sums every state of the aggregate line and counts idle plus iowait as idle', () => {
    const text = 'cpu  100 5 50 800 20 1 4 0 0 0\ncpu0 50 2 25 400 10 0 2 0 0 0\nintr 1 2 3\n';
    expect(parseSystemCpu(text)).toEqual({ total: 980, idle: 820 });
  });

  it('returns undefined without an aggregate line', () => {
    expect(parseSystemCpu('cpu0 1 2 3 4\n')).toBeUndefined();
  });

  it('gives the busy share between two samples, bounded to 0…1', () => {
    expect(busyShare({ total: 1000, idle: 500 }, { total: 1200, idle: 550 })).toBeCloseTo(0.75);
    expect(busyShare({ total: 1000, idle: 500 }, { total: 1000, idle: 500 })).toBe(0);
  });
});

describe('processTree', () => {
  const stat = (pid: number, ppid: number, utime = 0, stime = 0): ProcStat => ({
    pid,
    ppid,
    comm: `p${pid}`,
    state: 'S',
    utime,
    stime,
  });

  it('collects a process and all its descendants, nothing else', () => {
    const stats = [stat(1, 0), stat(10, 1), stat(11, 10), stat(12, 10), stat(13, 12), stat(20, 1)];
    expect(
      processTree(stats, 10)
        .map((s) => s.pid)
        .sort((a, b) => a - b),
    ).toEqual([10, 11, 12, 13]);
  });

  it('counts a worker forked between two samples from zero', () => {
    const tick = 1e6 / clockTicks();
    const before = [stat(10, 1, 100, 50), stat(99, 1, 1000, 1000)];
    const after = [stat(10, 1, 110, 55), stat(11, 10, 3, 4), stat(99, 1, 2000, 2000)];
    expect(treeTimesBetween(before, after, 10)).toEqual({ user: 13 * tick, system: 9 * tick });
  });
});

describe('benchAllowlist', () => {
  it('has the requested random entries plus the client, which sits in the middle', () => {
    const list = benchAllowlist(1000, '127.0.0.1/32');
    expect(list).toHaveLength(1001);
    expect(list.indexOf('127.0.0.1/32')).toBe(500);
    expect(new Set(list).size).toBe(list.length);
  });

  it('never admits the loopback client through a random entry', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3000 }), fc.integer(), (size, seed) => {
        const list = benchAllowlist(size, '127.0.0.1/32', seed);
        expect(list).toHaveLength(size + 1);
        for (const entry of list) {
          if (entry !== '127.0.0.1/32') expect(entry.startsWith('127.')).toBe(false);
        }
      }),
      { numRuns: 30 },
    );
  });

  it('renders valid, canonical /32 and /24 entries that the gateway accepts', () => {
    const list = benchAllowlist(2000, '127.0.0.1/32', 7);
    for (const entry of list) {
      const parsed = parseCidr(entry);
      expect(parsed.kind).toBe('ok');
      if (parsed.kind === 'ok') expect(parsed.cidr.text).toBe(entry);
      expect(entry).toMatch(/\/(32|24)$/);
    }
    expect(normaliseAllowlist(list, { maxEntries: 1_000_000 }).kind).toBe('ok');
  });

  it('is the same list for the same seed and a different one for another seed', () => {
    expect(benchAllowlist(50, '127.0.0.1/32', 1)).toEqual(benchAllowlist(50, '127.0.0.1/32', 1));
    expect(benchAllowlist(50, '127.0.0.1/32', 1)).not.toEqual(benchAllowlist(50, '127.0.0.1/32', 2));
  });

  it('draws from a seeded generator in [0, 1)', () => {
    const random = seededRandom(42);
    const values = Array.from({ length: 1000 }, random);
    expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
    expect(new Set(values).size).toBeGreaterThan(990);
  });
});

function connection(
  path: ConnectionResult['path'],
  entries: number,
  cps: number,
  proxy: number | null,
  variant?: string,
  round = 0,
): ConnectionResult {
  return {
    path,
    ...(variant !== undefined ? { variant } : {}),
    round,
    allowlistEntries: entries,
    connections: cps * 5,
    errors: 0,
    errorSamples: [],
    seconds: 5,
    connectionsPerSecond: cps,
    latencyMs: { p50: 10, p99: 40 },
    cpuMicrosPerConnection: { proxy, upstream: 300, generator: 500, harness: 5 },
    proxyUserSystemMicros: proxy === null ? null : { user: proxy / 2, system: proxy / 2 },
    machineBusy: 1,
    dnsQueries: 0,
  };
}

describe('computeRatios', () => {
  const summary: DataplaneSummary = {
    direct: { connectionsPerSecond: 1000, bulkMiBps: 1000 },
    gateway: {
      bySize: {
        0: { connectionsPerSecond: 980, cpuMicrosPerConnection: 90 },
        100000: { connectionsPerSecond: 950, cpuMicrosPerConnection: 99 },
      },
      bulkMiBps: 950,
    },
    nginx: {
      bySize: {
        0: { connectionsPerSecond: 900, cpuMicrosPerConnection: 100 },
        100000: { connectionsPerSecond: 300, cpuMicrosPerConnection: 400 },
      },
      bulkMiBps: 900,
    },
  };

  it('computes every ratio with its target and says which are met', () => {
    const ratios = computeRatios(summary, 0, 100000);
    const byName = Object.fromEntries(ratios.map((r) => [r.name, r]));
    expect(byName['gateway / NGINX CPU per connection (0 entries)']?.value).toBeCloseTo(0.9);
    expect(meets(byName['gateway / NGINX CPU per connection (0 entries)']!)).toBe(true);
    expect(byName['gateway / direct new connections per second (0 entries)']?.value).toBeCloseTo(0.98);
    expect(byName['gateway / NGINX bulk throughput']?.value).toBeCloseTo(950 / 900);
    expect(meets(byName['gateway / NGINX bulk throughput']!)).toBe(true);
    expect(byName['gateway / direct bulk throughput']?.value).toBeCloseTo(0.95);
    expect(byName['gateway CPU per connection, 100000 / 0 entries']?.value).toBeCloseTo(1.1);
    expect(byName['NGINX CPU per connection, 100000 / 0 entries']?.value).toBeCloseTo(4);
    expect(meets(byName['NGINX CPU per connection, 100000 / 0 entries']!)).toBeUndefined();
  });

  it('adds the per-connection ratios of a proposed configuration when one was measured', () => {
    const plain = computeRatios(summary, 0, 100000);
    const ratios = computeRatios(summary, 0, 100000, {
      name: 'resolution-keepalive',
      cpuMicrosPerConnection: 80,
      connectionsPerSecond: 990,
      cpuMicrosPerConnectionLargest: 84,
    });
    expect(ratios).toHaveLength(plain.length + 3);
    const scaling = ratios.find(
      (r) => r.name === 'gateway + resolution-keepalive CPU per connection, 100000 / 0 entries',
    )!;
    expect(scaling.value).toBeCloseTo(1.05);
    const cpu = ratios.find(
      (r) => r.name === 'gateway + resolution-keepalive / NGINX CPU per connection (0 entries)',
    )!;
    expect(cpu.value).toBeCloseTo(0.8);
    expect(meets(cpu)).toBe(true);
    const rate = ratios.find(
      (r) => r.name === 'gateway + resolution-keepalive / direct new connections per second (0 entries)',
    )!;
    expect(rate.value).toBeCloseTo(0.99);
  });

  it('reports a missed target as missed and an unmeasured ratio as n/a', () => {
    const slow: DataplaneSummary = { ...summary, gateway: { ...summary.gateway, bulkMiBps: 500 } };
    const ratios = computeRatios(slow, 0, 1000);
    const bulk = ratios.find((r) => r.name === 'gateway / NGINX bulk throughput')!;
    expect(meets(bulk)).toBe(false);
    const scaling = ratios.find((r) => r.name === 'gateway CPU per connection, 1000 / 0 entries')!;
    expect(Number.isNaN(scaling.value)).toBe(true);
    expect(meets(scaling)).toBeUndefined();
    const table = formatRatioTable(ratios);
    expect(table).toContain('| gateway / NGINX bulk throughput | 0.56× | ≥ 1.05× | missed |');
    expect(table).toContain('| gateway CPU per connection, 1000 / 0 entries | n/a | ≤ 1.10× | — |');
  });

  it('formats a Markdown table with a header and one row per ratio', () => {
    const ratios = computeRatios(summary, 0, 100000);
    const lines = formatRatioTable(ratios).split('\n');
    expect(lines[0]).toBe('| ratio | measured | target | |');
    expect(lines[1]).toBe('| --- | ---: | ---: | --- |');
    expect(lines).toHaveLength(ratios.length + 2);
    expect(lines[2]).toBe('| gateway / NGINX CPU per connection (0 entries) | 0.90× | ≤ 0.90× | met |');
  });
});

describe('summarise', () => {
  it('averages the alternating rounds of each path and size', () => {
    const summary = summarise(
      [
        connection('direct', 0, 1000, null, undefined, 0),
        connection('direct', 0, 800, null, undefined, 1),
        connection('nginx', 0, 600, 100, undefined, 0),
        connection('nginx', 0, 700, 140, undefined, 1),
      ],
      [],
    );
    expect(summary.direct.connectionsPerSecond).toBe(900);
    expect(summary.nginx.bySize[0]).toEqual({ connectionsPerSecond: 650, cpuMicrosPerConnection: 120 });
  });

  it("takes the rendered configuration's runs and ignores the --explore variants", () => {
    const summary = summarise(
      [
        connection('direct', 0, 1000, null),
        connection('gateway', 0, 800, 200),
        connection('gateway', 0, 700, 250, 'nbthread-1:reference'),
        connection('gateway', 0, 900, 150, 'nbthread-1'),
        connection('nginx', 0, 850, 160),
        connection('gateway', 1000, 790, 205),
      ],
      [
        { path: 'gateway', bytes: 1, repeats: [], mibPerSecond: 700, proxyCpuMicrosPerMiB: 300 },
        {
          path: 'gateway',
          variant: 'splice-auto',
          bytes: 1,
          repeats: [],
          mibPerSecond: 9000,
          proxyCpuMicrosPerMiB: 1,
        },
      ],
    );
    expect(summary.direct.connectionsPerSecond).toBe(1000);
    expect(summary.gateway.bySize[0]).toEqual({ connectionsPerSecond: 800, cpuMicrosPerConnection: 200 });
    expect(summary.gateway.bySize[1000]?.cpuMicrosPerConnection).toBe(205);
    expect(summary.gateway.bulkMiBps).toBe(700);
    expect(Number.isNaN(summary.nginx.bulkMiBps)).toBe(true);
  });
});

describe('renderMarkdown', () => {
  it('prints the raw figures and the ratio table', () => {
    const connections = [connection('direct', 0, 1000, null), connection('gateway', 0, 800, 200)];
    const text = renderMarkdown(
      dataplaneResults({
        connections,
        bulk: [],
        variants: [
          {
            name: 'nbthread-1',
            why: 'one thread',
            cpuPerConnectionVsRendered: 0.8,
            userCpuVsRendered: 0.5,
            connectionsPerSecondVsRendered: 1.1,
            bulkVsRendered: null,
            dnsQueries: 3,
            referenceDnsQueries: 900,
          },
        ],
      }),
    );
    expect(text).toContain('| gateway | 0 | 0 | 800 | 200 | 100 / 100 | 300 | 500 |');
    expect(text).toContain('| direct | 0 | 0 | 1000 | n/a | n/a | 300 | 500 |');
    expect(text).toContain('| nbthread-1 | 0.80× | 0.50× | 1.10× | n/a | 3 / 900 |');
    expect(text).toContain('| ratio | measured | target | |');
  });
});

describe('roundOrder', () => {
  it('runs even rounds forwards and odd rounds backwards without touching the input', () => {
    const legs = ['direct', 'gateway', 'nginx'];
    expect(roundOrder(legs, 0)).toEqual(['direct', 'gateway', 'nginx']);
    expect(roundOrder(legs, 1)).toEqual(['nginx', 'gateway', 'direct']);
    expect(legs).toEqual(['direct', 'gateway', 'nginx']);
  });
});

describe('stats', () => {
  it('takes nearest-rank percentiles of a sorted array', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 0.5)).toBe(50);
    expect(percentile(sorted, 0.99)).toBe(99);
    expect(percentile(sorted, 1)).toBe(100);
    expect(Number.isNaN(percentile([], 0.5))).toBe(true);
  });

  it('takes the median of odd and even counts without reordering the input', () => {
    const values = [3, 1, 2, 10];
    expect(median(values)).toBe(2.5);
    expect(values).toEqual([3, 1, 2, 10]);
    expect(median([5, 1, 3])).toBe(3);
  });

  it('splits concurrency so that shares differ by at most one and add up', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 64 }), (total, parts) => {
        const shares = splitEvenly(total, parts);
        expect(shares).toHaveLength(parts);
        expect(shares.reduce((a, b) => a + b, 0)).toBe(total);
        expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
      }),
    );
  });
});

describe('native load generator reports', () => {
  const line = (connections: number, p50: number, p99: number, error = '') =>
    JSON.stringify({
      connections,
      errors: 1,
      elapsedMs: 5000,
      cpuMicros: 1000,
      p50Ms: p50,
      p99Ms: p99,
      error,
    });

  it('parses a window line and rejects anything else', () => {
    expect(parseNativeWindow(line(10, 1, 2))).toMatchObject({ connections: 10, p50Ms: 1, p99Ms: 2 });
    expect(parseNativeWindow('ready')).toBeUndefined();
    expect(parseNativeWindow('{"connections":"10"}')).toBeUndefined();
  });

  it('adds the workers up: connections, errors, CPU; median p50 and worst p99', () => {
    const windows = [parseNativeWindow(line(100, 2, 9, 'timeout'))!, parseNativeWindow(line(300, 4, 7))!];
    const combined = combineWindows(windows);
    expect(combined).toMatchObject({
      connections: 400,
      errors: 2,
      generatorCpuMicros: 2000,
      errorSamples: ['timeout'],
    });
    expect(combined.connectionsPerSecond).toBeCloseTo(80);
    expect(combined.latencyMs).toEqual({ p50: 3, p99: 9 });
  });
});

describe('perfStatus', () => {
  it('tells available, unsupported and missing perf counters apart', () => {
    expect(perfStatus('   1,234,567      instructions   \n')).toBe('available');
    expect(perfStatus('   <not supported>      instructions   \n')).toBe('unsupported');
    expect(perfStatus(undefined)).toBe('missing');
  });
});

describe('dataplanePlan', () => {
  it('keeps the quick run short and the full run on three allowlist sizes', () => {
    const quick = dataplanePlan({ quick: true, cores: 2 });
    const full = dataplanePlan({ quick: false, cores: 2 });
    expect(quick.durationMs).toBeLessThan(full.durationMs);
    expect(quick.allowlistSizes).toEqual([0, 100_000]);
    expect(full.allowlistSizes).toEqual([0, 1000, 100_000]);
    expect(full.bulkBytes).toBe(256 * 2 ** 20);
    expect(full.generatorWorkers).toBe(2);
  });

  it('runs every variant with --explore, only the named ones with --variants, and refuses unknown names', () => {
    const all = GATEWAY_VARIANTS.map((v) => v.name);
    expect(dataplanePlan({ quick: true }).explore).toBe(false);
    expect(dataplanePlan({ quick: true, explore: true }).variants).toEqual(all);
    const some = dataplanePlan({ quick: true, variants: ['threads-1', 'native-sni-unsafe'] });
    expect(some).toMatchObject({ explore: true, variants: ['threads-1', 'native-sni-unsafe'] });
    expect(() => dataplanePlan({ quick: true, variants: ['threads-1', 'nope'] })).toThrow(/nope/);
    expect(all).toContain(dataplanePlan({ quick: false }).proposedVariant);
  });

  it('refuses a concurrency that is not a positive integer', () => {
    expect(() => dataplanePlan({ quick: true, concurrency: 0 })).toThrow(RangeError);
    expect(() => dataplanePlan({ quick: true, concurrency: 1.5 })).toThrow(RangeError);
  });
});

describe('NGINX configurations', () => {
  it('renders the reference SNI proxy with the allowlist in order, then deny all', () => {
    const text = renderSniProxyNginx({
      host: '127.0.0.2',
      port: 4443,
      resolver: '127.0.0.1:5353',
      resolverValidSeconds: 10,
      allowlist: ['10.0.0.0/24', '127.0.0.1', '10.0.1.1/32'],
      workers: 2,
      pidFile: '/tmp/x.pid',
    });
    expect(text).toContain('load_module /usr/lib/nginx/modules/ngx_stream_module.so;');
    expect(text).toContain('resolver 127.0.0.1:5353 valid=10s ipv6=off;');
    expect(text).toContain('ssl_preread on;');
    expect(text).toContain('proxy_pass $ssl_preread_server_name:$server_port;');
    const rules = text
      .split('\n')
      .filter((l) => /^\s+(allow|deny) /.test(l))
      .map((l) => l.trim());
    expect(rules).toEqual(['allow 10.0.0.0/24;', 'allow 127.0.0.1;', 'allow 10.0.1.1/32;', 'deny all;']);
  });

  it('renders an upstream that never resumes a session and closes after one answer', () => {
    const text = renderUpstreamNginx({
      host: '127.0.0.3',
      port: 4443,
      certPath: '/c',
      keyPath: '/k',
      bulkFile: '/b',
      workers: 2,
      pidFile: '/p',
    });
    expect(text).toContain('ssl_session_cache off;');
    expect(text).toContain('ssl_session_tickets off;');
    expect(text).toContain('keepalive_timeout 0;');
    expect(text).toContain('listen 127.0.0.3:4443 ssl');
  });
});

describe('gateway variants', () => {
  let dir: string;
  let config: string;
  const context = { threads: 2 };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-bench-test-'));
    const fleet = parseFleetConfig({
      fleet: 'bench',
      listeners: { bind: ['127.0.0.1'], tls: 18443, http: null, health: 18081, metrics: null },
      resolvers: { nameservers: ['127.0.0.1:5353'] },
      routes: [
        {
          serverName: 'bench.upstream.test',
          upstream: { port: 4443, httpPort: null },
          allowedDestinations: ['127.0.0.3/32'],
        },
      ],
      allowLoopbackDestinations: true,
    });
    const layout = gatewayLayout(dir);
    await writeGateway(dir, renderGateway(fleet, { layout, allowlistCidrs: ['127.0.0.1/32'] }));
    config = await readFile(layout.config, 'utf8');
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('inserts lines right under a section header and refuses a missing section', () => {
    const patched = addToSection('global\n  a\n\ndefaults\n  b\n', 'defaults', ['c']);
    expect(patched).toBe('global\n  a\n\ndefaults\n  c\n  b\n');
    expect(() => addToSection('global\n', 'frontend nope', ['x'])).toThrow(RangeError);
  });

  it('drops only the lines that mention a needle', () => {
    expect(dropLines('a\nb track-sc0\nc', ['track-sc0'])).toBe('a\nc');
  });

  it("repeats the TLS frontend's bind line once per thread and leaves other sections alone", () => {
    const patched = bindPerThread(config, 'frontend fe_tls', 2);
    const tls = patched.split('\nfrontend fe_tls\n')[1]!.split('\n\n')[0]!;
    expect(tls).toContain('  bind 127.0.0.1:18443 thread 1\n  bind 127.0.0.1:18443 thread 2');
    expect(patched).toContain('  bind 127.0.0.1:18081\n');
  });

  it('drops one whole section, here the resolution keep-alive the renderer adds', () => {
    expect(config).toContain('backend be_resolution_keepalive\n');
    const patched = dropSection(config, 'backend be_resolution_keepalive');
    expect(patched).not.toContain('be_resolution_keepalive');
    expect(patched).not.toContain('resolvers dns resolve-prefer');
    expect(patched).toContain('backend be_tls_passthrough\n');
    expect(patched.split('\n').length).toBeLessThan(config.split('\n').length - 5);
    expect(() => dropSection(config, 'backend nope')).toThrow(RangeError);
  });

  it("swaps the Lua ClientHello parser for HAProxy's req.ssl_sni, and says so when it cannot", () => {
    const patched = nativeSni(config);
    expect(patched).not.toContain('lua.portcullis_hello');
    expect(patched).toContain('set-var(txn.name) req.ssl_sni,lower');
    expect(() => replaceOnce('a', 'b', 'c')).toThrow(RangeError);
  });
  it('produces configurations HAProxy accepts', async () => {
    for (const variant of GATEWAY_VARIANTS) {
      if (variant.patch === undefined) continue;
      const file = join(dir, `variant-${variant.name}.cfg`);
      await writeFile(file, variant.patch(config, context));
      await expectValidConfig(file, variant.name);
    }
  });
});
