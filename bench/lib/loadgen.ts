/**
 * The load-generator interface, and its Node.js implementation: a few forked processes (one per
 * core by default) that each run a share of the connection loops. It is the fallback when
 * `tlsload.c` cannot be built (native-loadgen.ts): a Node.js TLS client spends several times the
 * CPU per connection that the proxies do. Either way the generator's own CPU is measured and
 * reported next to the proxies'.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { BenchmarkError } from './errors.ts';
import type { BulkReport, FromWorker, TlsTarget, ToWorker, WindowReport } from './loadgen-protocol.ts';
import { percentile } from './stats.ts';

export type { TlsTarget } from './loadgen-protocol.ts';

export interface ConnectionRunOptions {
  target: TlsTarget;
  /** Connections in flight at any time, split across the workers. */
  concurrency: number;
  /** Bytes written after the handshake; the server must answer `HTTP/1.1 200` and close. */
  request: string;
  warmupMs: number;
  durationMs: number;
  /** Called right before the measured window starts and right after it ends (sample CPU there). */
  onBegin?: () => void;
  onEnd?: () => void;
}

export interface ConnectionRun {
  connections: number;
  errors: number;
  errorSamples: string[];
  /** Window length as the workers saw it (mean), ms. */
  elapsedMs: number;
  connectionsPerSecond: number;
  /** CPU of every generator worker during the window, µs. */
  generatorCpuMicros: number;
  latencyMs: { p50: number; p99: number };
}

export interface LoadGenerator {
  /** `native`: tlsload.c processes; `node`: forked Node.js workers (the fallback). */
  readonly kind: 'native' | 'node';
  runConnections(options: ConnectionRunOptions): Promise<ConnectionRun>;
  /** One long connection on the first worker (the others idle). */
  runBulk(target: TlsTarget, request: string, safetyMs: number): Promise<BulkReport>;
  close(): Promise<void>;
}

function waitFor<T extends FromWorker['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
): Promise<Extract<FromWorker, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new BenchmarkError(`load generator ${child.pid} sent no '${type}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (message: FromWorker) => {
      if (message.type !== type) return;
      cleanup();
      resolve(message as Extract<FromWorker, { type: T }>);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new BenchmarkError(`load generator ${child.pid} exited (${code}) while waiting for '${type}'`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Splits `total` into `parts` integers that differ by at most one. */
export function splitEvenly(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total % parts ? 1 : 0));
}

/** Forks `workers` Node.js generator processes and waits until each is ready. */
export async function startNodeLoadGenerator(workers: number): Promise<LoadGenerator> {
  const children: ChildProcess[] = [];
  const script = new URL('./loadgen-worker.ts', import.meta.url);
  try {
    for (let i = 0; i < workers; i++) {
      // No inherited execArgv: the benchmark's own flags (--inspect, --input-type…) do not apply here.
      const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
      children.push(child);
    }
    await Promise.all(children.map((child) => waitFor(child, 'ready', 10_000)));
  } catch (error) {
    for (const child of children) child.kill('SIGKILL');
    throw error;
  }
  const post = (child: ChildProcess, message: ToWorker) => child.send(message);

  return {
    kind: 'node',
    async runConnections(options) {
      const shares = splitEvenly(options.concurrency, children.length);
      const safetyMs = options.warmupMs + options.durationMs + 30_000;
      const active = children.filter((_, i) => (shares[i] ?? 0) > 0);
      const started = active.map((child) => waitFor(child, 'started', 10_000));
      children.forEach((child, i) => {
        if ((shares[i] ?? 0) > 0) {
          post(child, {
            type: 'connections',
            target: options.target,
            concurrency: shares[i]!,
            request: options.request,
            safetyMs,
          });
        }
      });
      await Promise.all(started);
      await sleep(options.warmupMs);
      options.onBegin?.();
      for (const child of active) post(child, { type: 'begin' });
      await sleep(options.durationMs);
      const reports = active.map((child) => waitFor(child, 'window', 10_000));
      const stopped = active.map((child) => waitFor(child, 'stopped', 20_000));
      for (const child of active) post(child, { type: 'end' });
      options.onEnd?.();
      const windows: WindowReport[] = await Promise.all(reports);
      await Promise.all(stopped);
      const connections = windows.reduce((sum, w) => sum + w.connections, 0);
      const elapsedMs = windows.reduce((sum, w) => sum + w.elapsedMs, 0) / Math.max(1, windows.length);
      const latencies = windows.flatMap((w) => w.latenciesMs).sort((a, b) => a - b);
      return {
        connections,
        errors: windows.reduce((sum, w) => sum + w.errors, 0),
        errorSamples: [...new Set(windows.flatMap((w) => w.errorSamples))].slice(0, 5),
        elapsedMs,
        connectionsPerSecond: elapsedMs > 0 ? (connections * 1000) / elapsedMs : 0,
        generatorCpuMicros: windows.reduce((sum, w) => sum + w.cpuMicros, 0),
        latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) },
      };
    },
    async runBulk(target, request, safetyMs) {
      const child = children[0]!;
      const done = waitFor(child, 'bulk', safetyMs + 10_000);
      post(child, { type: 'bulk', target, request, safetyMs });
      return done;
    },
    async close() {
      await Promise.all(
        children.map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.disconnect();
          const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
          await exited;
          clearTimeout(timer);
        }),
      );
    },
  };
}
