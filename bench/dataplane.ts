/**
 * The dataplane benchmark (`npm run bench -- --suite dataplane [--quick] [--explore]`).
 *
 * Three paths to one TLS upstream, all on loopback, one at a time:
 *   direct  — client → upstream
 *   gateway — client → Portcullis HAProxy rendered from a fleet config (SNI passthrough,
 *             allowlist, destination guard, resolver = the loopback DNS responder), on the
 *             image's HAProxy release and on every release compared with it (Debian's 2.6)
 *   nginx   — client → NGINX `ssl_preread` as in the reference guidance, `allow`/`deny` lines
 * Measured: new TLS connections per second at fixed concurrency, proxy CPU per connection
 * (utime+stime from /proc), bulk throughput over one long connection, allowlist sizes.
 * Writes `bench/results/dataplane.json` (+ `.md`) and prints the ratio table. Targets are
 * reported, never asserted.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startLocalDnsServer } from '../embedded/dns-server.ts';
import { type FleetConfigInput, parseFleetConfig } from '../lib/config/index.ts';
import { createCertificateAuthority, generateKey, issueCertificate } from '../lib/pki/index.ts';
import { AllowlistLimits } from '../lib/secrets/allowlist-storage.ts';
import {
  gatewayLayout,
  type RunningHaproxy,
  renderGateway,
  startHaproxy,
  writeGateway,
} from '../proxy/haproxy/index.ts';
import { startLogSink } from '../proxy/sidecar/log-sink.ts';
import {
  type DataplanePlan,
  dataplanePlan,
  GATEWAY_VARIANTS,
  type GatewayVariant,
} from './dataplane-plan.ts';
import { benchAllowlist } from './lib/allowlist.ts';
import { describeEnvironment, type Environment } from './lib/env.ts';
import { BenchmarkError } from './lib/errors.ts';
import { type HaproxyBuild, resolveHaproxyBuilds } from './lib/haproxy-builds.ts';
import { type LoadGenerator, startNodeLoadGenerator, type TlsTarget } from './lib/loadgen.ts';
import { buildNativeLoadGenerator, nativeLoadGenerator } from './lib/native-loadgen.ts';
import { type RunningNginx, renderSniProxyNginx, renderUpstreamNginx, startNginx } from './lib/nginx.ts';
import { freePort, sharedFreePort } from './lib/ports.ts';
import { busyShare, readAllProcStats, readSystemCpu, type SystemCpu, treeTimesBetween } from './lib/proc.ts';
import { computeRatios, type DataplaneSummary, formatRatioTable, meets, type Ratio } from './lib/report.ts';
import { median } from './lib/stats.ts';

/** The name every path asks for; the DNS responder maps it to the upstream's address. */
const UPSTREAM_NAME = 'bench.upstream.test';
/** Loopback addresses; the NGINX SNI proxies take 127.0.0.10, .11, … (one per allowlist size). */
const HOSTS = {
  /** The client's source address, the gateways' listeners and their own address. */
  client: '127.0.0.1',
  upstream: '127.0.0.3',
  /** A source on no allowlist, to check that both proxies refuse it. */
  stranger: '127.0.0.9',
} as const;

const SMALL_REQUEST = `GET / HTTP/1.1\r\nHost: ${UPSTREAM_NAME}\r\nConnection: close\r\n\r\n`;
const BULK_REQUEST = `GET /bulk HTTP/1.1\r\nHost: ${UPSTREAM_NAME}\r\nConnection: close\r\n\r\n`;
const MiB = 2 ** 20;

export type PathName = 'direct' | 'gateway' | 'nginx';

/** One fixed-duration run of new connections. */
export interface ConnectionResult {
  path: PathName;
  /**
   * Gateway experiments (`--explore`); absent for the configuration the renderer produces.
   * `<name>:reference` is the rendered configuration measured right after variant `<name>`.
   */
  variant?: string;
  /** The gateway's HAProxy release (`3.2.0`); absent on the other paths. */
  haproxy?: string;
  /** Which alternating round (0, 1, …) the run belongs to. */
  round: number;
  /** Random allowlist entries besides the client's own. */
  allowlistEntries: number;
  connections: number;
  errors: number;
  errorSamples: string[];
  seconds: number;
  connectionsPerSecond: number;
  latencyMs: { p50: number; p99: number };
  /** CPU (user+system) per completed connection, µs; `proxy` is null on the direct path. */
  cpuMicrosPerConnection: { proxy: number | null; upstream: number; generator: number; harness: number };
  /** The proxy's share split: user space (rules, logs, locks) and kernel (sockets, epoll). */
  proxyUserSystemMicros: { user: number; system: number } | null;
  /** Share of both cores busy during the window (all processes on the machine). */
  machineBusy: number;
  /** Queries the DNS responder answered during the window (the proxies cache answers). */
  dnsQueries: number;
}

/** Long-connection transfers on one path (median over repeats). */
export interface BulkResult {
  path: PathName;
  variant?: string;
  haproxy?: string;
  bytes: number;
  repeats: {
    seconds: number;
    mibPerSecond: number;
    proxyCpuMicrosPerMiB: number | null;
    generatorCpuMicrosPerMiB: number;
  }[];
  mibPerSecond: number;
  proxyCpuMicrosPerMiB: number | null;
}

/** One `--explore` variant against the rendered configuration measured right after it. */
export interface VariantResult {
  name: string;
  why: string;
  /** < 1: the variant spends less proxy CPU per connection. */
  cpuPerConnectionVsRendered: number | null;
  userCpuVsRendered: number | null;
  connectionsPerSecondVsRendered: number | null;
  bulkVsRendered: number | null;
  dnsQueries: number;
  referenceDnsQueries: number;
}

export interface DataplaneResults {
  suite: 'dataplane';
  startedAt: string;
  finishedAt: string;
  mode: 'full' | 'quick';
  environment: Environment & { loadAverage1mAtEnd: number };
  plan: DataplanePlan;
  /** The HAProxy builds the gateway ran on, the image's release first. */
  gateways: Omit<HaproxyBuild, 'binary'>[];
  setup: Record<string, string>;
  /** A source on no list must be refused by both proxies (checked before measuring). */
  refusesUnlistedSource: { gateway: boolean; nginx: boolean };
  connections: ConnectionResult[];
  bulk: BulkResult[];
  variants: VariantResult[];
  ratios: (Ratio & { met: boolean | null })[];
}

interface Snapshot {
  stats: ReturnType<typeof readAllProcStats>;
  system: SystemCpu;
  harness: NodeJS.CpuUsage;
  dns: number;
  at: number;
}

interface Proxy {
  pid: number;
  target: TlsTarget;
  stop(): Promise<void>;
}

function fmt(value: number | null, digits = 0): string {
  return value === null || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);
}

/** A TLS handshake from `localAddress`; true when the proxy closed it without a handshake. */
function refused(target: TlsTarget, localAddress: string): Promise<boolean> {
  return new Promise((resolve) => {
    // tls.connect hands socket.connect options (localAddress) through; its type does not list them.
    const options: tls.ConnectionOptions & { localAddress: string } = {
      host: target.host,
      port: target.port,
      servername: target.servername,
      localAddress,
      rejectUnauthorized: false,
    };
    const socket = tls.connect(options);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 5000);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Runs the suite with command-line style arguments (`--quick`, `--explore`, `--variants a,b`, `--concurrency N`,
 * `--generator native|node`, `--out file.json`, `--help`) and returns the exit code. Writes the
 * JSON and a Markdown copy next to it; missed targets do not change the exit code.
 * @example await runDataplane(['--quick']) // ~30 s, bench/results/dataplane-quick.{json,md}
 */
export async function runDataplane(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      explore: { type: 'boolean', default: false },
      variants: { type: 'string' },
      out: { type: 'string' },
      concurrency: { type: 'string' },
      generator: { type: 'string', default: 'native' },
      haproxy: { type: 'string' },
      'compare-haproxy': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: false,
    strict: true,
  });
  if (values.help) {
    console.log(
      [
        'Usage: npm run bench -- --suite dataplane [--quick] [--explore | --variants a,b] [--concurrency N] [--out file.json]',
        '  --quick     ~30 s smoke run (shorter windows, allowlists 0 and 100 000, 64 MiB bulk)',
        '  --explore   also measure gateway variants (settings the renderer does not make by default)',
        `  --variants a,b  only these --explore variants (implies --explore): ${GATEWAY_VARIANTS.map((v) => v.name).join(', ')}`,
        '  --generator native (default: tlsload.c, built with cc; falls back to node) | node',
        "  --haproxy BIN   the gateway's HAProxy (default: the image's release, built by scripts/build-haproxy.sh once)",
        '  --compare-haproxy a,b|none  other HAProxy binaries measured beside it (default: haproxy on PATH when another release)',
      ].join('\n'),
    );
    return 0;
  }
  const plan = dataplanePlan({
    quick: values.quick,
    explore: values.explore,
    ...(values.variants !== undefined ? { variants: values.variants.split(',').filter(Boolean) } : {}),
    ...(values.concurrency !== undefined ? { concurrency: Number(values.concurrency) } : {}),
  });
  const defaultOut = fileURLToPath(
    new URL(values.quick ? './results/dataplane-quick.json' : './results/dataplane.json', import.meta.url),
  );
  const out = values.out ?? defaultOut;
  if (values.generator !== 'native' && values.generator !== 'node') {
    throw new BenchmarkError(`--generator must be native or node, got ${values.generator}`);
  }
  const builds = resolveHaproxyBuilds(
    {
      ...(values.haproxy !== undefined ? { image: values.haproxy } : {}),
      ...(values['compare-haproxy'] !== undefined ? { compare: values['compare-haproxy'] } : {}),
    },
    (text) => console.error(`[dataplane] ${text}`),
  );
  const results = await measure(plan, values.generator, builds);
  await mkdir(join(out, '..'), { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  const markdown = renderMarkdown(results);
  await writeFile(out.endsWith('.json') ? out.replace(/\.json$/, '.md') : `${out}.md`, `${markdown}\n`);
  console.log(`\n${markdown}\n\nraw figures: ${out}`);
  return 0;
}

/** The schedule of one round: every path and size once; odd rounds run it backwards (ABC CBA). */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...items] : [...items].reverse();
}

async function measure(
  plan: DataplanePlan,
  preferred: 'native' | 'node',
  builds: readonly HaproxyBuild[],
): Promise<DataplaneResults> {
  const startedAt = new Date().toISOString();
  const image = builds[0];
  if (image === undefined) throw new BenchmarkError('no HAProxy build to measure');
  const environment = describeEnvironment(builds.map((b) => b.banner).join('; '));
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-bench-'));
  const cleanups: (() => Promise<void>)[] = [];
  const log = (text: string) => console.error(`[dataplane] ${text}`);
  try {
    // The upstream's credential: ECDSA P-256, the cheapest server handshake.
    const ca = await createCertificateAuthority({ commonName: 'Portcullis Bench CA' });
    const key = await generateKey();
    const leaf = await issueCertificate(ca, {
      publicKeyPem: key.publicKeyPem,
      commonName: UPSTREAM_NAME,
      dns: [UPSTREAM_NAME],
      usage: 'server',
    });
    const certPath = join(dir, 'upstream.crt');
    const keyPath = join(dir, 'upstream.key');
    await writeFile(certPath, leaf.certificatePem + leaf.chainPem);
    await writeFile(keyPath, key.privateKeyPem, { mode: 0o600 });
    // A sparse file: reading it costs no disk I/O, so the upstream only encrypts.
    const bulkFile = join(dir, 'bulk.bin');
    const handle = await open(bulkFile, 'w');
    await handle.truncate(plan.bulkBytes);
    await handle.close();

    // One NGINX proxy per allowlist size, each on its own loopback address, all on the upstream's
    // port number (`$server_port`); every proxy runs for the whole benchmark so that the rounds
    // can alternate between them (an idle proxy costs nothing measurable).
    const nginxHosts = plan.allowlistSizes.map((_, i) => `127.0.0.${10 + i}`);
    const port = await sharedFreePort([HOSTS.upstream, ...nginxHosts]);

    const dns = await startLocalDnsServer({ records: { [UPSTREAM_NAME]: [HOSTS.upstream] }, ttl: 300 });
    cleanups.push(() => dns.close());

    const upstream = await startNginx({
      prefix: dir,
      name: 'upstream',
      config: renderUpstreamNginx({
        host: HOSTS.upstream,
        port,
        certPath,
        keyPath,
        bulkFile,
        workers: plan.upstreamWorkers,
        pidFile: join(dir, 'upstream.pid'),
      }),
      listen: { host: HOSTS.upstream, port },
    });
    cleanups.push(() => upstream.stop());

    let generator: LoadGenerator | undefined;
    let generatorNote = 'node: asked for';
    if (preferred === 'native') {
      const built = await buildNativeLoadGenerator(dir);
      if ('binary' in built) generator = nativeLoadGenerator(built.binary, plan.generatorWorkers);
      else generatorNote = `node: tlsload.c did not build (${built.error.split('\n')[0]})`;
    }
    generator ??= await startNodeLoadGenerator(plan.generatorWorkers);
    const loadGenerator = generator;
    cleanups.push(() => loadGenerator.close());
    if (generator.kind === 'node') log(`load generator: ${generatorNote}`);

    const snapshot = (): Snapshot => ({
      stats: readAllProcStats(),
      system: readSystemCpu(),
      harness: process.cpuUsage(),
      dns: dns.queries(UPSTREAM_NAME),
      at: performance.now(),
    });
    const treeCpu = (before: Snapshot, after: Snapshot, pid: number) => {
      const times = treeTimesBetween(before.stats, after.stats, pid);
      return times.user + times.system;
    };

    const connectionsRun = async (
      path: PathName,
      entries: number,
      target: TlsTarget,
      proxyPid: number | undefined,
      round: number,
      variant?: string,
      haproxy?: string,
    ): Promise<ConnectionResult> => {
      let before: Snapshot | undefined;
      let after: Snapshot | undefined;
      const run = await loadGenerator.runConnections({
        target,
        concurrency: plan.concurrency,
        request: SMALL_REQUEST,
        warmupMs: plan.warmupMs,
        durationMs: plan.durationMs,
        onBegin: () => {
          before = snapshot();
        },
        onEnd: () => {
          after = snapshot();
        },
      });
      if (before === undefined || after === undefined)
        throw new BenchmarkError('no CPU samples around the window');
      const n = Math.max(1, run.connections);
      const proxyTimes =
        proxyPid === undefined ? null : treeTimesBetween(before.stats, after.stats, proxyPid);
      const harnessMicros =
        after.harness.user + after.harness.system - (before.harness.user + before.harness.system);
      const result: ConnectionResult = {
        path,
        ...(variant !== undefined ? { variant } : {}),
        ...(haproxy !== undefined ? { haproxy } : {}),
        round,
        allowlistEntries: entries,
        connections: run.connections,
        errors: run.errors,
        errorSamples: run.errorSamples,
        seconds: run.elapsedMs / 1000,
        connectionsPerSecond: run.connectionsPerSecond,
        latencyMs: run.latencyMs,
        cpuMicrosPerConnection: {
          proxy: proxyTimes === null ? null : (proxyTimes.user + proxyTimes.system) / n,
          upstream: treeCpu(before, after, upstream.pid) / n,
          generator: run.generatorCpuMicros / n,
          harness: harnessMicros / n,
        },
        proxyUserSystemMicros:
          proxyTimes === null ? null : { user: proxyTimes.user / n, system: proxyTimes.system / n },
        machineBusy: busyShare(before.system, after.system),
        dnsQueries: after.dns - before.dns,
      };
      log(
        `${label(result)} entries=${entries}: ${fmt(result.connectionsPerSecond)} conn/s, ` +
          `proxy ${fmt(result.cpuMicrosPerConnection.proxy)} µs/conn, upstream ${fmt(result.cpuMicrosPerConnection.upstream)}, ` +
          `generator ${fmt(result.cpuMicrosPerConnection.generator)}, busy ${fmt(result.machineBusy * 100)}%, ` +
          `DNS queries ${result.dnsQueries}, errors ${result.errors}${result.errors > 0 ? ` (${result.errorSamples.join('; ')})` : ''}`,
      );
      if (run.connections === 0) {
        throw new BenchmarkError(`${path}: no connection completed (${run.errorSamples.join('; ')})`);
      }
      return result;
    };

    const bulkOnce = async (path: PathName, target: TlsTarget, proxyPid: number | undefined) => {
      const before = snapshot();
      const report = await loadGenerator.runBulk(target, BULK_REQUEST, 120_000);
      const after = snapshot();
      if (report.error !== undefined || report.bytes < plan.bulkBytes) {
        throw new BenchmarkError(`${path} bulk: ${report.error ?? `only ${report.bytes} bytes`}`);
      }
      const mib = report.bytes / MiB;
      return {
        seconds: report.elapsedMs / 1000,
        mibPerSecond: mib / (report.elapsedMs / 1000),
        proxyCpuMicrosPerMiB: proxyPid === undefined ? null : treeCpu(before, after, proxyPid) / mib,
        generatorCpuMicrosPerMiB: report.cpuMicros / mib,
      };
    };

    const bulkResult = (
      path: PathName,
      rows: BulkResult['repeats'],
      variant?: string,
      haproxy?: string,
    ): BulkResult => {
      const proxyCpu = rows.map((r) => r.proxyCpuMicrosPerMiB).filter((v): v is number => v !== null);
      const result: BulkResult = {
        path,
        ...(variant !== undefined ? { variant } : {}),
        ...(haproxy !== undefined ? { haproxy } : {}),
        bytes: plan.bulkBytes,
        repeats: rows,
        mibPerSecond: median(rows.map((r) => r.mibPerSecond)),
        proxyCpuMicrosPerMiB: proxyCpu.length === 0 ? null : median(proxyCpu),
      };
      log(
        `${label(result)} bulk: ${fmt(result.mibPerSecond)} MiB/s (median of ${rows.length}), ` +
          `proxy ${fmt(result.proxyCpuMicrosPerMiB)} µs/MiB`,
      );
      return result;
    };

    const startGateway = async (
      entries: number,
      variant: GatewayVariant | undefined,
      build: HaproxyBuild = image,
    ): Promise<Proxy> => {
      const root = join(
        dir,
        `gateway-${build.version}-${entries}-${variant?.name ?? 'rendered'}-${randomBytes(3).toString('hex')}`,
      );
      const layout = gatewayLayout(root);
      const tlsPort = await freePort(HOSTS.client);
      const healthPort = await freePort(HOSTS.client);
      const input: FleetConfigInput = {
        fleet: 'bench',
        listeners: { bind: [HOSTS.client], tls: tlsPort, http: null, health: healthPort, metrics: null },
        resolvers: { nameservers: [dns.address], holdValidMs: plan.resolverHoldMs },
        routes: [
          {
            serverName: UPSTREAM_NAME,
            upstream: { port, httpPort: null },
            allowedDestinations: [`${HOSTS.upstream}/32`],
          },
        ],
        // The upstream is on loopback; the gateway's own address stays denied (ownAddresses).
        allowLoopbackDestinations: true,
        allowlist: { maxEntries: AllowlistLimits.maxEntries },
        ...(variant?.config ?? {}),
        // Every connection comes from one address: the per-source share would refuse the load.
        limits: {
          ...variant?.config?.limits,
          perSource: { maxConnections: null, maxConnectionRate: null },
        },
      };
      const config = parseFleetConfig(input, 'bench fleet config');
      const rendered = renderGateway(config, {
        layout,
        ownAddresses: [HOSTS.client],
        allowlistCidrs: benchAllowlist(entries, `${HOSTS.client}/32`),
      });
      if (variant?.patch !== undefined) {
        const file = rendered.files['haproxy.cfg'];
        if (file === undefined) throw new BenchmarkError('rendered gateway has no haproxy.cfg');
        file.content = variant.patch(file.content, {
          threads: config.limits.threads ?? plan.proxyWorkers,
        });
      }
      await writeGateway(root, rendered);
      // The access log's path in a task: HAProxy's ring → the sidecar's sink → its stdout (a
      // pipe to the log driver there; /dev/null here, written with the same backpressure).
      const sinkOutput = createWriteStream('/dev/null');
      const sink = await startLogSink({ path: layout.logSocket, output: sinkOutput });
      cleanups.push(async () => {
        await sink.close();
        sinkOutput.destroy();
      });
      const haproxy: RunningHaproxy = await startHaproxy({
        layout,
        binary: build.binary,
        readyTimeoutMs: 30_000,
      });
      try {
        await haproxy.waitReady();
      } catch (error) {
        await haproxy.stop();
        throw error;
      }
      const stop = async () => {
        await haproxy.stop();
        await rm(root, { recursive: true, force: true });
      };
      cleanups.push(stop);
      return {
        pid: haproxy.pid,
        target: { host: HOSTS.client, port: tlsPort, servername: UPSTREAM_NAME, localAddress: HOSTS.client },
        stop,
      };
    };

    const startNginxProxy = async (entries: number, host: string): Promise<Proxy> => {
      const nginx: RunningNginx = await startNginx({
        prefix: dir,
        name: `sni-proxy-${entries}`,
        config: renderSniProxyNginx({
          host,
          port,
          resolver: dns.address,
          resolverValidSeconds: Math.max(1, Math.round(plan.resolverHoldMs / 1000)),
          allowlist: benchAllowlist(entries, HOSTS.client),
          workers: plan.proxyWorkers,
          pidFile: join(dir, `sni-proxy-${entries}.pid`),
        }),
        listen: { host, port },
      });
      cleanups.push(() => nginx.stop());
      return {
        pid: nginx.pid,
        target: { host, port, servername: UPSTREAM_NAME, localAddress: HOSTS.client },
        stop: () => nginx.stop(),
      };
    };

    interface Leg {
      path: PathName;
      entries: number;
      target: TlsTarget;
      pid: number | undefined;
      variant?: string;
      haproxy?: string;
    }
    const direct: Leg = {
      path: 'direct',
      entries: 0,
      target: { host: HOSTS.upstream, port, servername: UPSTREAM_NAME, localAddress: HOSTS.client },
      pid: undefined,
    };
    const legs: Leg[] = [direct];
    for (const [i, entries] of plan.allowlistSizes.entries()) {
      for (const build of builds) {
        const gateway = await startGateway(entries, undefined, build);
        legs.push({
          path: 'gateway',
          entries,
          target: gateway.target,
          pid: gateway.pid,
          haproxy: build.version,
        });
      }
      const nginx = await startNginxProxy(entries, nginxHosts[i]!);
      legs.push({ path: 'nginx', entries, target: nginx.target, pid: nginx.pid });
    }
    const smallest = plan.allowlistSizes[0] ?? 0;
    const baseline = (path: PathName, haproxy = path === 'gateway' ? image.version : undefined) =>
      legs.find(
        (l) => l.path === path && l.entries === smallest && l.variant === undefined && l.haproxy === haproxy,
      )!;
    // The sizing alternative (one HAProxy thread) runs in the rounds too, so that the ratio
    // table can show where it lands next to the rendered gateway (see README).
    const proposed = GATEWAY_VARIANTS.find((v) => v.name === plan.proposedVariant);
    const largest = plan.allowlistSizes[plan.allowlistSizes.length - 1] ?? 0;
    if (proposed !== undefined) {
      for (const entries of new Set([smallest, largest])) {
        const gateway = await startGateway(entries, proposed);
        legs.push({
          path: 'gateway',
          entries,
          target: gateway.target,
          pid: gateway.pid,
          variant: proposed.name,
          haproxy: image.version,
        });
      }
    }
    const refusesUnlistedSource = {
      gateway: (
        await Promise.all(builds.map((b) => refused(baseline('gateway', b.version).target, HOSTS.stranger)))
      ).every(Boolean),
      nginx: await refused(baseline('nginx').target, HOSTS.stranger),
    };
    log(
      `upstream nginx ${HOSTS.upstream}:${port}; ${plan.generatorWorkers} ${loadGenerator.kind} generator workers, ` +
        `concurrency ${plan.concurrency}; ${plan.rounds} rounds over ${legs.length} legs`,
    );

    // Alternating rounds (ABC… then …CBA): the machine's drift (other work, thermal, caches)
    // lands on every path alike instead of on whichever ran last.
    const connections: ConnectionResult[] = [];
    for (let round = 0; round < plan.rounds; round++) {
      for (const leg of roundOrder(legs, round)) {
        connections.push(
          await connectionsRun(leg.path, leg.entries, leg.target, leg.pid, round, leg.variant, leg.haproxy),
        );
      }
    }
    // The --explore runs below reuse variant names; the proposal's figures come from the rounds.
    const roundRuns = [...connections];
    const bulkLegs = [direct, ...builds.map((b) => baseline('gateway', b.version)), baseline('nginx')];
    const bulkRows = new Map<Leg, BulkResult['repeats']>(bulkLegs.map((leg) => [leg, []]));
    for (let repeat = 0; repeat < plan.bulkRepeats; repeat++) {
      for (const leg of roundOrder(bulkLegs, repeat)) {
        bulkRows.get(leg)!.push(await bulkOnce(leg.path, leg.target, leg.pid));
      }
    }
    const bulk = bulkLegs.map((leg) => bulkResult(leg.path, bulkRows.get(leg)!, undefined, leg.haproxy));

    // Each variant runs right next to the rendered configuration, so the comparison is between
    // neighbours in time rather than between the start and the end of the benchmark.
    const variants: VariantResult[] = [];
    if (plan.explore) {
      const rendered = baseline('gateway');
      for (const variant of GATEWAY_VARIANTS.filter((v) => plan.variants.includes(v.name))) {
        const gateway = await startGateway(smallest, variant);
        try {
          const tried = await connectionsRun(
            'gateway',
            smallest,
            gateway.target,
            gateway.pid,
            0,
            variant.name,
            image.version,
          );
          const reference = await connectionsRun(
            'gateway',
            smallest,
            rendered.target,
            rendered.pid,
            0,
            `${variant.name}:reference`,
            image.version,
          );
          const triedBulk = await bulkOnce('gateway', gateway.target, gateway.pid);
          const referenceBulk = await bulkOnce('gateway', rendered.target, rendered.pid);
          connections.push(tried, reference);
          bulk.push(
            bulkResult('gateway', [triedBulk], variant.name, image.version),
            bulkResult('gateway', [referenceBulk], `${variant.name}:reference`, image.version),
          );
          variants.push({
            name: variant.name,
            why: variant.why,
            cpuPerConnectionVsRendered: ratioOf(
              tried.cpuMicrosPerConnection.proxy,
              reference.cpuMicrosPerConnection.proxy,
            ),
            userCpuVsRendered: ratioOf(
              tried.proxyUserSystemMicros?.user,
              reference.proxyUserSystemMicros?.user,
            ),
            connectionsPerSecondVsRendered: ratioOf(
              tried.connectionsPerSecond,
              reference.connectionsPerSecond,
            ),
            bulkVsRendered: ratioOf(triedBulk.mibPerSecond, referenceBulk.mibPerSecond),
            dnsQueries: tried.dnsQueries,
            referenceDnsQueries: reference.dnsQueries,
          });
        } finally {
          await gateway.stop();
        }
      }
    }

    const summary = summarise(connections, bulk, image.version);
    const proposedRuns = (entries: number) =>
      roundRuns.filter((r) => r.variant === plan.proposedVariant && r.allowlistEntries === entries);
    const proposedCpu = (entries: number) =>
      mean(proposedRuns(entries).map((r) => r.cpuMicrosPerConnection.proxy ?? Number.NaN));
    const proposal =
      proposed === undefined || proposedRuns(smallest).length === 0
        ? undefined
        : {
            name: proposed.name,
            cpuMicrosPerConnection: proposedCpu(smallest),
            connectionsPerSecond: mean(proposedRuns(smallest).map((r) => r.connectionsPerSecond)),
            cpuMicrosPerConnectionLargest: proposedCpu(largest),
          };
    const ratios = computeRatios(summary, smallest, largest, proposal).map((ratio) => ({
      ...ratio,
      met: meets(ratio) ?? null,
    }));
    return {
      suite: 'dataplane',
      startedAt,
      finishedAt: new Date().toISOString(),
      mode: plan.quick ? 'quick' : 'full',
      environment: { ...environment, loadAverage1mAtEnd: loadavg()[0] ?? 0 },
      plan,
      gateways: builds.map(({ binary: _binary, ...build }) => build),
      setup: {
        upstream: `nginx ${plan.upstreamWorkers} workers, TLS 1.3, ECDSA P-256, no session cache/tickets, return 200 / sparse file`,
        generator:
          loadGenerator.kind === 'native'
            ? `${plan.generatorWorkers} tlsload processes (C, epoll, OpenSSL), full TLS 1.3 handshakes, certificate not verified`
            : `${plan.generatorWorkers} Node.js processes, node:tls, full handshakes, certificate not verified (${generatorNote})`,
        gateway:
          `renderGateway(parseFleetConfig(…)) + startHaproxy (image args); per-source limits off (one client address); ` +
          `access log through the ring to the sidecar's log sink as in production (the sink runs in the harness process: its CPU is in the harness column); ` +
          `HAProxy ${builds.map((b) => `${b.version} (${b.role})`).join(', ')}`,
        nginx:
          'stream { ssl_preread; proxy_pass $ssl_preread_server_name:$server_port; resolver; allow …; deny all; }',
        allowlist: 'random /32 and /24 IPv4 entries (seeded) + the client in the middle of the list',
        schedule: `${plan.rounds} alternating rounds over every path and size; bulk repeats alternate too`,
      },
      refusesUnlistedSource,
      connections,
      bulk,
      variants,
      ratios,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) => log(`cleanup: ${String(error)}`));
    }
    await rm(dir, { recursive: true, force: true });
  }
}

function ratioOf(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return a / b;
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * Collapses the runs of the rendered configuration into the per-path figures the ratios need:
 * the mean over the alternating rounds (the `--explore` variants are left out). Gateway runs on
 * `imageHaproxy` (or with no release recorded) are the gateway; runs on any other release go to
 * `comparedGateways` under that release.
 */
export function summarise(
  connections: readonly ConnectionResult[],
  bulk: readonly BulkResult[],
  imageHaproxy?: string,
): DataplaneSummary {
  const main = (r: { variant?: string }) => r.variant === undefined;
  const onImage = (r: { haproxy?: string }) =>
    r.haproxy === undefined || imageHaproxy === undefined || r.haproxy === imageHaproxy;
  const path = (name: PathName, release: (r: { haproxy?: string }) => boolean = () => true) => {
    const chosen = (r: ConnectionResult | BulkResult) => r.path === name && main(r) && release(r);
    const runs = connections.filter(chosen);
    const bySize: DataplaneSummary['gateway']['bySize'] = {};
    for (const entries of new Set(runs.map((r) => r.allowlistEntries))) {
      const same = runs.filter((r) => r.allowlistEntries === entries);
      bySize[entries] = {
        connectionsPerSecond: mean(same.map((r) => r.connectionsPerSecond)),
        cpuMicrosPerConnection: mean(same.map((r) => r.cpuMicrosPerConnection.proxy ?? Number.NaN)),
      };
    }
    return {
      bySize,
      connectionsPerSecond: mean(runs.map((r) => r.connectionsPerSecond)),
      bulkMiBps: bulk.find(chosen)?.mibPerSecond ?? Number.NaN,
    };
  };
  const direct = path('direct');
  const compared = new Set(
    connections
      .filter((r) => r.path === 'gateway' && r.haproxy !== undefined && !onImage(r))
      .map((r) => r.haproxy!),
  );
  return {
    direct: { connectionsPerSecond: direct.connectionsPerSecond, bulkMiBps: direct.bulkMiBps },
    gateway: path('gateway', onImage),
    nginx: path('nginx'),
    ...(imageHaproxy !== undefined ? { gatewayRelease: imageHaproxy } : {}),
    comparedGateways: Object.fromEntries(
      [...compared].map((release) => {
        const { bySize, bulkMiBps } = path('gateway', (r) => r.haproxy === release);
        return [release, { bySize, bulkMiBps }];
      }),
    ),
  };
}

/** `gateway (HAProxy 3.2.0, threads-1)`, `nginx`, … */
function label(r: { path: string; variant?: string; haproxy?: string }): string {
  const parts = [r.haproxy === undefined ? undefined : `HAProxy ${r.haproxy}`, r.variant].filter(Boolean);
  return parts.length === 0 ? r.path : `${r.path} (${parts.join(', ')})`;
}

/** Raw figures and the ratio table, as printed and as written next to the JSON. */
export function renderMarkdown(results: DataplaneResults): string {
  const connectionRows = results.connections.map((r) => {
    const split = r.proxyUserSystemMicros;
    return (
      `| ${label(r)} | ${r.round} | ${r.allowlistEntries} | ${fmt(r.connectionsPerSecond)} | ${fmt(r.cpuMicrosPerConnection.proxy)} | ` +
      `${split === null ? 'n/a' : `${fmt(split.user)} / ${fmt(split.system)}`} | ` +
      `${fmt(r.cpuMicrosPerConnection.upstream)} | ${fmt(r.cpuMicrosPerConnection.generator)} | ` +
      `${fmt(r.latencyMs.p50, 1)} / ${fmt(r.latencyMs.p99, 1)} | ${fmt(r.machineBusy * 100)}% | ${r.errors} | ${r.dnsQueries} |`
    );
  });
  const bulkRows = results.bulk.map(
    (b) =>
      `| ${label(b)} | ${fmt(b.bytes / MiB)} | ${fmt(b.mibPerSecond)} | ${fmt(b.proxyCpuMicrosPerMiB)} | ${b.repeats.length} |`,
  );
  const times = (value: number | null) => (value === null ? 'n/a' : `${value.toFixed(2)}×`);
  const variantRows = results.variants.map(
    (v) =>
      `| ${v.name} | ${times(v.cpuPerConnectionVsRendered)} | ${times(v.userCpuVsRendered)} | ` +
      `${times(v.connectionsPerSecondVsRendered)} | ${times(v.bulkVsRendered)} | ${v.dnsQueries} / ${v.referenceDnsQueries} |`,
  );
  const env = results.environment;
  return [
    `## Dataplane benchmark (${results.mode}, ${results.startedAt})`,
    '',
    `${env.cores} × ${env.cpuModel}, ${env.kernel}, ${env.haproxy.replace(/ - https[^;]*/g, '')}, ${env.nginx}, ` +
      `${env.openssl}, Node.js ${env.node}; load average ${env.loadAverage1m.toFixed(1)} → ${env.loadAverage1mAtEnd.toFixed(1)}; ` +
      `perf instructions: ${env.perfInstructions}. Concurrency ${results.plan.concurrency}, ` +
      `${results.plan.durationMs / 1000} s windows after ${results.plan.warmupMs / 1000} s warm-up, ` +
      `${results.plan.rounds} alternating rounds. ` +
      `Unlisted source refused: gateway ${results.refusesUnlistedSource.gateway}, nginx ${results.refusesUnlistedSource.nginx}.`,
    '',
    '| path | round | allowlist | conn/s | proxy µs/conn | proxy user / sys | upstream µs/conn | generator µs/conn | latency p50 / p99 ms | machine busy | errors | DNS queries |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...connectionRows,
    '',
    '| path | MiB | MiB/s (median) | proxy µs/MiB | repeats |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...bulkRows,
    ...(variantRows.length === 0
      ? []
      : [
          '',
          'Gateway variants (`--explore`), each against the rendered configuration measured right after it:',
          '',
          '| variant | proxy CPU/conn | proxy user CPU/conn | conn/s | bulk | DNS queries (variant / rendered) |',
          '| --- | ---: | ---: | ---: | ---: | ---: |',
          ...variantRows,
        ]),
    '',
    formatRatioTable(results.ratios),
  ].join('\n');
}
