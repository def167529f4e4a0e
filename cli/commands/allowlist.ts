/**
 * `portcullis allowlist show|set|add|remove --fleet F [CIDR…] [--file F] --reason "…"` — shows
 * the source allowlist, or changes it through the update-allowlist workflow (validate → stage →
 * nudge and verify every task → promote). Every CIDR is checked here first, so a typo is a
 * clear error before anything starts; `--dry-run` stops after printing the diff.
 *
 * A local run keeps going when its client goes away (stdout closed under `| head`, Ctrl-C,
 * SIGTERM): the workflow completes or rolls back, so no task is left enforcing a version the
 * store does not hold as `AWSCURRENT`; the command then exits 128 + the signal number.
 */
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseCidr } from '../../lib/allowlist/index.ts';
import { S3ObjectStore } from '../../lib/aws/s3-object-store.ts';
import { ValidationError } from '../../lib/errors.ts';
import { Stage } from '../../lib/ports.ts';
import { type AllowlistChange, applyAllowlistChange } from '../../lib/rotation/allowlist-change.ts';
import {
  AllowlistDocument,
  chooseStorage,
  type ObjectStoreFor,
  resolveAllowlist,
  uploadChange,
} from '../../lib/secrets/allowlist-storage.ts';
import { AllowlistTooLarge } from '../../lib/secrets/errors.ts';
import { parseSecret } from '../../lib/secrets/formats.ts';
import { allowlistSecretId, loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { ALLOWLIST_SAMPLE_ENTRIES, INLINE_REQUEST_MAX_BYTES } from '../../lib/workflows/schemas.ts';
import { parseCidrLines, readListText } from '../allowlist-input.ts';
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

export const summary = 'Show or change the source allowlist (update-allowlist workflow)';

const HELP = `Usage: portcullis allowlist show --fleet NAME [--json]
       portcullis allowlist set|add|remove --fleet NAME [CIDR…] [--file FILE] --reason TEXT [options]

show     print the allowlist the fleet serves (AWSCURRENT)
set      replace the whole list with the given CIDRs
add      add the given CIDRs
remove   remove the given CIDRs (sessions from removed sources are cut)

CIDRs are IPv4 or IPv6 (a bare address means /32 or /128), checked before anything starts.
They come from the arguments and/or --file: one CIDR a line, '#' starts a comment, '-' reads
standard input. A set that removes more than half of the list, or empties it, asks first
(--yes skips the question; without a terminal it is refused unless --yes is given).

Options:
  --fleet NAME            fleet name
  --reason TEXT           why (required for changes; kept in the secret and the event)
  --file FILE             read CIDRs from FILE ('-': standard input)
  --dry-run               print the change (added, removed, size before and after) and stop
  --yes                   do not ask before a set that removes more than half of the list
  --wait                  AWS: follow the execution until it ends (local runs always wait)
  --state-machine-arn ARN AWS: the update-allowlist machine (default $ALLOWLIST_STATE_MACHINE_ARN,
                        or the --stack output)
  --execution-name NAME   AWS: override the deterministic execution name
  --json                  print JSON (last line)
${targetHelp}
  -h, --help              show this help

Exit status: 0 done, 1 invalid CIDR, refused, the workflow failed, or a removal did not reach
every task (they are named; the sidecars' poll converges them), 2 usage error,
130/143 interrupted (the change completed or rolled back first).`;

export { parseCidrLines } from '../allowlist-input.ts';

const ACTIONS = ['show', 'set', 'add', 'remove'] as const;
type Action = (typeof ACTIONS)[number];
type ChangeAction = Exclude<Action, 'show'>;

export const options = {
  ...commonOptions,
  reason: { type: 'string' },
  file: { type: 'string' },
  'dry-run': { type: 'boolean' },
  yes: { type: 'boolean' },
  wait: { type: 'boolean' },
  'state-machine-arn': { type: 'string' },
  'execution-name': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Checks every CIDR's syntax; returns one message per bad entry (empty when all are fine). Pure. */
export function cidrProblems(cidrs: readonly string[]): string[] {
  const problems: string[] = [];
  for (const text of cidrs) {
    const parsed = parseCidr(text);
    if (parsed.kind === 'invalid') problems.push(`${JSON.stringify(text)}: ${parsed.reason}`);
  }
  return problems;
}

/**
 * The first option `argv` holds that this command does not know, if any (`--dry-run` on an
 * older release, a typo), so the error can name it and the options instead of the parser's
 * raw message. Pure.
 */
export function unknownOption(argv: readonly string[], known: readonly string[]): string | undefined {
  for (const arg of argv) {
    if (arg === '--') return undefined;
    if (arg === '-' || !arg.startsWith('-')) continue;
    if (arg === '-h') continue;
    const name = arg.startsWith('--') ? arg.slice(2).split('=')[0]! : arg.slice(1);
    if (!arg.startsWith('--') || !known.includes(name)) return arg.split('=')[0];
  }
  return undefined;
}

/** The workflow input for a change given inline. Pure. */
export function allowlistRequest(fleet: string, action: ChangeAction, cidrs: string[], reason: string) {
  return { fleet, [action]: cidrs, reason, updatedBy: `portcullis-cli:${process.env.USER ?? 'unknown'}` };
}

/**
 * Whether a change needs the operator's confirmation: a `set` that removes more than half of a
 * non-empty list, or leaves it empty (every client refused). Pure.
 */
export function needsConfirmation(
  action: ChangeAction,
  preview: { before: number; after: number; removed: number },
): string | undefined {
  if (action !== 'set') return undefined;
  if (preview.after === 0) {
    return `this set empties the allowlist (${preview.before} → 0 entries): every client will be refused`;
  }
  if (preview.before > 0 && preview.removed * 2 > preview.before) {
    return `this set removes ${preview.removed} of ${preview.before} entries (more than half)`;
  }
  return undefined;
}

/** The diff lines `--dry-run` and a change print: counts, then a bounded sample of each side. Pure. */
export function diffLines(
  fleet: string,
  preview: { before: number; cidrs: string[]; added: string[]; removed: string[] },
  paint: (code: number, text: string) => string,
): string[] {
  const lines = [
    `fleet ${fleet} allowlist: ${preview.before} → ${preview.cidrs.length} entries (${preview.added.length} added, ${preview.removed.length} removed)`,
  ];
  const side = (entries: string[], sign: string, code: number) => {
    for (const entry of entries.slice(0, ALLOWLIST_SAMPLE_ENTRIES))
      lines.push(paint(code, `  ${sign} ${entry}`));
    if (entries.length > ALLOWLIST_SAMPLE_ENTRIES)
      lines.push(
        `  … ${entries.length - ALLOWLIST_SAMPLE_ENTRIES} more ${sign === '+' ? 'added' : 'removed'}`,
      );
  };
  side(preview.added, '+', 32);
  side(preview.removed, '-', 31);
  if (preview.added.length === 0 && preview.removed.length === 0) lines.push('  no change');
  return lines;
}

async function ask(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => rl.question(question, resolve));
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/**
 * Keeps a local run alive through the loss of its client: stdout errors (EPIPE) stop the
 * printing only, SIGINT and SIGTERM are noted and answered once the workflow has ended.
 */
function guardClient(): {
  /** From now on a signal waits for the workflow (before: it ends the command, nothing changed yet). */
  arm(): void;
  interrupted(): NodeJS.Signals | undefined;
  stdoutOpen(): boolean;
  release(): void;
} {
  let signal: NodeJS.Signals | undefined;
  let open = true;
  let armed = false;
  const onError = () => {
    open = false;
  };
  const onSignal = (received: NodeJS.Signals) => {
    if (!armed) {
      process.stderr.write(`portcullis allowlist: ${received} received; nothing was changed\n`);
      process.exit(received === 'SIGINT' ? 130 : 143);
    }
    if (signal === undefined) {
      process.stderr.write(
        `portcullis allowlist: ${received} received; finishing the change (it completes or rolls back) before exiting\n`,
      );
    }
    signal ??= received;
  };
  process.stdout.on('error', onError);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    arm: () => {
      armed = true;
    },
    interrupted: () => signal,
    stdoutOpen: () => open,
    release() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // The listener stays: a late EPIPE on the last line must not crash the exit.
    },
  };
}

/** Where the lists a manifest names are read: the target's own bucket, or (AWS) the named one. */
function objectStores(target: ControlPlaneTarget): ObjectStoreFor {
  return (bucket) => {
    const own = target.allowlistObjects();
    if (own !== undefined && own.store.bucket === bucket) return own.store;
    if (target.kind === 'aws') return new S3ObjectStore({ bucket });
    throw new ValidationError(`the allowlist manifest names bucket '${bucket}', not this fleet's`);
  };
}

/** Entry point of `portcullis allowlist`. */
export async function run(argv: string[]): Promise<number> {
  const unknown = unknownOption(argv, Object.keys(options).concat('help'));
  if (unknown !== undefined) {
    return usageError(
      `allowlist does not know the option ${unknown}. Options: ${Object.keys(options)
        .filter((name) => !(name in commonOptions))
        .map((name) => `--${name}`)
        .join(' ')} (and the target options); see portcullis allowlist --help`,
    );
  }
  const parsed = parseCommandArgs(argv, options, HELP, { allowPositionals: true });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [action, ...args] = positionals;
  if (action === undefined || !(ACTIONS as readonly string[]).includes(action)) {
    return usageError(`allowlist needs one of ${ACTIONS.join('|')}\n\n${HELP}`);
  }
  if (typeof values.fleet !== 'string' && typeof values.stack !== 'string')
    return usageError(`allowlist needs --fleet (or --stack)\n\n${HELP}`);
  if (action === 'show' && (args.length > 0 || values.file !== undefined))
    return usageError(`allowlist show takes no CIDRs\n\n${HELP}`);
  const json = values.json === true;
  const c = colour(process.stdout);
  const guard = action === 'show' ? undefined : guardClient();
  const out = (line: string) => {
    if (guard === undefined || guard.stdoutOpen()) console.log(line);
  };
  let target: ControlPlaneTarget | undefined;
  try {
    let cidrs = args;
    if (action !== 'show') {
      if (typeof values.reason !== 'string' || values.reason.trim() === '') {
        return usageError(`allowlist ${action} needs --reason\n\n${HELP}`);
      }
      if (typeof values.file === 'string') {
        let text: string;
        try {
          text = await readListText(values.file);
        } catch (error) {
          console.error(`portcullis allowlist: cannot read ${values.file}: ${(error as Error).message}`);
          return ExitCode.Failure;
        }
        cidrs = [...args, ...parseCidrLines(text)];
      }
      if (cidrs.length === 0 && action !== 'set')
        return usageError(`allowlist ${action} needs at least one CIDR (arguments or --file)\n\n${HELP}`);
      const problems = cidrProblems(cidrs);
      if (problems.length > 0) {
        const shown = problems.slice(0, 10);
        console.error(
          `portcullis allowlist: ${problems.length} invalid CIDR${problems.length > 1 ? 's' : ''}:\n  ${shown.join('\n  ')}${problems.length > shown.length ? `\n  … and ${problems.length - shown.length} more` : ''}`,
        );
        return ExitCode.Failure;
      }
    }
    target = await openTarget(values);
    const config = await loadControlPlaneFleet(target.store, target.fleetConfigSecretId);
    const secretId = allowlistSecretId(config);
    if (secretId === undefined)
      throw new ValidationError(`fleet ${target.fleet} does not keep its allowlist in a secret`);
    const current = await target.store.get(secretId, { stage: Stage.Current });
    const document = await resolveAllowlist(
      parseSecret(AllowlistDocument, secretId, current.value),
      objectStores(target),
    );
    if (action === 'show') {
      if (json) {
        const { manifest, ...rest } = document;
        console.log(
          JSON.stringify({
            fleet: target.fleet,
            secretId,
            versionId: current.versionId,
            ...rest,
            ...(manifest ? { object: manifest.object, sha256: manifest.sha256 } : {}),
          }),
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
    const changeAction = action as ChangeAction;
    // The whole result is validated against the fleet's policy too (bounds, /0), before starting.
    const change: AllowlistChange = changeAction === 'set' ? { set: cidrs } : { [changeAction]: cidrs };
    const preview = applyAllowlistChange(document.cidrs, change, {
      allowAll0: config.allowlist.allowAll0,
      maxEntries: config.allowlist.maxEntries,
    });
    const before = document.cidrs.length;
    const objects = target.allowlistObjects();
    if (preview.changed && (target.kind === 'local' || objects !== undefined)) {
      chooseStorage(
        { cidrs: preview.cidrs, reason: String(values.reason) },
        { objectStore: objects !== undefined },
      );
    }
    if (changeAction === 'remove') {
      const present = new Set(document.cidrs);
      const absent = [
        ...new Set(cidrs.map((text) => (parseCidr(text) as { cidr: { text: string } }).cidr.text)),
      ].filter((cidr) => !present.has(cidr));
      if (absent.length > 0) {
        console.error(
          `portcullis allowlist: warning: ${absent.length} entr${absent.length === 1 ? 'y is not in the list and stays' : 'ies are not in the list and stay'} absent: ${absent.slice(0, 10).join(', ')}${absent.length > 10 ? ', …' : ''}`,
        );
      }
    }
    const diff = diffLines(target.fleet, { before, ...preview }, c);
    if (values['dry-run'] === true) {
      if (json) {
        out(
          JSON.stringify({
            dryRun: true,
            fleet: target.fleet,
            sizeBefore: before,
            sizeAfter: preview.cidrs.length,
            addedCount: preview.added.length,
            removedCount: preview.removed.length,
            added: preview.added.slice(0, ALLOWLIST_SAMPLE_ENTRIES),
            removed: preview.removed.slice(0, ALLOWLIST_SAMPLE_ENTRIES),
          }),
        );
      } else {
        for (const line of diff) out(line);
        out('dry run: nothing was changed');
      }
      return ExitCode.Ok;
    }
    if (!json) for (const line of diff) out(line);
    const risk = needsConfirmation(changeAction, {
      before,
      after: preview.cidrs.length,
      removed: preview.removed.length,
    });
    if (risk !== undefined && values.yes !== true) {
      const canAsk = process.stdin.isTTY === true && values.file !== '-';
      if (!canAsk) {
        console.error(`portcullis allowlist: refused: ${risk}; pass --yes to confirm`);
        return ExitCode.Failure;
      }
      if (!(await ask(`${risk}. Continue? [y/N] `))) {
        console.error('portcullis allowlist: not confirmed; nothing was changed');
        return ExitCode.Failure;
      }
    }
    const reason = String(values.reason);
    let request: Record<string, unknown> = allowlistRequest(target.fleet, changeAction, cidrs, reason);
    if (Buffer.byteLength(JSON.stringify(request), 'utf8') > INLINE_REQUEST_MAX_BYTES) {
      if (objects === undefined) {
        throw new AllowlistTooLarge(
          `the change is over the ${INLINE_REQUEST_MAX_BYTES} bytes an execution input carries here; pass --allowlist-bucket (or set ALLOWLIST_BUCKET) to upload it`,
          { limit: 'INLINE_REQUEST_MAX_BYTES', path: changeAction },
        );
      }
      const uploaded = await uploadChange(objects.store, objects.prefix, changeAction, cidrs);
      const { [changeAction]: _inline, ...rest } = request;
      request = { ...rest, change: uploaded };
    }
    const say = (line: string) => {
      if (!json) out(`  ${line}`);
    };
    let outcome: WorkflowOutcome;
    if (target.kind === 'local') {
      guard?.arm();
      outcome = await runLocalWorkflow('update-allowlist', request, await target.ports(), { print: say });
    } else {
      const arn = stateMachineArn('allowlist', values['state-machine-arn'], target.stack);
      const digest = createHash('sha256')
        .update(JSON.stringify({ action, cidrs, reason: values.reason }))
        .digest('hex');
      const name =
        typeof values['execution-name'] === 'string'
          ? values['execution-name']
          : executionName('allowlist', target.fleet, `${action}-${digest.slice(0, 10)}`, new Date(), 10);
      const client = target.stepFunctions?.();
      outcome = await startAwsWorkflow({
        ...(client === undefined ? {} : { client }),
        stateMachineArn: arn,
        executionName: name,
        input: request,
        wait: values.wait === true,
        print: say,
      });
    }
    // A removal is a security change: a task that did not take it still admits the removed
    // sources until its poll catches up, so the command fails and names it.
    const missed =
      outcome.status === 'SUCCEEDED'
        ? ((outcome.output as { unreachableTasks?: string[] } | undefined)?.unreachableTasks ?? [])
        : [];
    const unreachable = preview.removed.length > 0 ? missed : [];
    if (json) {
      out(
        JSON.stringify({
          status: outcome.status,
          executionName: outcome.executionName,
          ...(outcome.error ? { error: outcome.error, cause: outcome.cause } : {}),
          added: preview.added.slice(0, ALLOWLIST_SAMPLE_ENTRIES),
          removed: preview.removed.slice(0, ALLOWLIST_SAMPLE_ENTRIES),
          addedCount: preview.added.length,
          removedCount: preview.removed.length,
          sizeBefore: before,
          size: preview.cidrs.length,
          ...(missed.length > 0 ? { unreachableTasks: missed } : {}),
          seconds: (outcome.finishedAt.getTime() - outcome.startedAt.getTime()) / 1000,
        }),
      );
    } else {
      out(outcomeLine(outcome, values.wait === true, c));
    }
    if (missed.length > 0 && unreachable.length === 0) {
      console.error(
        `portcullis allowlist: warning: ${missed.length} task${missed.length === 1 ? '' : 's'} did not answer in time and will take the new list from their poll: ${missed.join(', ')}`,
      );
    }
    if (unreachable.length > 0) {
      console.error(
        `portcullis allowlist: the removal did not reach ${unreachable.length} task${unreachable.length === 1 ? '' : 's'}: ${unreachable.join(', ')}; they still admit the removed sources until their poll converges them`,
      );
    }
    const signal = guard?.interrupted();
    if (signal !== undefined) return signal === 'SIGINT' ? 130 : 143;
    if (unreachable.length > 0) return ExitCode.Failure;
    return outcomeOk(outcome, values.wait === true) ? ExitCode.Ok : ExitCode.Failure;
  } catch (error) {
    return reportError('allowlist', error);
  } finally {
    guard?.release();
    await target?.close();
  }
}
