/**
 * `portcullis status --fleet F` — what every running task serves: certificate serials and
 * expiry, allowlist version and size, the last apply, and health; compared with what the store
 * holds as `AWSCURRENT`, so a task that missed an update stands out.
 */
import type { FleetTask, TaskStatus } from '../../lib/ports.ts';
import { Stage } from '../../lib/ports.ts';
import { allowlistSecretId, loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { readCurrentCertificate } from '../../lib/workflows/rotation-steps.ts';
import { colour, ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import { type ControlPlaneTarget, commonOptions, openTarget, targetHelp } from '../demo/target.ts';

export const summary = 'Show what every task serves (serials, allowlist, health)';

const HELP = `Usage: portcullis status --fleet NAME [--json]

Asks every running task's sidecar for its status and prints, per task: health, certificate
serials and notAfter, allowlist version and size, the last apply; "in sync" compares them with
the store's AWSCURRENT versions.

Options:
  --fleet NAME          fleet name
  --json                print JSON (one object: {fleet, current, tasks[]}) instead of a table
${targetHelp}
  -h, --help            show this help

Exit status: 0 every task ready and in sync (or no tasks), 1 otherwise, 2 usage error.`;

/** One task's row. */
export interface TaskRow {
  taskId: string;
  address: string;
  health: 'ready' | 'not-ready' | 'unreachable';
  error?: string;
  certificates: Record<string, { serial: string; notAfter: string; versionId: string }>;
  allowlist: { versionId: string; size: number } | null;
  lastApply: { at: string; ok: boolean; error?: string } | null;
  inSync: boolean;
}

/** What the store holds as current: the reference the rows are compared with. */
export interface CurrentState {
  certificates: Record<string, string | null>;
  allowlistVersionId: string | null;
}

/** Builds a row from a task's status (or its error) and the current state. Pure. */
export function taskRow(task: FleetTask, status: TaskStatus | Error, current: CurrentState): TaskRow {
  const address = `${task.address}:${task.adminPort}`;
  if (status instanceof Error) {
    return {
      taskId: task.taskId,
      address,
      health: 'unreachable',
      error: `${status.name}: ${status.message.split('\n')[0]}`,
      certificates: {},
      allowlist: null,
      lastApply: null,
      inSync: false,
    };
  }
  const certificates: TaskRow['certificates'] = {};
  for (const [name, c] of Object.entries(status.certificates)) {
    certificates[name] = { serial: c.serial, notAfter: c.notAfter, versionId: c.versionId };
  }
  const certsInSync = Object.entries(current.certificates).every(
    ([name, serial]) => serial === null || certificates[name]?.serial === serial,
  );
  const allowlistInSync =
    current.allowlistVersionId === null || status.allowlist?.versionId === current.allowlistVersionId;
  return {
    taskId: task.taskId,
    address,
    health: status.ready ? 'ready' : 'not-ready',
    certificates,
    allowlist: status.allowlist ?? null,
    lastApply: status.lastApply ?? null,
    inSync: certsInSync && allowlistInSync,
  };
}

function short(text: string, n = 12): string {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

/** The rows as a fixed-width table. Pure. */
export function formatTable(rows: readonly TaskRow[], paint: (code: number, text: string) => string): string {
  const header = ['TASK', 'HEALTH', 'CERTIFICATES (serial, notAfter)', 'ALLOWLIST', 'LAST APPLY', 'IN SYNC'];
  const cells = rows.map((row) => [
    row.taskId,
    row.health,
    Object.entries(row.certificates)
      .map(([name, c]) => `${name}=${short(c.serial)} ${c.notAfter.slice(0, 10)}`)
      .join('; ') ||
      (row.error ?? '-'),
    row.allowlist ? `${short(row.allowlist.versionId, 8)} (${row.allowlist.size})` : '-',
    row.lastApply
      ? `${row.lastApply.at.slice(11, 19)} ${row.lastApply.ok ? 'ok' : `failed: ${row.lastApply.error ?? ''}`}`
      : '-',
    row.health === 'unreachable' ? '-' : row.inSync ? 'yes' : 'no',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const body = cells.map((r, index) => {
    const row = rows[index]!;
    const text = line(r);
    if (row.health === 'unreachable') return paint(31, text);
    if (row.health !== 'ready' || !row.inSync) return paint(33, text);
    return text;
  });
  return [line(header), ...body].join('\n');
}

async function currentState(target: ControlPlaneTarget): Promise<CurrentState> {
  const config = await loadControlPlaneFleet(target.store, target.fleetConfigSecretId);
  const certificates: Record<string, string | null> = {};
  for (const spec of config.certificates) {
    const current = await readCurrentCertificate(target.store, spec.secretId);
    certificates[spec.name] = typeof current === 'object' ? current.serial : null;
  }
  const allowlistId = allowlistSecretId(config);
  let allowlistVersionId: string | null = null;
  if (allowlistId !== undefined) {
    const description = await target.store.describe(allowlistId);
    allowlistVersionId =
      description.versions.find((v) => v.stages.includes(Stage.Current))?.versionId ?? null;
  }
  return { certificates, allowlistVersionId };
}

/** Entry point of `portcullis status`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, { ...commonOptions, json: { type: 'boolean' } }, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (typeof values.fleet !== 'string') return usageError(`status needs --fleet\n\n${HELP}`);
  let target: ControlPlaneTarget | undefined;
  try {
    target = await openTarget(values);
    const current = await currentState(target);
    const tasks = await target.fleetPort().listTasks();
    const client = await target.taskClient();
    const rows = await Promise.all(
      tasks.map(async (task) => {
        const status = await client
          .status(task)
          .catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
        return taskRow(task, status, current);
      }),
    );
    if (values.json === true) {
      console.log(JSON.stringify({ fleet: target.fleet, current, tasks: rows }));
    } else if (rows.length === 0) {
      console.log(`fleet ${target.fleet}: no running tasks`);
    } else {
      console.log(formatTable(rows, colour(process.stdout)));
    }
    return rows.every((r) => r.health === 'ready' && r.inSync) ? ExitCode.Ok : ExitCode.Failure;
  } catch (error) {
    return reportError('status', error);
  } finally {
    await target?.close();
  }
}
