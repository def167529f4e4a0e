/** What the benchmark ran on: versions, cores, load. Written into every result file. */
import { spawnSync } from 'node:child_process';
import os from 'node:os';

export interface Environment {
  node: string;
  haproxy: string;
  nginx: string;
  openssl: string;
  kernel: string;
  cpuModel: string;
  cores: number;
  memoryMiB: number;
  /** 1-minute load average at the start: other work on the machine shows up here. */
  loadAverage1m: number;
  /** Whether `perf stat -e instructions` works here (it often does not in VMs and containers). */
  perfInstructions: 'available' | 'unsupported' | 'missing';
}

function firstLine(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 5000 });
  const text = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
  return result.error !== undefined ? 'missing' : (text.split('\n')[0] ?? '');
}

/** Reads `perf stat` output: counters it cannot read are printed as `<not supported>`. */
export function perfStatus(output: string | undefined): Environment['perfInstructions'] {
  if (output === undefined) return 'missing';
  if (/<not (supported|counted)>/.test(output) || !/instructions/.test(output)) return 'unsupported';
  return 'available';
}

/** @param haproxy what the gateway ran on (its `-v` banners); default `haproxy -v` from PATH. */
export function describeEnvironment(haproxy?: string): Environment {
  // perf prints its counters on stderr.
  const perf = spawnSync('perf', ['stat', '-e', 'instructions', 'true'], { encoding: 'utf8', timeout: 5000 });
  const cpus = os.cpus();
  return {
    node: process.version,
    haproxy: haproxy ?? firstLine('haproxy', ['-v']),
    nginx: firstLine('nginx', ['-v']),
    openssl: firstLine('openssl', ['version']),
    kernel: `${os.type()} ${os.release()}`,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    loadAverage1m: os.loadavg()[0] ?? 0,
    perfInstructions: perfStatus(perf.error !== undefined ? undefined : `${perf.stdout}${perf.stderr}`),
  };
}
