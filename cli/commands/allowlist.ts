/**
 * `portcullis allowlist show|set|add|remove --fleet F [CIDR…] --reason "…"` — shows the source
 * allowlist, or changes it through the update-allowlist workflow (validate → stage → nudge and
 * verify every task → promote). Every CIDR is checked here first, so a typo is a clear error
 * before anything starts.
 */
import { createHash } from 'node:crypto';
import { parseCidr } from '../../lib/allowlist/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import { Stage } from '../../lib/ports.ts';
import { type AllowlistChange, applyAllowlistChange } from '../../lib/rotation/allowlist-change.ts';
import { AllowlistSecret, parseSecret } from '../../lib/secrets/formats.ts';
import { allowlistSecretId, loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { colour, ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import { type ControlPlaneTarget, commonOptions, openTarget, targetHelp } from '../demo/target.ts';
import {
  executionName,
  outcomeLine,
  outcomeOk,
  runLocalWorkflow,
  startAwsWorkflow,
  type WorkflowOutcome,
} from '../demo/workflow.ts';

export const summary = 'Show or change the source allowlist (update-allowlist workflow)';

const HELP = `Usage: portcullis allowlist show --fleet NAME [--json]
       portcullis allowlist set|add|remove --fleet NAME CIDR… --reason TEXT [options]

show     print the allowlist the fleet serves (AWSCURRENT)
set      replace the whole list with the given CIDRs (none: nobody is allowed)
add      add the given CIDRs
remove   remove the given CIDRs (sessions from removed sources are cut)

CIDRs are IPv4 or IPv6 (a bare address means /32 or /128), checked before anything starts.

Options:
  --fleet NAME            fleet name
  --reason TEXT           why (required for changes; kept in the secret and the event)
  --wait                  AWS: follow the execution until it ends (local runs always wait)
  --state-machine-arn ARN AWS: the update-allowlist machine (default $ALLOWLIST_STATE_MACHINE_ARN)
  --execution-name NAME   AWS: override the deterministic execution name
  --json                  print JSON (last line)
${targetHelp}
  -h, --help              show this help

Exit status: 0 done, 1 invalid CIDR or the workflow failed, 2 usage error.`;

const ACTIONS = ['show', 'set', 'add', 'remove'] as const;
type Action = (typeof ACTIONS)[number];

/** Checks every CIDR's syntax; returns one message per bad entry (empty when all are fine). Pure. */
export function cidrProblems(cidrs: readonly string[]): string[] {
  const problems: string[] = [];
  for (const text of cidrs) {
    const parsed = parseCidr(text);
    if (parsed.kind === 'invalid') problems.push(`${JSON.stringify(text)}: ${parsed.reason}`);
  }
  return problems;
}

/** The workflow input for a change. Pure. */
export function allowlistRequest(
  fleet: string,
  action: Exclude<Action, 'show'>,
  cidrs: string[],
  reason: string,
) {
  return { fleet, [action]: cidrs, reason, updatedBy: `portcullis-cli:${process.env.USER ?? 'unknown'}` };
}

/** Entry point of `portcullis allowlist`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(
    argv,
    {
      ...commonOptions,
      reason: { type: 'string' },
      wait: { type: 'boolean' },
      'state-machine-arn': { type: 'string' },
      'execution-name': { type: 'string' },
      json: { type: 'boolean' },
    },
    HELP,
    { allowPositionals: true },
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [action, ...cidrs] = positionals;
  if (action === undefined || !(ACTIONS as readonly string[]).includes(action)) {
    return usageError(`allowlist needs one of ${ACTIONS.join('|')}\n\n${HELP}`);
  }
  if (typeof values.fleet !== 'string') return usageError(`allowlist needs --fleet\n\n${HELP}`);
  if (action === 'show' && cidrs.length > 0) return usageError(`allowlist show takes no CIDRs\n\n${HELP}`);
  if (action !== 'show') {
    if (cidrs.length === 0 && action !== 'set')
      return usageError(`allowlist ${action} needs at least one CIDR\n\n${HELP}`);
    if (typeof values.reason !== 'string' || values.reason.trim() === '') {
      return usageError(`allowlist ${action} needs --reason\n\n${HELP}`);
    }
    const problems = cidrProblems(cidrs);
    if (problems.length > 0) {
      console.error(
        `portcullis allowlist: invalid CIDR${problems.length > 1 ? 's' : ''}:\n  ${problems.join('\n  ')}`,
      );
      return ExitCode.Failure;
    }
  }
  const json = values.json === true;
  const c = colour(process.stdout);
  let target: ControlPlaneTarget | undefined;
  try {
    target = await openTarget(values);
    const config = await loadControlPlaneFleet(target.store, target.fleetConfigSecretId);
    const secretId = allowlistSecretId(config);
    if (secretId === undefined)
      throw new ValidationError(`fleet ${target.fleet} does not keep its allowlist in a secret`);
    const current = await target.store.get(secretId, { stage: Stage.Current });
    const document = parseSecret(AllowlistSecret, secretId, current.value);
    if (action === 'show') {
      if (json) {
        console.log(
          JSON.stringify({ fleet: target.fleet, secretId, versionId: current.versionId, ...document }),
        );
      } else {
        console.log(
          `fleet ${target.fleet} allowlist (${secretId} version ${current.versionId}), ${document.cidrs.length} entr${document.cidrs.length === 1 ? 'y' : 'ies'}:`,
        );
        for (const cidr of document.cidrs) console.log(`  ${cidr}`);
        if (document.reason)
          console.log(`reason: ${document.reason}${document.updatedBy ? ` (by ${document.updatedBy})` : ''}`);
      }
      return ExitCode.Ok;
    }
    // The whole result is validated against the fleet's policy too (bounds, /0), before starting.
    const change: AllowlistChange = action === 'set' ? { set: cidrs } : { [action]: cidrs };
    const preview = applyAllowlistChange(document.cidrs, change, {
      allowAll0: config.allowlist.allowAll0,
      maxEntries: config.allowlist.maxEntries,
    });
    if (!json) {
      const parts = [
        ...preview.added.map((x) => c(32, `+${x}`)),
        ...preview.removed.map((x) => c(31, `-${x}`)),
      ];
      console.log(
        `fleet ${target.fleet}: ${parts.length > 0 ? parts.join(' ') : 'no change'} → ${preview.cidrs.length} entries`,
      );
    }
    const request = allowlistRequest(
      target.fleet,
      action as Exclude<Action, 'show'>,
      cidrs,
      String(values.reason),
    );
    const say = (line: string) => {
      if (!json) console.log(`  ${line}`);
    };
    let outcome: WorkflowOutcome;
    if (target.kind === 'local') {
      outcome = await runLocalWorkflow('update-allowlist', request, await target.ports(), { print: say });
    } else {
      const arn = String(values['state-machine-arn'] ?? process.env.ALLOWLIST_STATE_MACHINE_ARN ?? '');
      if (arn === '')
        throw new ValidationError('--state-machine-arn (or ALLOWLIST_STATE_MACHINE_ARN) is required on AWS');
      const digest = createHash('sha256')
        .update(JSON.stringify({ action, cidrs, reason: values.reason }))
        .digest('hex');
      const name =
        typeof values['execution-name'] === 'string'
          ? values['execution-name']
          : executionName('allowlist', target.fleet, `${action}-${digest.slice(0, 10)}`, new Date(), 10);
      outcome = await startAwsWorkflow({
        stateMachineArn: arn,
        executionName: name,
        input: request,
        wait: values.wait === true,
        print: say,
      });
    }
    if (json) {
      console.log(
        JSON.stringify({
          status: outcome.status,
          executionName: outcome.executionName,
          ...(outcome.error ? { error: outcome.error, cause: outcome.cause } : {}),
          added: preview.added,
          removed: preview.removed,
          size: preview.cidrs.length,
          seconds: (outcome.finishedAt.getTime() - outcome.startedAt.getTime()) / 1000,
        }),
      );
    } else {
      console.log(outcomeLine(outcome, values.wait === true, c));
    }
    return outcomeOk(outcome, values.wait === true) ? ExitCode.Ok : ExitCode.Failure;
  } catch (error) {
    return reportError('allowlist', error);
  } finally {
    await target?.close();
  }
}
