/**
 * `portcullis rotate --fleet F` — rotates the fleet's certificates through the
 * rotate-certificates workflow: on AWS by starting the state machine, locally (`--local DIR`) by
 * running the same ASL here against the directory's store, CA and process fleet.
 */
import { createHash } from 'node:crypto';
import { loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { readCurrentCertificate } from '../../lib/workflows/rotation-steps.ts';
import { colour, ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import { stateMachineArn } from '../demo/stack.ts';
import { type ControlPlaneTarget, commonOptions, openTarget, targetHelp } from '../demo/target.ts';
import {
  executionName,
  outcomeLine,
  outcomeOk,
  runLocalWorkflow,
  startAwsWorkflow,
  type WorkflowOutcome,
} from '../demo/workflow.ts';

export const summary = 'Rotate certificates (rotate-certificates workflow)';

const HELP = `Usage: portcullis rotate --fleet NAME [--certificate NAME]… [options]

Issues new certificates, stages them, nudges every task, verifies with a real handshake that
each serves the new serial, promotes, and revokes the superseded certificate after a grace
period; any failure rolls back. Certificates not yet due are skipped unless --force.

Options:
  --fleet NAME            fleet name
  --certificate NAME      rotate only this certificate (repeatable; default: all due)
  --force                 rotate even if not due
  --dry-run               plan only: show what would rotate, change nothing
  --wait                  AWS: follow the execution until it ends (local runs always wait)
  --grace-seconds N       wait before revoking the superseded certificate (default: the
                          machine's, 300; local default 0)
  --state-machine-arn ARN AWS: the rotate-certificates machine (default $ROTATE_STATE_MACHINE_ARN,
                        or the --stack output)
  --execution-name NAME   AWS: override the deterministic execution name
  --bucket-minutes N      AWS: time bucket of the execution name (default 10). The name is
                          rotate-<fleet>-<certificates>-<UTC bucket start>, so the same command
                          repeated within one bucket starts one execution, not two
  --json                  print the outcome as JSON (last line)
${targetHelp}
  -h, --help              show this help

Exit status: 0 succeeded (or started, without --wait), 1 failed or rolled back, 2 usage error.`;

/** The command's options (shell completion reads them too). */
export const options = {
  ...commonOptions,
  certificate: { type: 'string', multiple: true },
  force: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  wait: { type: 'boolean' },
  'grace-seconds': { type: 'string' },
  'state-machine-arn': { type: 'string' },
  'execution-name': { type: 'string' },
  'bucket-minutes': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Entry point of `portcullis rotate`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, options, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (typeof values.fleet !== 'string' && typeof values.stack !== 'string')
    return usageError(`rotate needs --fleet (or --stack)\n\n${HELP}`);
  const grace = values['grace-seconds'];
  if (grace !== undefined && !/^\d{1,5}$/.test(String(grace))) {
    return usageError(`--grace-seconds must be a whole number of seconds\n\n${HELP}`);
  }
  const bucket = values['bucket-minutes'] === undefined ? 10 : Number(values['bucket-minutes']);
  if (!Number.isInteger(bucket) || bucket < 1 || bucket > 1440) {
    return usageError(`--bucket-minutes must be 1–1440\n\n${HELP}`);
  }
  const json = values.json === true;
  const c = colour(process.stdout);
  const say = (line: string) => {
    if (!json) console.log(line);
  };
  const certificates = (values.certificate as string[] | undefined) ?? undefined;
  const local = typeof values.local === 'string';
  const input = {
    fleet: values.fleet,
    ...(certificates === undefined ? {} : { certificates }),
    force: values.force === true,
    dryRun: values['dry-run'] === true,
    mode: 'manual',
    ...(grace !== undefined
      ? { graceSeconds: Number(grace) }
      : local
        ? { graceSeconds: 0, rolloutPollSeconds: 1 }
        : {}),
  };
  let target: ControlPlaneTarget | undefined;
  try {
    target = await openTarget(values);
    input.fleet = target.fleet;
    let outcome: WorkflowOutcome;
    let before: Record<string, string | null> = {};
    if (target.kind === 'local') {
      const ports = await target.ports();
      before = await currentSerials(target);
      say(
        `rotating ${certificates?.join(', ') ?? 'due certificates'} of fleet ${target.fleet} (local ${target.localDir})`,
      );
      outcome = await runLocalWorkflow('rotate-certificates', input, ports, {
        print: (line) => say(`  ${line}`),
      });
    } else {
      const arn = stateMachineArn('rotate', values['state-machine-arn'], target.stack);
      const subject = certificates === undefined ? 'all' : certificates.join('_');
      const name =
        typeof values['execution-name'] === 'string'
          ? values['execution-name']
          : executionName(
              'rotate',
              target.fleet,
              `${subject}-${createHash('sha256').update(JSON.stringify(input)).digest('hex').slice(0, 6)}`,
              new Date(),
              bucket,
            );
      const client = target.stepFunctions?.();
      outcome = await startAwsWorkflow({
        ...(client === undefined ? {} : { client }),
        stateMachineArn: arn,
        executionName: name,
        input,
        wait: values.wait === true,
        print: (line) => say(`  ${line}`),
      });
    }
    const after = target.kind === 'local' ? await currentSerials(target) : {};
    const changes = Object.entries(after).map(([name, serial]) => ({
      name,
      from: before[name] ?? null,
      to: serial,
    }));
    if (json) {
      console.log(
        JSON.stringify({
          status: outcome.status,
          executionName: outcome.executionName,
          ...(outcome.executionArn ? { executionArn: outcome.executionArn } : {}),
          ...(outcome.error ? { error: outcome.error, cause: outcome.cause } : {}),
          seconds: (outcome.finishedAt.getTime() - outcome.startedAt.getTime()) / 1000,
          ...(target.kind === 'local' ? { certificates: changes } : {}),
          output: outcome.output ?? null,
        }),
      );
    } else {
      if (input.dryRun) for (const line of dryRunReport(outcome.output)) say(`  ${line}`);
      for (const change of changes) {
        const moved = change.from !== change.to;
        say(`  ${change.name}: ${change.from ?? '-'} ${moved ? '→' : '='} ${change.to ?? '-'}`);
      }
      say(outcomeLine(outcome, values.wait === true, c));
    }
    return outcomeOk(outcome, values.wait === true) ? ExitCode.Ok : ExitCode.Failure;
  } catch (error) {
    return reportError('rotate', error);
  } finally {
    await target?.close();
  }
}

interface PlanLine {
  name: string;
  reason: string;
  renewAt?: string | null;
  lease?: string;
  backoff?: { failures: number; lastError: string; retryAt: string; waiting: boolean };
}

/**
 * The plan of a dry run, one line per certificate: what would rotate and why, what is skipped
 * and until when (renewal time, a back-off after failed rotations, another execution's lease).
 */
export function dryRunReport(output: unknown): string[] {
  const plan = output as { rotate?: PlanLine[]; skip?: PlanLine[] } | null | undefined;
  if (!Array.isArray(plan?.rotate) || !Array.isArray(plan?.skip)) return [];
  const failures = (b: NonNullable<PlanLine['backoff']>) =>
    `${b.failures} failed rotation${b.failures === 1 ? '' : 's'} (last ${b.lastError})`;
  const lines = plan.rotate.map(
    (e) => `would rotate ${e.name}: ${e.reason}${e.backoff ? `, after ${failures(e.backoff)}` : ''}`,
  );
  for (const e of plan.skip) {
    if (e.reason === 'backing-off' && e.backoff) {
      lines.push(`skip ${e.name}: backing off after ${failures(e.backoff)} until ${e.backoff.retryAt}`);
    } else if (e.reason === 'rotation-in-progress') {
      lines.push(`skip ${e.name}: being rotated by another execution (${e.lease ?? 'lease held'})`);
    } else {
      lines.push(`skip ${e.name}: ${e.reason}${e.renewAt ? `, renews at ${e.renewAt}` : ''}`);
    }
  }
  return lines;
}

/** `AWSCURRENT` serial of each of the fleet's certificates (null: none yet). */
async function currentSerials(target: ControlPlaneTarget): Promise<Record<string, string | null>> {
  const config = await loadControlPlaneFleet(target.store, target.fleetConfigSecretId);
  const out: Record<string, string | null> = {};
  for (const spec of config.certificates) {
    const current = await readCurrentCertificate(target.store, spec.secretId);
    out[spec.name] = typeof current === 'object' ? current.serial : null;
  }
  return out;
}
