/**
 * The native load generator (`tlsload.c`), built at run time with the system C compiler and
 * OpenSSL headers, driven over stdin/stdout with the same interface as the Node.js one.
 * Preferred: it spends a fraction of the CPU a Node.js TLS client spends per connection.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BenchmarkError } from './errors.ts';
import type { ConnectionRun, LoadGenerator } from './loadgen.ts';
import { splitEvenly } from './loadgen.ts';
import type { BulkReport, TlsTarget } from './loadgen-protocol.ts';
import { median } from './stats.ts';

const SOURCE = fileURLToPath(new URL('./tlsload.c', import.meta.url));

/**
 * Compiles `tlsload.c` into `dir`. Returns the binary's path, or the compiler's complaint when
 * there is no compiler or no OpenSSL headers (the caller then falls back to Node.js workers).
 */
export async function buildNativeLoadGenerator(
  dir: string,
  compiler = process.env.CC ?? 'cc',
): Promise<{ binary: string } | { error: string }> {
  const binary = join(dir, 'tlsload');
  try {
    await promisify(execFile)(compiler, ['-O2', '-o', binary, SOURCE, '-lssl', '-lcrypto'], {
      timeout: 60_000,
    });
    return { binary };
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr;
    return { error: (typeof stderr === 'string' && stderr.trim()) || (error as Error).message };
  }
}

/** One JSON line `tlsload conn` prints on `end`. */
export interface NativeWindow {
  connections: number;
  errors: number;
  elapsedMs: number;
  cpuMicros: number;
  p50Ms: number;
  p99Ms: number;
  error: string;
}

/** Parses a `tlsload` JSON line; `undefined` for anything else. */
export function parseNativeWindow(line: string): NativeWindow | undefined {
  try {
    const value = JSON.parse(line) as Partial<NativeWindow>;
    const numbers = [
      value.connections,
      value.errors,
      value.elapsedMs,
      value.cpuMicros,
      value.p50Ms,
      value.p99Ms,
    ];
    if (!numbers.every((n) => typeof n === 'number' && Number.isFinite(n))) return undefined;
    return { ...(value as NativeWindow), error: typeof value.error === 'string' ? value.error : '' };
  } catch {
    return undefined;
  }
}

/** Adds up the workers' windows (latency: median of the medians, worst p99). */
export function combineWindows(windows: readonly NativeWindow[]): ConnectionRun {
  const connections = windows.reduce((sum, w) => sum + w.connections, 0);
  const elapsedMs = windows.reduce((sum, w) => sum + w.elapsedMs, 0) / Math.max(1, windows.length);
  const measured = windows.filter((w) => w.connections > 0);
  return {
    connections,
    errors: windows.reduce((sum, w) => sum + w.errors, 0),
    errorSamples: [...new Set(windows.map((w) => w.error).filter((e) => e !== ''))],
    elapsedMs,
    connectionsPerSecond: elapsedMs > 0 ? (connections * 1000) / elapsedMs : 0,
    generatorCpuMicros: windows.reduce((sum, w) => sum + w.cpuMicros, 0),
    latencyMs: {
      p50: median(measured.map((w) => w.p50Ms)),
      p99: measured.length === 0 ? Number.NaN : Math.max(...measured.map((w) => w.p99Ms)),
    },
  };
}

interface Worker {
  child: ChildProcess;
  lines: AsyncIterator<string>;
}

function targetArgs(target: TlsTarget): string[] {
  return [target.host, String(target.port), target.servername, target.localAddress ?? '-'];
}

async function nextLine(worker: Worker, timeoutMs: number, what: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BenchmarkError(`tlsload sent no ${what} within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    const next = await Promise.race([worker.lines.next(), timeout]);
    if (next.done) throw new BenchmarkError(`tlsload exited before its ${what}`);
    return next.value;
  } finally {
    clearTimeout(timer);
  }
}

function spawnWorker(binary: string, args: string[]): Worker {
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return { child, lines };
}

async function reap(worker: Worker): Promise<void> {
  const { child } = worker;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Runs connection windows with `workers` native processes (fresh ones per run). */
export function nativeLoadGenerator(binary: string, workers: number): LoadGenerator {
  const live = new Set<Worker>();
  return {
    kind: 'native',
    async runConnections(options) {
      const shares = splitEvenly(options.concurrency, workers).filter((n) => n > 0);
      const started = shares.map((share) =>
        spawnWorker(binary, ['conn', ...targetArgs(options.target), String(share), options.request]),
      );
      for (const worker of started) live.add(worker);
      try {
        for (const worker of started) {
          const line = await nextLine(worker, 10_000, '"ready"');
          if (line !== 'ready')
            throw new BenchmarkError(`tlsload said ${JSON.stringify(line)} instead of "ready"`);
        }
        await sleep(options.warmupMs);
        options.onBegin?.();
        for (const worker of started) worker.child.stdin?.write('begin\n');
        await sleep(options.durationMs);
        for (const worker of started) worker.child.stdin?.write('end\n');
        options.onEnd?.();
        const windows: NativeWindow[] = [];
        for (const worker of started) {
          const line = await nextLine(worker, 10_000, 'window report');
          const window = parseNativeWindow(line);
          if (window === undefined) throw new BenchmarkError(`tlsload printed ${JSON.stringify(line)}`);
          windows.push(window);
        }
        return combineWindows(windows);
      } finally {
        await Promise.all(started.map(reap));
        for (const worker of started) live.delete(worker);
      }
    },
    async runBulk(target, request, safetyMs): Promise<BulkReport> {
      const worker = spawnWorker(binary, ['bulk', ...targetArgs(target), request]);
      live.add(worker);
      try {
        const line = await nextLine(worker, safetyMs, 'bulk report');
        const value = JSON.parse(line) as {
          bytes: number;
          elapsedMs: number;
          cpuMicros: number;
          ok: boolean;
          error: string;
        };
        return {
          type: 'bulk',
          bytes: value.bytes,
          elapsedMs: value.elapsedMs,
          cpuMicros: value.cpuMicros,
          ...(value.ok ? {} : { error: value.error || 'failed' }),
        };
      } finally {
        await reap(worker);
        live.delete(worker);
      }
    },
    async close() {
      await Promise.all([...live].map(reap));
    },
  };
}
