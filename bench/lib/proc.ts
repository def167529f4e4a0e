/**
 * CPU accounting from procfs. `perf` counters are often unavailable in containers and VMs
 * (`perf stat -e instructions true` prints `<not supported>`), while `/proc/<pid>/stat` always
 * has user and system time per process (threads included), in clock ticks.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { BenchmarkError } from './errors.ts';

/** The fields of `/proc/<pid>/stat` the benchmark uses. */
export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** User time, clock ticks, all threads of the process. */
  utime: number;
  /** System time, clock ticks, all threads of the process. */
  stime: number;
}

/**
 * Parses one `/proc/<pid>/stat` line. `comm` may hold spaces and parentheses, so the fields are
 * counted from the last `)`. Returns `undefined` for text that is not a stat line.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 1 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  // After ")": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
  // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15) …
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  if (rest.length < 13 || !Number.isInteger(pid)) return undefined;
  const ppid = Number(rest[1]);
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (![ppid, utime, stime].every(Number.isSafeInteger)) return undefined;
  return { pid, comm: text.slice(open + 1, close), state: rest[0]!, ppid, utime, stime };
}

/** Aggregate CPU counters of `/proc/stat`'s first line, in clock ticks. */
export interface SystemCpu {
  /** Every state summed (user nice system idle iowait irq softirq steal). */
  total: number;
  /** idle + iowait. */
  idle: number;
}

/** Parses the `cpu ` line of `/proc/stat` (guest time is already part of user time and is not added). */
export function parseSystemCpu(text: string): SystemCpu | undefined {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) return undefined;
  const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (values.length < 4 || values.some((v) => !Number.isSafeInteger(v))) return undefined;
  const total = values.reduce((sum, v) => sum + v, 0);
  return { total, idle: (values[3] ?? 0) + (values[4] ?? 0) };
}

/** Busy share of the machine between two `/proc/stat` samples, 0…1 (1 = every core busy). */
export function busyShare(before: SystemCpu, after: SystemCpu): number {
  const total = after.total - before.total;
  if (total <= 0) return 0;
  return Math.min(1, Math.max(0, 1 - (after.idle - before.idle) / total));
}

/** All descendants of `root` (and `root` itself) in a list of stat entries. */
export function processTree(stats: readonly ProcStat[], root: number): ProcStat[] {
  const children = new Map<number, ProcStat[]>();
  for (const stat of stats) {
    const list = children.get(stat.ppid) ?? [];
    list.push(stat);
    children.set(stat.ppid, list);
  }
  const out: ProcStat[] = [];
  const self = stats.find((s) => s.pid === root);
  if (self !== undefined) out.push(self);
  const queue = [root];
  const seen = new Set<number>([root]);
  // Bounded by the number of entries: each pid is visited once.
  while (queue.length > 0) {
    const pid = queue.shift()!;
    for (const child of children.get(pid) ?? []) {
      if (seen.has(child.pid)) continue;
      seen.add(child.pid);
      out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}

let clockTicksPerSecond: number | undefined;

/** `sysconf(_SC_CLK_TCK)`: 100 on every common Linux build. */
export function clockTicks(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      clockTicksPerSecond = Number.isInteger(value) && value > 0 ? value : 100;
    } catch {
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** Every process's stat line that could be read (processes may exit while we look). */
export function readAllProcStats(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = parseProcStat(readFileSync(`/proc/${name}/stat`, 'utf8'));
      if (stat !== undefined) out.push(stat);
    } catch {
      // exited between readdir and read
    }
  }
  return out;
}

/** User and system CPU (µs) of the tree under `root` spent between two full stat listings. */
export function treeTimesBetween(
  before: readonly ProcStat[],
  after: readonly ProcStat[],
  root: number,
): { user: number; system: number } {
  const tick = 1e6 / clockTicks();
  const earlier = new Map(processTree(before, root).map((s) => [s.pid, s]));
  let user = 0;
  let system = 0;
  for (const stat of processTree(after, root)) {
    const old = earlier.get(stat.pid);
    user += (stat.utime - (old?.utime ?? 0)) * tick;
    system += (stat.stime - (old?.stime ?? 0)) * tick;
  }
  return { user, system };
}

/** Reads `/proc/stat`'s aggregate line. */
export function readSystemCpu(): SystemCpu {
  const parsed = parseSystemCpu(readFileSync('/proc/stat', 'utf8'));
  if (parsed === undefined) throw new BenchmarkError('cannot parse /proc/stat');
  return parsed;
}
