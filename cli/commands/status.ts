/**
 * `portcullis status --fleet F` — what every running task serves: certificate serials, days to
 * expiry and renewal time, allowlist version and size, trust and fleet-config versions, the last
 * apply, and health; compared with what the store holds as `AWSCURRENT` (the same rule as
 * converge-task's, `taskInSync`), so a task that missed an update stands out, object by object.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify as toYaml } from 'yaml';
import { NotFoundError, ValidationError } from '../../lib/errors.ts';
import { certificateInfo } from '../../lib/pki/validate.ts';
import type { FleetTask, SecretStore, TaskStatus } from '../../lib/ports.ts';
import { Stage } from '../../lib/ports.ts';
import { type DesiredSecret, taskInSync } from '../../lib/rotation/converge.ts';
import { CertificateSecret } from '../../lib/secrets/formats.ts';
import { errorName, readDocument } from '../../lib/workflows/common.ts';
import { livePendingVersion } from '../../lib/workflows/converge-steps.ts';
import { PlaceholderDocument } from '../../lib/workflows/documents.ts';
import { allowlistSecretId, loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { colour, ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import { type ControlPlaneTarget, commonOptions, openTarget, targetHelp } from '../demo/target.ts';

export const summary = 'Show what every task serves (serials, expiry, sync, health)';

export const OutputFormat = ['table', 'wide', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OutputFormat)[number];

const HELP = `Usage: portcullis status --fleet NAME [-o table|wide|json|yaml] [--watch [--interval S] [--count N]]

Asks every running task's sidecar for its status and prints, per task: health, certificate
serials with days to expiry and renewal time, allowlist version and size, the last apply, and
whether it is in sync: ready, and serving the store's AWSCURRENT of every certificate, the
allowlist, the trust bundle and the fleet config (the objects it is not in sync on are named).
A certificate, trust or allowlist secret that is missing or unreadable is reported once, marked
"expected: missing" (or "unreadable"); the tasks are still listed, none of them in sync.

Options:
  --fleet NAME          fleet name (with --stack: the stack's FleetName output)
  -o, --output FORMAT   table (default), wide (addresses, trust, fleet config, renewal times,
                        errors), json (one object: {fleet, current, tasks[]}; current.missing
                        lists the secrets that could not be read), yaml (the same as YAML)
  --json                the same as -o json
  -w, --watch           print again every --interval seconds (default 5) until Ctrl-C, or
                        --count times; json prints one object per line per round
${targetHelp}
  -h, --help            show this help

Exit status: 0 every secret read and every task ready and in sync (or no tasks), 1 otherwise
(the report is still printed when only secrets are missing), 2 usage error. With --watch: the
last round's.`;

const DAY_MS = 86_400_000;

/** One certificate as a task serves it. */
export interface CertificateCell {
  serial: string;
  notAfter: string;
  versionId: string;
  /** Days from the status time to notAfter (negative: expired), one decimal. */
  daysToExpiry: number | null;
  /** When the control plane renews it, if the sidecar says. */
  renewAt: string | null;
  inSync: boolean;
}

/** One task's row. */
export interface TaskRow {
  taskId: string;
  address: string;
  health: 'ready' | 'not-ready' | 'unreachable';
  error?: string;
  certificates: Record<string, CertificateCell>;
  allowlist: { versionId: string; size: number } | null;
  trust: { versionId: string } | null;
  fleetConfig: { versionId: string } | null;
  lastApply: { at: string; ok: boolean; error?: string } | null;
  /** Objects served in another version than the store's current (`certificate api`, `allowlist`, `trust`, `fleet config`). */
  outOfSync: string[];
  inSync: boolean;
}

/**
 * A secret the tasks serve that status could not read from the store (deleted, never created
 * by an interrupted `init`, access denied, not a certificate bundle).
 */
export interface MissingSecret {
  /** What the fleet uses it for: `certificate <name>`, `allowlist`, `trust` or `fleet config`. */
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
  /** Version id of each certificate's `AWSCURRENT` (null as above); absent: compared by serial. */
  certificateVersions?: Record<string, string | null>;
  /** The `AWSPENDING` version of each certificate a rotation in flight holds (lease live). */
  certificateRotatingTo?: Record<string, string>;
  allowlistVersionId: string | null;
  /** `AWSCURRENT` of the trust secret; null or absent when the fleet has none (or it is missing). */
  trustVersionId?: string | null;
  /** `AWSCURRENT` of the fleet config secret; absent when not compared. */
  fleetConfigVersionId?: string | null;
  /** Secrets that could not be read: what the tasks should serve from them is unknown. */
  missing?: MissingSecret[];
}

function label(secret: DesiredSecret): string {
  switch (secret.kind) {
    case 'certificate':
      return `certificate ${secret.name}`;
    case 'fleet':
      return 'fleet config';
    default:
      return secret.kind;
  }
}

/**
 * The secrets a task should serve, as converge-task compares them. A certificate compared by
 * serial (no version known) is left to {@link taskRow}. Pure.
 */
export function desiredSecrets(current: CurrentState): DesiredSecret[] {
  const desired: DesiredSecret[] = [];
  for (const [name, versionId] of Object.entries(current.certificateVersions ?? {})) {
    if (versionId !== null) {
      const rotatingTo = current.certificateRotatingTo?.[name];
      desired.push({
        kind: 'certificate',
        name,
        secretId: '',
        versionId,
        ...(rotatingTo === undefined ? {} : { rotatingTo }),
      });
    }
  }
  if (current.allowlistVersionId !== null)
    desired.push({ kind: 'allowlist', secretId: '', versionId: current.allowlistVersionId });
  if (current.trustVersionId !== undefined && current.trustVersionId !== null)
    desired.push({ kind: 'trust', secretId: '', versionId: current.trustVersionId });
  if (current.fleetConfigVersionId !== undefined && current.fleetConfigVersionId !== null)
    desired.push({ kind: 'fleet', secretId: '', versionId: current.fleetConfigVersionId });
  return desired;
}

/**
 * Builds a row from a task's status (or its error) and the current state. Pure. A row is in
 * sync only when {@link taskInSync} says so and nothing it should serve is missing from the
 * store (there is nothing to vouch for then).
 */
export function taskRow(
  task: FleetTask,
  status: TaskStatus | Error,
  current: CurrentState,
  now: Date = new Date(),
): TaskRow {
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
      fleetConfig: null,
      lastApply: null,
      outOfSync: [],
      inSync: false,
    };
  }
  const desired = desiredSecrets(current);
  const outOfSync = desired
    .filter((secret) => taskInSync({ ...status, ready: true }, [secret]) === false)
    .map(label);
  // Certificates whose version the store view lacks are compared by serial.
  for (const [name, serial] of Object.entries(current.certificates)) {
    if (serial === null || current.certificateVersions?.[name] !== undefined) continue;
    if (status.certificates[name]?.serial !== serial) outOfSync.push(`certificate ${name}`);
  }
  const certificates: TaskRow['certificates'] = {};
  for (const [name, c] of Object.entries(status.certificates)) {
    const expires = Date.parse(c.notAfter);
    certificates[name] = {
      serial: c.serial,
      notAfter: c.notAfter,
      versionId: c.versionId,
      daysToExpiry: Number.isNaN(expires) ? null : Math.floor(((expires - now.getTime()) / DAY_MS) * 10) / 10,
      renewAt: c.renewAt ?? null,
      inSync: !outOfSync.includes(`certificate ${name}`),
    };
  }
  const storeComplete = (current.missing ?? []).length === 0;
  const inSync = status.ready && storeComplete && outOfSync.length === 0 && taskInSync(status, desired);
  return {
    taskId: task.taskId,
    address,
    health: status.ready ? 'ready' : 'not-ready',
    certificates,
    allowlist: status.allowlist ?? null,
    trust: status.trust ? { versionId: status.trust.versionId } : null,
    fleetConfig: status.fleetConfig ? { versionId: status.fleetConfig.versionId } : null,
    lastApply: status.lastApply ?? null,
    outOfSync,
    inSync,
  };
}

function short(text: string, n = 12): string {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

function days(cell: CertificateCell): string {
  return cell.daysToExpiry === null ? '?' : `${cell.daysToExpiry.toFixed(1)}d`;
}

/** The rows as a fixed-width table (`wide`: more columns). Pure. */
export function formatTable(
  rows: readonly TaskRow[],
  paint: (code: number, text: string) => string,
  options: { wide?: boolean } = {},
): string {
  const wide = options.wide === true;
  const header = [
    'TASK',
    ...(wide ? ['ADDRESS'] : []),
    'HEALTH',
    'CERTIFICATES (serial, notAfter, expires in)',
    ...(wide ? ['RENEW AT'] : []),
    'ALLOWLIST',
    ...(wide ? ['TRUST', 'FLEET CONFIG'] : []),
    'LAST APPLY',
    'IN SYNC',
  ];
  const cells = rows.map((row) => {
    const certs = Object.entries(row.certificates);
    return [
      row.taskId,
      ...(wide ? [row.address] : []),
      row.health,
      certs
        .map(([name, c]) => `${name}=${short(c.serial)} ${c.notAfter.slice(0, 10)} ${days(c)}`)
        .join('; ') ||
        (row.error ?? '-'),
      ...(wide
        ? [certs.map(([name, c]) => `${name}=${c.renewAt?.slice(0, 16) ?? '-'}`).join('; ') || '-']
        : []),
      row.allowlist ? `${short(row.allowlist.versionId, 8)} (${row.allowlist.size})` : '-',
      ...(wide
        ? [
            row.trust ? short(row.trust.versionId, 8) : '-',
            row.fleetConfig ? short(row.fleetConfig.versionId, 8) : '-',
          ]
        : []),
      row.lastApply
        ? `${row.lastApply.at.slice(11, 19)} ${row.lastApply.ok ? 'ok' : `failed: ${row.lastApply.error ?? ''}`}`
        : '-',
      row.health === 'unreachable'
        ? '-'
        : row.inSync
          ? 'yes'
          : row.outOfSync.length > 0
            ? `no (${row.outOfSync.join(', ')})`
            : 'no',
    ];
  });
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
  const out = [line(header), ...body];
  if (wide) for (const row of rows) if (row.error) out.push(`${row.taskId}: ${row.error}`);
  return out.join('\n');
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
 * The serial and version of a certificate secret's `AWSCURRENT`, null for init's placeholder
 * (nothing issued yet). Throws when the secret cannot be read or holds no certificate bundle.
 */
async function currentCertificate(
  store: SecretStore,
  secretId: string,
): Promise<{ serial: string; versionId: string } | null> {
  const secret = await store.get(secretId, { stage: Stage.Current });
  if (readDocument(PlaceholderDocument, secret.value) !== undefined) return null;
  const bundle = readDocument(CertificateSecret, secret.value);
  if (bundle === undefined) {
    throw new ValidationError(`secret '${secretId}' holds neither a certificate bundle nor a placeholder`);
  }
  return { serial: certificateInfo(bundle.certificatePem).serial, versionId: secret.versionId };
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
export async function currentState(target: ControlPlaneTarget): Promise<Required<CurrentState>> {
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
  const certificateVersions: Record<string, string | null> = {};
  const certificateRotatingTo: Record<string, string> = {};
  for (const spec of config.certificates) {
    const current = await read(`certificate ${spec.name}`, spec.secretId, () =>
      currentCertificate(target.store, spec.secretId),
    );
    certificates[spec.name] = current?.serial ?? null;
    certificateVersions[spec.name] = current?.versionId ?? null;
    // A task already on a live rotation's AWSPENDING is where that rotation put it: in sync.
    const rotatingTo = await livePendingVersion(target.store, spec.secretId, new Date()).catch(
      () => undefined,
    );
    if (rotatingTo !== undefined) certificateRotatingTo[spec.name] = rotatingTo;
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
  // The fleet config was just read: its current version exists.
  const fleetConfigVersionId = await currentVersionId(target.store, target.fleetConfigSecretId);
  return {
    certificates,
    certificateVersions,
    certificateRotatingTo,
    allowlistVersionId,
    trustVersionId,
    fleetConfigVersionId,
    missing,
  };
}

/** One round: the store's current state and every task's row. */
export async function statusReport(
  target: ControlPlaneTarget,
): Promise<{ fleet: string; current: Required<CurrentState>; tasks: TaskRow[] }> {
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
  return { fleet: target.fleet, current, tasks: rows };
}

/** The report in `format`. Pure. */
export function formatReport(
  report: { fleet: string; current: Required<CurrentState>; tasks: TaskRow[] },
  format: OutputFormat,
  paint: (code: number, text: string) => string,
): string {
  if (format === 'json') return JSON.stringify(report);
  if (format === 'yaml') return toYaml(report).trimEnd();
  const out: string[] = [];
  if (report.current.missing.length > 0) out.push(paint(31, formatMissing(report.current.missing)));
  out.push(
    report.tasks.length === 0
      ? `fleet ${report.fleet}: no running tasks`
      : formatTable(report.tasks, paint, { wide: format === 'wide' }),
  );
  return out.join('\n');
}

function positive(text: unknown, name: string, integer: boolean): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!(value > 0) || (integer && !Number.isInteger(value)) || !Number.isFinite(value))
    throw new ValidationError(
      `${name} must be a positive ${integer ? 'integer' : 'number'}, got '${String(text)}'`,
    );
  return value;
}

/** The command's options (shell completion reads them too). */
export const options = {
  ...commonOptions,
  json: { type: 'boolean' },
  output: { type: 'string', short: 'o' },
  watch: { type: 'boolean', short: 'w' },
  interval: { type: 'string' },
  count: { type: 'string' },
} as const;

/** Entry point of `portcullis status`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, options, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (typeof values.fleet !== 'string' && typeof values.stack !== 'string')
    return usageError(`status needs --fleet (or --stack)\n\n${HELP}`);
  const format = (values.json === true ? 'json' : (values.output ?? 'table')) as OutputFormat;
  if (!OutputFormat.includes(format))
    return usageError(`-o must be one of ${OutputFormat.join(', ')}, got '${format}'\n\n${HELP}`);
  let interval: number;
  let count: number | undefined;
  try {
    interval = positive(values.interval, '--interval', false) ?? 5;
    count = positive(values.count, '--count', true);
  } catch (error) {
    return usageError(`${(error as Error).message}\n\n${HELP}`);
  }
  if (values.watch !== true && (values.interval !== undefined || values.count !== undefined))
    return usageError(`--interval and --count go with --watch\n\n${HELP}`);
  const rounds = values.watch === true ? (count ?? Number.POSITIVE_INFINITY) : 1;
  const stop = new AbortController();
  const onSigint = () => stop.abort();
  if (values.watch === true) process.once('SIGINT', onSigint);
  let target: ControlPlaneTarget | undefined;
  let code: number = ExitCode.Ok;
  try {
    target = await openTarget(values);
    const paint = colour(process.stdout);
    const clear = values.watch === true && format !== 'json' && process.stdout.isTTY === true;
    for (let round = 0; round < rounds && !stop.signal.aborted; round++) {
      if (round > 0) {
        const waited = await sleep(interval * 1000, true, { signal: stop.signal }).catch(() => false);
        if (!waited) break;
      }
      const report = await statusReport(target);
      if (clear) process.stdout.write('\u001b[H\u001b[2J');
      if (values.watch === true && format !== 'json')
        console.log(`${new Date().toISOString()}  fleet ${report.fleet}  (every ${interval}s, Ctrl-C stops)`);
      console.log(formatReport(report, format, paint));
      code =
        report.current.missing.length === 0 && report.tasks.every((r) => r.health === 'ready' && r.inSync)
          ? ExitCode.Ok
          : ExitCode.Failure;
    }
    return code;
  } catch (error) {
    return reportError('status', error);
  } finally {
    process.off('SIGINT', onSigint);
    await target?.close();
  }
}
