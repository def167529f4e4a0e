/**
 * `portcullis status --fleet F` — what every running task serves: certificate serials and
 * expiry, allowlist version and size, the last apply, and health; compared with what the store
 * holds as `AWSCURRENT`, so a task that missed an update stands out.
 */
import { NotFoundError, ValidationError } from '../../lib/errors.ts';
import { certificateInfo } from '../../lib/pki/validate.ts';
import type { FleetTask, SecretStore, TaskStatus } from '../../lib/ports.ts';
import { Stage } from '../../lib/ports.ts';
import { CertificateSecret } from '../../lib/secrets/formats.ts';
import { errorName, readDocument } from '../../lib/workflows/common.ts';
import { PlaceholderDocument } from '../../lib/workflows/documents.ts';
import { allowlistSecretId, loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { colour, ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import { type ControlPlaneTarget, commonOptions, openTarget, targetHelp } from '../demo/target.ts';

export const summary = 'Show what every task serves (serials, allowlist, health)';

const HELP = `Usage: portcullis status --fleet NAME [--json]

Asks every running task's sidecar for its status and prints, per task: health, certificate
serials and notAfter, allowlist version and size, the last apply; "in sync" compares them with
the store's AWSCURRENT versions (a task that is not ready is never in sync). A certificate,
trust or allowlist secret that is missing or unreadable is reported once, marked "expected:
missing" (or "unreadable"); the tasks are still listed, none of them in sync.

Options:
  --fleet NAME          fleet name
  --json                print JSON (one object: {fleet, current, tasks[]}; current.missing
                        lists the secrets that could not be read) instead of a table
${targetHelp}
  -h, --help            show this help

Exit status: 0 every secret read and every task ready and in sync (or no tasks), 1 otherwise
(the report is still printed when only secrets are missing), 2 usage error.`;

/** One task's row. */
export interface TaskRow {
  taskId: string;
  address: string;
  health: 'ready' | 'not-ready' | 'unreachable';
  error?: string;
  certificates: Record<string, { serial: string; notAfter: string; versionId: string }>;
  allowlist: { versionId: string; size: number } | null;
  trust: { versionId: string } | null;
  lastApply: { at: string; ok: boolean; error?: string } | null;
  inSync: boolean;
}

/**
 * A secret the tasks serve that status could not read from the store (deleted, never created
 * by an interrupted `init`, access denied, not a certificate bundle).
 */
export interface MissingSecret {
  /** What the fleet uses it for: `certificate <name>`, `allowlist` or `trust`. */
  role: string;
  secretId: string;
  /** `missing` when the store has no such secret (or no current version), else `unreadable`. */
  state: 'missing' | 'unreadable';
  /** The error's name (`NotFoundError`, `AccessDenied`, `ValidationError`, …), never its message. */
  error: string;
}

/** What the store holds as current: the reference the rows are compared with. */
export interface CurrentState {
  /** Serial of each certificate's `AWSCURRENT`; null when none was issued yet (or it is missing). */
  certificates: Record<string, string | null>;
  allowlistVersionId: string | null;
  /** `AWSCURRENT` of the trust secret; null or absent when the fleet has none (or it is missing). */
  trustVersionId?: string | null;
  /** Secrets that could not be read: what the tasks should serve from them is unknown. */
  missing?: MissingSecret[];
}

/**
 * Builds a row from a task's status (or its error) and the current state. Pure. A row is in
 * sync only when the task is ready, serves every current version, and nothing it should serve
 * is missing from the store (there is nothing to vouch for then).
 */
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
      trust: null,
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
  const trustInSync =
    current.trustVersionId === undefined ||
    current.trustVersionId === null ||
    status.trust?.versionId === current.trustVersionId;
  const storeComplete = (current.missing ?? []).length === 0;
  return {
    taskId: task.taskId,
    address,
    health: status.ready ? 'ready' : 'not-ready',
    certificates,
    allowlist: status.allowlist ?? null,
    trust: status.trust ? { versionId: status.trust.versionId } : null,
    lastApply: status.lastApply ?? null,
    inSync: status.ready && storeComplete && certsInSync && allowlistInSync && trustInSync,
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

/** One line per missing secret, for the table output. Pure. */
export function formatMissing(missing: readonly MissingSecret[]): string {
  const roles = Math.max(0, ...missing.map((m) => m.role.length));
  const ids = Math.max(0, ...missing.map((m) => m.secretId.length));
  return missing
    .map((m) => `${m.role.padEnd(roles)}  ${m.secretId.padEnd(ids)}  expected: ${m.state} (${m.error})`)
    .join('\n');
}

/**
 * The serial of a certificate secret's `AWSCURRENT`, null for init's placeholder (nothing issued
 * yet). Throws when the secret cannot be read or holds no certificate bundle.
 */
async function currentSerial(store: SecretStore, secretId: string): Promise<string | null> {
  const text = (await store.get(secretId, { stage: Stage.Current })).value;
  if (readDocument(PlaceholderDocument, text) !== undefined) return null;
  const bundle = readDocument(CertificateSecret, text);
  if (bundle === undefined) {
    throw new ValidationError(`secret '${secretId}' holds neither a certificate bundle nor a placeholder`);
  }
  return certificateInfo(bundle.certificatePem).serial;
}

async function currentVersionId(store: SecretStore, secretId: string): Promise<string> {
  const description = await store.describe(secretId);
  const current = description.versions.find((v) => v.stages.includes(Stage.Current));
  if (current === undefined) throw new NotFoundError(`secret '${secretId}' has no ${Stage.Current} version`);
  return current.versionId;
}

/**
 * What the store holds as current. Only the fleet config is required (it says what to read); a
 * secret it names that cannot be read is recorded in `missing`, since status is what an operator
 * runs when something is wrong.
 */
async function currentState(target: ControlPlaneTarget): Promise<Required<CurrentState>> {
  const config = await loadControlPlaneFleet(target.store, target.fleetConfigSecretId);
  const missing: MissingSecret[] = [];
  async function read<T>(role: string, secretId: string, reader: () => Promise<T>): Promise<T | null> {
    try {
      return await reader();
    } catch (error) {
      const name = errorName(error);
      missing.push({
        role,
        secretId,
        state: name === 'NotFoundError' ? 'missing' : 'unreadable',
        error: name,
      });
      return null;
    }
  }
  const certificates: Record<string, string | null> = {};
  for (const spec of config.certificates) {
    certificates[spec.name] = await read(`certificate ${spec.name}`, spec.secretId, () =>
      currentSerial(target.store, spec.secretId),
    );
  }
  const allowlistId = allowlistSecretId(config);
  const allowlistVersionId =
    allowlistId === undefined
      ? null
      : await read('allowlist', allowlistId, () => currentVersionId(target.store, allowlistId));
  const trustId = config.trust?.secretId;
  const trustVersionId =
    trustId === undefined
      ? null
      : await read('trust', trustId, () => currentVersionId(target.store, trustId));
  return { certificates, allowlistVersionId, trustVersionId, missing };
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
    } else {
      const paint = colour(process.stdout);
      if (current.missing.length > 0) console.log(paint(31, formatMissing(current.missing)));
      console.log(rows.length === 0 ? `fleet ${target.fleet}: no running tasks` : formatTable(rows, paint));
    }
    return current.missing.length === 0 && rows.every((r) => r.health === 'ready' && r.inSync)
      ? ExitCode.Ok
      : ExitCode.Failure;
  } catch (error) {
    return reportError('status', error);
  } finally {
    await target?.close();
  }
}
