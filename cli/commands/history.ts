/**
 * `portcullis history --fleet F` — what the control plane did to the fleet, oldest first: the
 * events it published (CertificateRotated, AllowlistUpdated, rollbacks, …) and, on AWS, its
 * executions' status changes. Locally from the fleet directory's `events.jsonl`; on AWS from the
 * stack's event log group (`/aws/events/<stack>`, the `EventLogGroupName` output).
 */
import { readFile } from 'node:fs/promises';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { stringify as toYaml } from 'yaml';
import { awsClientConfig } from '../../lib/aws/client-config.ts';
import { readEventHistory } from '../../lib/aws/event-history.ts';
import { ValidationError } from '../../lib/errors.ts';
import type { LoggedEvent } from '../../lib/local/log-notifier.ts';
import { colour, ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import { commonOptions, localPaths, openTarget, targetHelp } from '../demo/target.ts';

export const summary = "Show the fleet's control-plane events";

const HELP = `Usage: portcullis history --fleet NAME [--since 24h] [--type TYPE]… [--limit N] [-o table|json|yaml]

Lists what the control plane did to the fleet, oldest first: rotations, allowlist changes,
rollbacks and converged tasks, and on AWS each execution's status changes. Local fleets
(--local DIR) keep them in DIR/events.jsonl; on AWS they are read from the stack's event log
group (--stack NAME, or --log-group NAME / $EVENT_LOG_GROUP).

Options:
  --fleet NAME          fleet name (with --stack: the stack's FleetName output)
  --since DURATION      how far back: 30m, 24h, 7d, or an ISO time (default 7d)
  --type TYPE           only events of this detail type (repeatable), e.g. CertificateRotated
  --limit N             at most the N newest events (default 200)
  --log-group NAME      AWS: the event log group (default: the --stack output, $EVENT_LOG_GROUP)
  -o, --output FORMAT   table (default), json (one event per line), yaml
${targetHelp}
  -h, --help            show this help

Exit status: 0 (also with no events), 1 the events could not be read, 2 usage error.`;

/** `30m`, `24h`, `7d`, `2w` or an ISO time → the time it names, relative to `now`. */
export function parseSince(text: string, now: Date = new Date()): Date {
  const m = /^(\d+)([smhdw])$/.exec(text.trim());
  if (m) {
    const unit = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
    return new Date(now.getTime() - Number(m[1]) * unit * 1000);
  }
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw new ValidationError(`--since takes 30m, 24h, 7d or an ISO time, got '${text}'`);
  return new Date(at);
}

/** The events of a local `events.jsonl` (lines that are not events are skipped; no file: none). */
export async function readLocalEvents(file: string): Promise<LoggedEvent[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const events: LoggedEvent[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const event = JSON.parse(line) as Partial<LoggedEvent>;
      if (typeof event.time === 'string' && typeof event.detailType === 'string')
        events.push({
          time: event.time,
          source: event.source ?? 'portcullis',
          detailType: event.detailType,
          detail: event.detail ?? {},
        });
    } catch {
      // A line cut short by a crash mid-append: the rest of the file is still good.
    }
  }
  return events;
}

/** Keeps the events of `fleet` since `since`, of `types` (all when empty), the `limit` newest, oldest first. Pure. */
export function selectEvents(
  events: readonly LoggedEvent[],
  options: { fleet: string; since: Date; types: readonly string[]; limit: number },
): LoggedEvent[] {
  const since = options.since.getTime();
  return events
    .filter((e) => Date.parse(e.time) >= since)
    .filter(
      (e) => e.source !== 'portcullis' || e.detail.fleet === undefined || e.detail.fleet === options.fleet,
    )
    .filter((e) => options.types.length === 0 || options.types.includes(e.detailType))
    .sort((a, b) => a.time.localeCompare(b.time))
    .slice(-options.limit);
}

const SUMMARY_KEYS = [
  'status',
  'certificate',
  'certificates',
  'serial',
  'previousSerial',
  'versionId',
  'taskId',
  'tasks',
  'reason',
  'error',
  'cause',
  'name',
];

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(text).join(',');
  return JSON.stringify(value);
}

/** One line per event: time, type, the detail's telling fields. Pure. */
export function formatEvents(events: readonly LoggedEvent[]): string {
  if (events.length === 0) return 'no events';
  const width = Math.max(4, ...events.map((e) => e.detailType.length));
  const lines = events.map((e) => {
    const fields = SUMMARY_KEYS.filter((k) => e.detail[k] !== undefined && e.detail[k] !== null).map(
      (k) => `${k}=${text(e.detail[k]).slice(0, 80)}`,
    );
    return `${e.time.slice(0, 19).replace('T', ' ')}  ${e.detailType.padEnd(width)}  ${fields.join(' ')}`.trimEnd();
  });
  return [`${'TIME'.padEnd(19)}  ${'TYPE'.padEnd(width)}  DETAIL`, ...lines].join('\n');
}

/** The command's options (shell completion reads them too). */
export const options = {
  ...commonOptions,
  since: { type: 'string' },
  type: { type: 'string', multiple: true },
  limit: { type: 'string' },
  'log-group': { type: 'string' },
  output: { type: 'string', short: 'o' },
} as const;

/** Entry point of `portcullis history`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, options, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (typeof values.fleet !== 'string' && typeof values.stack !== 'string')
    return usageError(`history needs --fleet (or --stack)\n\n${HELP}`);
  const format = values.output ?? 'table';
  if (!['table', 'json', 'yaml'].includes(format))
    return usageError(`-o must be table, json or yaml, got '${format}'\n\n${HELP}`);
  let since: Date;
  let limit: number;
  try {
    since = parseSince(values.since ?? '7d');
    limit = values.limit === undefined ? 200 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1)
      throw new ValidationError(`--limit must be a positive integer, got '${values.limit}'`);
  } catch (error) {
    return usageError(`${(error as Error).message}\n\n${HELP}`);
  }
  try {
    const target = await openTarget(values);
    let events: LoggedEvent[];
    try {
      if (target.kind === 'local') {
        events = await readLocalEvents(localPaths(target.localDir!).events);
      } else {
        const group = values['log-group'] ?? process.env.EVENT_LOG_GROUP ?? target.stack?.eventLogGroupName;
        if (group === undefined || group === '')
          throw new ValidationError(
            '--log-group (or $EVENT_LOG_GROUP, or --stack with eventLog=true) is required on AWS',
          );
        const region = values.region;
        const profile = values.profile;
        const client = new CloudWatchLogsClient({
          ...(region === undefined ? {} : { region }),
          ...(profile === undefined ? {} : { profile }),
          ...awsClientConfig(),
        });
        try {
          events = await readEventHistory(group, since, { limit, client });
        } finally {
          client.destroy();
        }
      }
    } finally {
      await target.close();
    }
    const selected = selectEvents(events, { fleet: target.fleet, since, types: values.type ?? [], limit });
    if (format === 'json') for (const e of selected) console.log(JSON.stringify(e));
    else if (format === 'yaml') console.log(toYaml(selected).trimEnd());
    else {
      const paint = colour(process.stdout);
      console.log(
        formatEvents(selected)
          .split('\n')
          .map((line) => (/Failed|RolledBack|FAILED|TIMED_OUT|ABORTED/.test(line) ? paint(31, line) : line))
          .join('\n'),
      );
    }
    return ExitCode.Ok;
  } catch (error) {
    return reportError('history', error);
  }
}
