/**
 * The rotation benchmark (`npm run bench -- --suite rotation`): for each fleet size, the demo's
 * local world (real HAProxy + real sidecar per task, the real rotate-certificates state machine
 * through aws-local-stepfunctions) under traffic, and what it costs:
 * - seconds from the CA issuing the new certificate to every task serving it (first seen by the
 *   workflow's verification handshake or by client traffic);
 * - failed handshakes and dropped long-lived connections during the rotation;
 * - sidecar CPU (utime+stime from /proc/<pid>/stat over the rotation window) and memory (VmRSS)
 *   per task.
 * - Step Functions' limits: the most history events of any one execution and the largest state
 *   payload, as the local runner counts them (limits 25 000 and 262 144 bytes).
 * Targets (reported, never asserted): 50 tasks under 10 s, 0 failures.
 * `--simulated` sizes run the same machines over an in-process fleet (the real local store and
 * CA, tasks as records in memory) with many certificates, for the shape at fleet scale.
 * Next to the JSON it draws a PNG dot chart of each task's seconds to serving, one series per
 * fleet size (`--chart-only` redraws it from an existing JSON).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import {
  demoTraffic,
  firstServed,
  measureRotation,
  rotateDemoCertificate,
  round,
  servedSerials,
  sleep,
  startDemoEnvironment,
} from '../cli/demo/environment.ts';
import type { TrafficGenerator } from '../embedded/traffic.ts';
import { type ExecutionStats, runStateMachine, statsTotals } from '../lib/local/state-machine-runner.ts';
import { createSimulatedFixture } from '../test/support/simulated-fleet.ts';
import { type DotChartSpec, dotChartPng } from './lib/chart.ts';
import { describeEnvironment, type Environment } from './lib/env.ts';
import { BenchmarkError } from './lib/errors.ts';
import { clockTicks, parseProcStat } from './lib/proc.ts';

const RESULTS = join(dirname(fileURLToPath(import.meta.url)), 'results', 'rotation.json');

/** The figures of one fleet size. */
export interface RotationRun {
  tasks: number;
  fleetStartSeconds: number;
  status: string;
  error?: string;
  /** Issuance → every task serving the new serial; null when not every task got there. */
  seconds: number | null;
  executionSeconds: number;
  tasksServingNew: number;
  /**
   * Per task, in the fleet's order (task-1, task-2, …): seconds from issuance to the task first
   * serving the new serial; null when it was never seen serving it.
   */
  perTask: { taskId: string; seconds: number | null }[];
  handshakes: number;
  failedHandshakes: number;
  longLived: number;
  droppedLongLived: number;
  failures: string[];
  /** Over the rotation window (`windowSeconds`), per sidecar process. */
  sidecar: {
    cpuSeconds: Summary;
    /** CPU seconds ÷ window seconds × 100 (100 = one core busy all the time). */
    cpuPercent: Summary;
    rssMiB: Summary;
  };
  windowSeconds: number;
  /** The most history events of any one execution (parent or child), as the local runner counts them. */
  historyEvents?: number;
  /** The largest state input/output or task result of any execution, UTF-8 bytes. */
  largestPayloadBytes?: number;
}

/** One run over the in-process fleet: the execution's shape at scale. */
export interface SimulatedRotationRun {
  tasks: number;
  certificates: number;
  status: string;
  error?: string;
  executionSeconds: number;
  executions: number;
  historyEvents: number;
  historyExecution: string;
  largestPayloadBytes: number;
  largestPayloadState: string;
}

/** The JSON file the suite writes. */
export interface RotationResults {
  suite: 'rotation';
  /** When the run ended (ISO 8601). */
  at: string;
  environment: Environment;
  runs: RotationRun[];
  simulated?: SimulatedRotationRun[];
}

function limitFigures(
  stats: ExecutionStats | undefined,
): Pick<RotationRun, 'historyEvents' | 'largestPayloadBytes'> {
  if (stats === undefined) return {};
  const totals = statsTotals(stats);
  return { historyEvents: totals.maxHistoryEvents, largestPayloadBytes: totals.largestPayloadBytes };
}

/** rotate-certificates over `tasks` in-process tasks and `certificates` due certificates. */
export async function simulatedRotationRun(
  tasks: number,
  certificates: number,
  dir: string,
): Promise<SimulatedRotationRun> {
  const fx = await createSimulatedFixture(dir, { tasks, certificates });
  const started = performance.now();
  const result = await runStateMachine(
    'rotate-certificates',
    { graceSeconds: 0, rolloutPollSeconds: 0 },
    fx.ports,
    { instant: true },
  );
  const totals = statsTotals(result.stats);
  return {
    tasks,
    certificates,
    status: result.status,
    ...(result.status === 'FAILED' ? { error: `${result.error}: ${result.cause}` } : {}),
    executionSeconds: round((performance.now() - started) / 1000),
    executions: totals.executions,
    historyEvents: totals.maxHistoryEvents,
    historyExecution: totals.maxHistoryExecution.replace(/\/.*/, ''),
    largestPayloadBytes: totals.largestPayloadBytes,
    largestPayloadState: totals.largestPayloadState,
  };
}

/** The Markdown table of the simulated runs. Pure. */
export function renderSimulatedMarkdown(runs: readonly SimulatedRotationRun[]): string {
  return [
    '| tasks (in-process) | certificates | status | execution (s) | executions | most history events (of 25 000) | in | largest payload (of 262 144 B) | in |',
    '| ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | --- |',
    ...runs.map(
      (r) =>
        `| ${r.tasks} | ${r.certificates} | ${r.status} | ${r.executionSeconds.toFixed(2)} | ${r.executions} | ${r.historyEvents} | ${r.historyExecution} | ${r.largestPayloadBytes} | ${r.largestPayloadState} |`,
    ),
  ].join('\n');
}

export interface Summary {
  mean: number;
  max: number;
}

/** Mean and max of some numbers (0s for none). Pure. */
export function summary(values: readonly number[]): Summary {
  if (values.length === 0) return { mean: 0, max: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return { mean: Math.round(mean * 1000) / 1000, max: Math.round(Math.max(...values) * 1000) / 1000 };
}

/** `VmRSS` of a `/proc/<pid>/status` text, in MiB; undefined when absent. Pure. */
export function parseVmRssMiB(status: string): number | undefined {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match ? Number(match[1]) / 1024 : undefined;
}

async function cpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
    return stat === undefined ? undefined : (stat.utime + stat.stime) / clockTicks();
  } catch {
    return undefined;
  }
}

async function rssMiB(pid: number): Promise<number | undefined> {
  try {
    return parseVmRssMiB(await readFile(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The Markdown table of a set of runs, with the targets. Pure. */
export function renderRotationMarkdown(runs: readonly RotationRun[]): string {
  const fmt = (n: number | null, digits = 2) => (n === null ? 'n/a' : n.toFixed(digits));
  const rows = runs.map((r) => {
    const target = r.tasks >= 50 ? (r.seconds !== null && r.seconds < 10 ? 'met' : 'MISSED') : '—';
    const zero = r.failedHandshakes === 0 && r.droppedLongLived === 0 ? 'met' : 'MISSED';
    return `| ${r.tasks} | ${r.status} | ${fmt(r.seconds)} | ${target} | ${fmt(r.executionSeconds)} | ${r.handshakes} | ${r.failedHandshakes} | ${r.longLived} | ${r.droppedLongLived} | ${zero} | ${fmt(r.sidecar.cpuSeconds.mean, 3)} (${fmt(r.sidecar.cpuSeconds.max, 3)}) | ${fmt(r.sidecar.cpuPercent.mean, 1)} (${fmt(r.sidecar.cpuPercent.max, 1)}) | ${fmt(r.sidecar.rssMiB.mean, 1)} (${fmt(r.sidecar.rssMiB.max, 1)}) | ${fmt(r.fleetStartSeconds, 1)} | ${r.historyEvents ?? 'n/a'} | ${r.largestPayloadBytes ?? 'n/a'} |`;
  });
  return [
    '| tasks | status | issuance → all serving (s) | < 10 s @ 50 | execution (s) | handshakes | failed | long-lived | dropped | 0 failures | sidecar CPU s/task mean (max) | sidecar CPU % mean (max) | sidecar RSS MiB mean (max) | fleet start (s) | history events | largest payload (B) |',
    '| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

/** One fleet size: start, traffic, rotate, measure, stop. */
export async function rotationRun(
  tasks: number,
  print: (line: string) => void,
  options: { sidecarCommand?: readonly string[] } = {},
): Promise<RotationRun> {
  const started = performance.now();
  const env = await startDemoEnvironment({
    tasks,
    print,
    perTaskProgress: false,
    readyTimeoutMs: 180_000,
    ...(options.sidecarCommand === undefined ? {} : { sidecarCommand: options.sidecarCommand }),
  });
  const fleetStartSeconds = round((performance.now() - started) / 1000);
  let traffic: TrafficGenerator | undefined;
  try {
    if (env.missing.length > 0) throw new Error(`cannot rotate here: ${env.missing.join('; ')}`);
    traffic = demoTraffic(env);
    await traffic.start();
    await sleep(2000);
    const before = await servedSerials(env.fleet, env.observed);
    const pids = env.fleet
      .processes()
      .map((p) => p.sidecarPid)
      .filter((p): p is number => p !== null);
    const cpuBefore = await Promise.all(pids.map(cpuSeconds));
    const windowStart = performance.now();
    print(`  rotating under traffic (${traffic.sessions().length} long-lived sessions)`);
    const outcome = await rotateDemoCertificate(env.ports, { rolloutMaxPolls: 120 });
    await sleep(1000);
    const windowSeconds = (performance.now() - windowStart) / 1000;
    const cpuAfter = await Promise.all(pids.map(cpuSeconds));
    const rss = (await Promise.all(pids.map(rssMiB))).filter((v): v is number => v !== undefined);
    const stats = traffic.stats();
    const after = await servedSerials(env.fleet, env.observed);
    const measured = measureRotation({
      succeeded: outcome.status === 'SUCCEEDED',
      before,
      after,
      issuedAt: env.issuedAt,
      firstServedAt: (serial, taskId) => firstServed(serial, taskId, env.observed, stats),
    });
    const cpu = pids
      .map((_, i) =>
        cpuBefore[i] === undefined || cpuAfter[i] === undefined ? undefined : cpuAfter[i]! - cpuBefore[i]!,
      )
      .filter((v): v is number => v !== undefined);
    return {
      tasks,
      fleetStartSeconds,
      status: outcome.status,
      ...(outcome.error ? { error: `${outcome.error}: ${outcome.cause ?? ''}` } : {}),
      seconds: measured.seconds,
      executionSeconds: round((outcome.finishedAt.getTime() - outcome.startedAt.getTime()) / 1000),
      tasksServingNew: measured.tasksServingNew,
      perTask: measured.perTask.map((p) => ({ taskId: p.taskId, seconds: p.servingNewAfterSeconds })),
      handshakes: stats.handshakes,
      failedHandshakes: stats.failedHandshakes,
      longLived: stats.longLived,
      droppedLongLived: stats.droppedLongLived,
      failures: stats.failures,
      sidecar: {
        cpuSeconds: summary(cpu),
        cpuPercent: summary(cpu.map((c) => (c / windowSeconds) * 100)),
        rssMiB: summary(rss),
      },
      windowSeconds: round(windowSeconds),
      ...limitFigures(outcome.stats),
    };
  } finally {
    await traffic?.stop().catch(() => undefined);
    await env.close();
  }
}

/** The PNG drawn next to a results JSON: `x.json` → `x.png`. */
export function chartPathFor(jsonPath: string): string {
  return jsonPath.endsWith('.json') ? `${jsonPath.slice(0, -'.json'.length)}.png` : `${jsonPath}.png`;
}

/** What the chart reads of a run: results written before `perTask` existed lack it. */
type ChartRun = Pick<RotationRun, 'tasks' | 'status' | 'seconds'> & { perTask?: RotationRun['perTask'] };

function legendLabel(run: ChartRun): string {
  const size = `${run.tasks} task${run.tasks === 1 ? '' : 's'}`;
  if (run.perTask === undefined) return `${size}: no per-task figures`;
  if (run.status !== 'SUCCEEDED') return `${size}: ${run.status.toLowerCase()}`;
  if (run.seconds !== null) return `${size}: all serving by ${run.seconds.toFixed(2)} s`;
  const seen = run.perTask.filter((p) => p.seconds !== null).length;
  return `${size}: ${seen}/${run.perTask.length} seen serving`;
}

/**
 * The dot chart of a results file: x the task's place in the fleet (task-1 first), y the seconds
 * from issuance to that task first serving the new certificate, one series per fleet size, the
 * machine and its load in the note. Pure.
 */
export function rotationChartSpec(results: {
  at: string;
  environment: Pick<Environment, 'cores' | 'loadAverage1m'>;
  runs: readonly ChartRun[];
}): DotChartSpec {
  const when = `${results.at.slice(0, 10)} ${results.at.slice(11, 16)} utc`;
  return {
    title: 'Certificate rotation: seconds from issuance to serving, per task',
    xLabel: 'task (fleet order)',
    yLabel: 'seconds from issuance',
    yUnit: 's',
    series: results.runs.map((run) => ({
      label: legendLabel(run),
      values: (run.perTask ?? []).map((p) => p.seconds),
    })),
    note: `local fleets under traffic, ${when}, ${results.environment.cores} cores, load ${results.environment.loadAverage1m}`,
  };
}

const ChartResultsSchema = z.object({
  at: z.string(),
  environment: z.object({ cores: z.number(), loadAverage1m: z.number() }),
  runs: z.array(
    z.object({
      tasks: z.number(),
      status: z.string(),
      seconds: z.number().nullable(),
      perTask: z.array(z.object({ taskId: z.string(), seconds: z.number().nullable() })).optional(),
    }),
  ),
});

/** Draws the chart of the results JSON at `jsonPath` next to it; returns the PNG's path. */
export async function redrawRotationChart(jsonPath: string): Promise<string> {
  const parsed = ChartResultsSchema.safeParse(JSON.parse(await readFile(jsonPath, 'utf8')));
  if (!parsed.success) {
    throw new BenchmarkError(`${jsonPath} is not a rotation results file: ${parsed.error.message}`);
  }
  if (!parsed.data.runs.some((r) => r.perTask !== undefined && r.perTask.length > 0)) {
    throw new BenchmarkError(
      `${jsonPath} has no per-task figures (written before they were stored): run the suite again`,
    );
  }
  return writeRotationChart(jsonPath, parsed.data);
}

async function writeRotationChart(
  jsonPath: string,
  results: Parameters<typeof rotationChartSpec>[0],
): Promise<string> {
  const path = chartPathFor(jsonPath);
  await writeFile(path, dotChartPng(rotationChartSpec(results)));
  return path;
}

const HELP = `Usage: npm run bench -- --suite rotation [--tasks 10,50] [--simulated 200] [--certificates 100]
                                         [--out FILE] [--chart-only]

Runs certificate rotation (the real rotate-certificates state machine) on local fleets of each
size under traffic and reports: seconds from issuance to every task serving the new serial,
failed handshakes, dropped long-lived connections, sidecar CPU and RSS per task, and the most
history events of one execution and the largest state payload (Step Functions' limits).
--simulated sizes run rotate-certificates over an in-process fleet of that many tasks (real
local store and CA, tasks in memory) with --certificates due certificates: the shape at scale.
Writes ${RESULTS} (or --out), a PNG chart of each task's seconds to serving next
to it (rotation.png; generated, not committed) and prints a Markdown table.

Options:
  --tasks LIST   comma-separated fleet sizes of real processes (default 10,50; 0: none)
  --simulated LIST  comma-separated in-process fleet sizes (default 200; 0: none)
  --certificates N  due certificates of each simulated run (default 100)
  --out FILE     where to write the JSON results (the chart goes next to it, .png)
  --chart-only   run nothing: redraw the PNG from the existing JSON (--out or the default)
  -h, --help     show this help`;

/** Entry point of the rotation suite. */
export async function runRotationBench(argv: string[]): Promise<number> {
  let values: {
    tasks?: string;
    simulated?: string;
    certificates?: string;
    out?: string;
    'chart-only'?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        tasks: { type: 'string' },
        simulated: { type: 'string' },
        certificates: { type: 'string' },
        out: { type: 'string' },
        'chart-only': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    console.error(`bench rotation: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (values['chart-only'] === true) {
    try {
      console.error(`chart written to ${await redrawRotationChart(values.out ?? RESULTS)}`);
      return 0;
    } catch (error) {
      console.error(`bench rotation: ${error instanceof Error ? error.message : String(error)}`);
      return 1;
    }
  }
  const sizes = (values.tasks ?? '10,50')
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => n !== 0);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 200)) {
    console.error(`bench rotation: --tasks takes sizes 1–200, got ${values.tasks}`);
    return 2;
  }
  const simulatedSizes = (values.simulated ?? '200')
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => n !== 0);
  const certificates = Number(values.certificates ?? '100');
  if (
    simulatedSizes.some((n) => !Number.isInteger(n) || n < 1 || n > 5000) ||
    !Number.isInteger(certificates) ||
    certificates < 1 ||
    certificates > 500
  ) {
    console.error('bench rotation: --simulated takes sizes 1–5000, --certificates 1–500');
    return 2;
  }
  const environment = describeEnvironment();
  const runs: RotationRun[] = [];
  const print = (line: string) => console.error(line);
  for (const tasks of sizes) {
    console.error(`rotation with ${tasks} task(s)`);
    try {
      runs.push(await rotationRun(tasks, print));
    } catch (error) {
      console.error(`  failed: ${error instanceof Error ? error.message : String(error)}`);
      runs.push({
        tasks,
        fleetStartSeconds: 0,
        status: 'ERROR',
        error: error instanceof Error ? error.message : String(error),
        seconds: null,
        executionSeconds: 0,
        tasksServingNew: 0,
        perTask: [],
        handshakes: 0,
        failedHandshakes: 0,
        longLived: 0,
        droppedLongLived: 0,
        failures: [],
        sidecar: { cpuSeconds: summary([]), cpuPercent: summary([]), rssMiB: summary([]) },
        windowSeconds: 0,
      });
    }
    const last = runs[runs.length - 1]!;
    console.error(
      `  ${last.status}: ${last.seconds ?? 'n/a'} s to every task serving, ${last.failedHandshakes}/${last.handshakes} failed handshakes, ${last.droppedLongLived}/${last.longLived} dropped`,
    );
  }
  const simulated: SimulatedRotationRun[] = [];
  for (const tasks of simulatedSizes) {
    console.error(`rotation of ${certificates} certificate(s) over ${tasks} in-process task(s)`);
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-bench-sim-'));
    try {
      const run = await simulatedRotationRun(tasks, certificates, dir);
      simulated.push(run);
      console.error(
        `  ${run.status} in ${run.executionSeconds} s: ${run.historyEvents} history events at most (${run.historyExecution}), largest payload ${run.largestPayloadBytes} B`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const out = values.out ?? RESULTS;
  await mkdir(dirname(out), { recursive: true });
  const results: RotationResults = {
    suite: 'rotation',
    at: new Date().toISOString(),
    environment,
    runs,
    ...(simulated.length > 0 ? { simulated } : {}),
  };
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  if (runs.length > 0) console.log(renderRotationMarkdown(runs));
  if (simulated.length > 0) console.log(renderSimulatedMarkdown(simulated));
  console.error(`results written to ${out}`);
  try {
    console.error(`chart written to ${await writeRotationChart(out, results)}`);
  } catch (error) {
    // The figures are on disk already; a chart that cannot be drawn must not hide them.
    console.error(`chart not written: ${error instanceof Error ? error.message : String(error)}`);
  }
  return runs.every((r) => r.status === 'SUCCEEDED') && simulated.every((r) => r.status === 'SUCCEEDED')
    ? 0
    : 1;
}
