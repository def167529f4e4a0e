/**
 * The allowlist benchmark (`npm run bench -- --suite allowlist`): on the demo's local world (real
 * HAProxy + real sidecar per task, the real update-allowlist state machine), an operator runs
 * `portcullis allowlist set --file` with a list of 100 000 mixed IPv4/IPv6 entries, then removes
 * one entry from it, and the suite measures:
 * - seconds from starting the command to every task enforcing the new list (its sidecar reports
 *   the new version with every entry, read back from HAProxy's `show acl`), and to the command's exit;
 * - the sidecars' peak memory (the highest VmRSS sampled every 100 ms during the change, and
 *   VmHWM, the process's high-water mark since it started);
 * - the sizes: entries, object bytes, manifest bytes in the secret.
 * Nothing is asserted: the figures go to `bench/results/allowlist.json` and a Markdown table.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  DEMO_FLEET,
  type DemoEnvironment,
  DemoSources,
  round,
  startDemoEnvironment,
} from '../cli/demo/environment.ts';
import { fleetSecretIds } from '../cli/demo/secrets.ts';
import { Stage } from '../lib/ports.ts';
import { AllowlistManifest } from '../lib/secrets/allowlist-storage.ts';
import { describeEnvironment, type Environment } from './lib/env.ts';

const RESULTS = join(dirname(fileURLToPath(import.meta.url)), 'results', 'allowlist.json');
const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.ts');

/** One change and what it cost. */
export interface AllowlistChangeRun {
  change: string;
  entries: number;
  status: string;
  exitCode: number | null;
  /** Command start → the last task enforcing the new list; null when not every task got there. */
  secondsToEnforced: number | null;
  /** Command start → each task enforcing it, in fleet order. */
  perTask: { taskId: string; seconds: number | null }[];
  /** Command start → the command's exit (it waits for the workflow). */
  secondsToExit: number;
  /** Tasks the workflow's nudge did not reach in time (their poll caught them up). */
  unreachableTasks: string[];
  objectBytes: number | null;
  manifestBytes: number;
  /** Highest VmRSS sampled every 100 ms during the change over the sidecars, MiB. */
  sidecarPeakRssMiB: number;
  /** The highest VmHWM (peak RSS since the process started) over the sidecars after the change, MiB. */
  sidecarHighWaterMiB: number;
}

export interface AllowlistResults {
  suite: 'allowlist';
  at: string;
  environment: Environment;
  tasks: number;
  runs: AllowlistChangeRun[];
}

/** `n` distinct entries, IPv4 and IPv6 alternating, with several prefix lengths. Pure. */
export function mixedEntries(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = Math.floor(i / 2);
    if (i % 2 === 0)
      out.push(`10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}${k % 7 === 0 ? '' : '/32'}`);
    else out.push(k % 5 === 0 ? `2001:db8:${k.toString(16)}::/64` : `2001:db8:ffff::${k.toString(16)}/128`);
  }
  return out;
}

/** `VmRSS` and `VmHWM` of a `/proc/<pid>/status` text, in MiB. Pure. */
export function parseMemory(status: string): { rss?: number; hwm?: number } {
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+)\\s+kB$`, 'm').exec(status);
    return match ? Number(match[1]) / 1024 : undefined;
  };
  const rss = field('VmRSS');
  const hwm = field('VmHWM');
  return { ...(rss === undefined ? {} : { rss }), ...(hwm === undefined ? {} : { hwm }) };
}

async function memory(pid: number): Promise<{ rss?: number; hwm?: number }> {
  try {
    return parseMemory(await readFile(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return {};
  }
}

/** The Markdown table of the runs. Pure. */
export function renderAllowlistMarkdown(results: Pick<AllowlistResults, 'tasks' | 'runs'>): string {
  const fmt = (v: number | null, digits = 2) => (v === null ? 'n/a' : v.toFixed(digits));
  return [
    `| change (${results.tasks} tasks) | entries | status | s to every task enforcing | s to command exit | tasks left to the poll | object KiB | manifest B | sidecar peak RSS MiB (VmHWM) |`,
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...results.runs.map(
      (r) =>
        `| ${r.change} | ${r.entries} | ${r.status} | ${fmt(r.secondsToEnforced)} | ${fmt(r.secondsToExit)} | ${r.unreachableTasks.length} | ${r.objectBytes === null ? '-' : (r.objectBytes / 1024).toFixed(0)} | ${r.manifestBytes} | ${r.sidecarPeakRssMiB.toFixed(1)} (${r.sidecarHighWaterMiB.toFixed(1)}) |`,
    ),
  ].join('\n');
}

/** Runs one CLI change against the local fleet, sampling every task until each enforces it. */
async function measureChange(
  env: DemoEnvironment,
  stateDir: string,
  change: string,
  args: string[],
  expectedSize: number,
): Promise<AllowlistChangeRun> {
  const secretId = fleetSecretIds(DEMO_FLEET).allowlist;
  const before = (await env.store.get(secretId, { stage: Stage.Current })).versionId;
  const tasks = await env.fleet.listTasks();
  const processes = env.fleet.processes();
  const sidecars = processes.map((p) => p.sidecarPid).filter((p): p is number => p !== null);
  const enforcedAt = new Map<string, number>();
  let sidecarPeak = 0;
  const t0 = performance.now();
  const wallT0 = Date.now();
  const child = spawn(
    process.execPath,
    [
      CLI,
      'allowlist',
      ...args,
      '--fleet',
      DEMO_FLEET,
      '--local',
      stateDir,
      '--reason',
      `bench ${change}`,
      '--yes',
      '--json',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
  );
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.resume();
  let exitedAt: number | undefined;
  let exitCode: number | null = null;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exitedAt = performance.now();
      exitCode = code;
      resolve();
    }),
  );
  // Memory every 100 ms until every task applied the list (bounded to 5 minutes). When each task began
  // enforcing the list is read afterwards from its sidecar: the time of its last apply, which
  // it records once HAProxy serves the new ACL (sampling the status under load lags by seconds).
  const deadline = t0 + 300_000;
  let sampling = true;
  const sampleMemory = async () => {
    while (sampling && performance.now() < deadline) {
      for (const m of await Promise.all(sidecars.map(memory)))
        sidecarPeak = Math.max(sidecarPeak, m.rss ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const sampler = sampleMemory();
  await exited;
  // The workflow verifies every task it reached; a task whose nudge timed out (10 sidecars
  // applying 100 000 entries at once share this machine's cores) is reported unreachable and
  // caught up by its sidecar's poll. Wait for those too (bounded), then read when each task
  // applied the list: its sidecar records the time once HAProxy serves the new ACL (sampling
  // the status under load lags by seconds).
  const convergeDeadline = performance.now() + 120_000;
  const pending = new Set(tasks.map((task) => task.taskId));
  while (pending.size > 0 && performance.now() < convergeDeadline) {
    for (const task of tasks) {
      if (!pending.has(task.taskId)) continue;
      const status = await env.ports.taskClient.status(task).catch(() => undefined);
      const list = status?.allowlist;
      const at = status?.lastApply?.ok === true ? Date.parse(status.lastApply.at) : Number.NaN;
      if (
        list !== undefined &&
        list.versionId !== before &&
        list.size === expectedSize &&
        Number.isFinite(at)
      ) {
        enforcedAt.set(task.taskId, at - wallT0 + t0);
        pending.delete(task.taskId);
      }
    }
    if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 500));
  }
  sampling = false;
  await sampler;
  const highWater = Math.max(0, ...(await Promise.all(sidecars.map(memory))).map((m) => m.hwm ?? 0));
  const current = await env.store.get(secretId, { stage: Stage.Current });
  let objectBytes: number | null = null;
  try {
    objectBytes = AllowlistManifest.parse(JSON.parse(current.value)).bytes;
  } catch {
    objectBytes = null;
  }
  const perTask = tasks.map((task) => {
    const at = enforcedAt.get(task.taskId);
    return { taskId: task.taskId, seconds: at === undefined ? null : round((at - t0) / 1000) };
  });
  let status = 'UNKNOWN';
  let unreachable: string[] = [];
  try {
    const last = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      status?: string;
      unreachableTasks?: string[];
    };
    status = String(last.status);
    unreachable = last.unreachableTasks ?? [];
  } catch {
    // no JSON line: the command failed before the workflow
  }
  return {
    change,
    entries: expectedSize,
    status,
    exitCode,
    secondsToEnforced: perTask.every((t) => t.seconds !== null)
      ? Math.max(...perTask.map((t) => t.seconds!))
      : null,
    perTask,
    secondsToExit: round(((exitedAt ?? performance.now()) - t0) / 1000),
    unreachableTasks: unreachable,
    objectBytes,
    manifestBytes: Buffer.byteLength(current.value),
    sidecarPeakRssMiB: round(sidecarPeak),
    sidecarHighWaterMiB: round(highWater),
  };
}

export async function runAllowlistBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      tasks: { type: 'string' },
      entries: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(
      'Usage: npm run bench -- --suite allowlist [--tasks N (10)] [--entries N (100000)] [--out FILE]\n' +
        '`allowlist set` of N mixed IPv4/IPv6 entries on a local fleet of N tasks, then one removal: seconds to every task enforcing it, sidecar peak RSS.',
    );
    return 0;
  }
  const tasks = Number(values.tasks ?? '10');
  const entries = Number(values.entries ?? '100000');
  if (
    !Number.isInteger(tasks) ||
    tasks < 1 ||
    tasks > 200 ||
    !Number.isInteger(entries) ||
    entries < 3 ||
    entries > 100_000
  ) {
    console.error('bench allowlist: --tasks takes 1–200, --entries 3–100000 (the demo fleet allows 100000)');
    return 2;
  }
  const environment = describeEnvironment();
  const print = (line: string) => console.error(line);
  const stateDir = await mkdtemp(join(tmpdir(), 'pab-'));
  let env: DemoEnvironment | undefined;
  const runs: AllowlistChangeRun[] = [];
  try {
    print(`allowlist with ${tasks} task(s), ${entries} entries`);
    env = await startDemoEnvironment({
      tasks,
      stateDir,
      print,
      perTaskProgress: false,
      readyTimeoutMs: 180_000,
    });
    if (env.missing.length > 0) throw new Error(`cannot run here: ${env.missing.join('; ')}`);
    const list = [DemoSources.trafficCidr, DemoSources.otherCidr, ...mixedEntries(entries - 2)];
    const file = join(stateDir, 'allowlist.txt');
    await writeFile(file, `# bench: ${list.length} entries\n${list.join('\n')}\n`);
    runs.push(await measureChange(env, stateDir, `set ${entries}`, ['set', '--file', file], entries));
    print(`  set: ${runs[0]!.secondsToEnforced ?? 'n/a'} s to every task enforcing it`);
    runs.push(
      await measureChange(env, stateDir, 'remove 1', ['remove', list[list.length - 1]!], entries - 1),
    );
    print(`  remove 1: ${runs[1]!.secondsToEnforced ?? 'n/a'} s to every task enforcing it`);
  } finally {
    await env?.close();
    await rm(stateDir, { recursive: true, force: true });
  }
  const out = values.out ?? RESULTS;
  await mkdir(dirname(out), { recursive: true });
  const results: AllowlistResults = {
    suite: 'allowlist',
    at: new Date().toISOString(),
    environment,
    tasks,
    runs,
  };
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(renderAllowlistMarkdown(results));
  console.error(`results written to ${out}`);
  return runs.every((r) => r.status === 'SUCCEEDED' && r.secondsToEnforced !== null) ? 0 : 1;
}
