/**
 * `portcullis demo [--tasks N] [--json]` (`npm run demo`) — the embedded default: a live local
 * fleet, the real rotation and allowlist workflows under traffic, and a measured report.
 */
import { colour, ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import type { AlertScenarioReport } from '../demo/alert.ts';
import { DemoAborted, type DemoReport, runDemo } from '../demo/demo.ts';

export const summary = 'Run the whole loop on this machine: local fleet, rotation, allowlist';

const HELP = `Usage: portcullis demo [--tasks N] [--json] [--state-dir DIR] [--keep]

Starts a local CA, a file-backed secret store, mTLS and passthrough upstreams, a DNS responder
and N gateway tasks (each a real HAProxy and a real sidecar on its own loopback address,
127.0.1.N, all reading the one fleet config); creates the fleet's secrets as 'portcullis init'
does; sends traffic (new mTLS and passthrough connections in a loop, long-lived streams); runs
the rotate-certificates state machine, then update-allowlist removing the traffic's source and
restoring it; prints what it measured.

Options:
  --tasks N         gateway tasks (default 3)
  --json            progress on stderr; the report as JSON on the last line of stdout
  --state-dir DIR   keep the store, CA and task files here (default: a temp dir, removed)
  --keep            after the report, keep the fleet running until Ctrl-C (inspect it with
                    'portcullis status --fleet demo --local DIR')
  -h, --help        show this help

Exit status: 0 everything worked, 1 something failed (the report says what), 2 usage error,
130 interrupted.`;

/** The alert scenario's report line: fired while a task was held on the old serial, cleared by the rollback. Pure. */
export function formatAlert(alert: AlertScenarioReport, mark: (ok: boolean) => string): string {
  const fired = alert.fired ? `fired after ${alert.firedAfterSeconds?.toFixed(1)} s` : 'did NOT fire';
  const cleared = alert.cleared
    ? `cleared ${alert.clearedAfterSeconds?.toFixed(1)} s after the rollback`
    : 'did NOT clear';
  return [
    `${mark(alert.fired && alert.cleared && alert.otherTasksInSync)} alert ${alert.rule}: ${fired} while ${alert.task} was held on ${alert.heldSerial ?? '-'} (refused: ${alert.refusal ?? '-'}), ${cleared}`,
    `    other tasks ${alert.otherTasksInSync ? 'in sync throughout' : 'OUT OF SYNC too'}`,
  ].join('\n');
}

/** The human-readable report. Pure. */
export function formatReport(report: DemoReport, paint: (code: number, text: string) => string): string {
  const r = report.rotation;
  const t = report.traffic;
  const a = report.allowlist;
  const mark = (ok: boolean) => (ok ? paint(32, '✓') : paint(31, '✗'));
  const lines = [
    '',
    `Portcullis demo — ${report.tasks} task(s), ${report.totalSeconds.toFixed(1)} s`,
    `${mark(r.status === 'SUCCEEDED' && r.tasksServingNew === report.tasks)} rotation ${r.status}: ${r.previousSerial ?? '-'} → ${r.newSerial ?? '-'}`,
    ...r.perTask.map(
      (p) =>
        `    ${p.taskId}: ${p.before ?? '-'} → ${p.after ?? '-'}${p.servingNewAfterSeconds === null ? '' : `  (serving ${p.servingNewAfterSeconds.toFixed(3)} s after issuance)`}`,
    ),
    `    every task serving the new serial ${r.seconds === null ? 'n/a' : `${r.seconds.toFixed(3)} s`} after issuance; execution ${r.executionSeconds.toFixed(2)} s`,
    `${mark(t.failedHandshakes === 0 && t.droppedLongLived === 0)} traffic during the rotation: ${t.handshakes} handshakes, ${t.failedHandshakes} failed; ${t.longLived} long-lived, ${t.droppedLongLived} dropped (${t.longLivedBytes} bytes echoed)`,
    ...t.failures.map((f) => `    ${f}`),
    `${mark(a.status === 'SUCCEEDED' && a.removedSourceRefused && a.cutLongLived === a.longLivedOfRemovedSource && a.otherSourceUnaffected)} allowlist ${a.status}: ${a.removed} removed in ${a.seconds === null ? 'n/a' : `${a.seconds.toFixed(3)} s`}; new connections from it ${a.removedSourceRefused ? 'refused' : 'NOT refused'}; ${a.cutLongLived}/${a.longLivedOfRemovedSource} of its long-lived sessions cut; other source ${a.otherSourceUnaffected ? 'unaffected' : 'AFFECTED'}`,
    `${mark(a.restored)} allowlist restore ${a.restoreStatus}: ${a.restored ? 'connections accepted again' : 'NOT restored'}`,
    ...(report.alert === undefined ? [] : [formatAlert(report.alert, mark)]),
  ];
  if (r.error) lines.push(`    rotation error: ${r.error}: ${r.cause ?? ''}`);
  if (a.error) lines.push(`    allowlist error: ${a.error}`);
  if (report.missing.length > 0) {
    lines.push(paint(33, 'Missing in this tree:'), ...report.missing.map((m) => `    ${m}`));
  }
  lines.push(report.ok ? paint(32, 'all good') : paint(31, 'something failed (see above)'));
  return lines.join('\n');
}

/** The signals that stop the demo with its cleanup: Ctrl-C, a supervisor, a closed terminal. */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** A second signal within this long is the first one delivered twice (terminal and npm). */
const REPEAT_SIGNAL_MS = 2000;

/** The command's options (shell completion reads them too). */
export const options = {
  tasks: { type: 'string' },
  json: { type: 'boolean' },
  'state-dir': { type: 'string' },
  keep: { type: 'boolean' },
} as const;

/** Entry point of `portcullis demo`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, options, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const tasks = values.tasks === undefined ? 3 : Number(values.tasks);
  if (!Number.isInteger(tasks) || tasks < 1 || tasks > 200)
    return usageError(`--tasks must be 1–200\n\n${HELP}`);
  const json = values.json === true;
  const out = json ? process.stderr : process.stdout;
  const paint = colour(out);
  const controller = new AbortController();
  let interrupted: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted !== undefined) {
      // `npm run demo` forwards the terminal's Ctrl-C, which the demo also received itself: a
      // repeat this soon is the same interrupt, and the cleanup already under way goes on.
      if (performance.now() - interrupted < REPEAT_SIGNAL_MS) return;
      // A later second Ctrl-C: stop now. The exit hooks kill every child and remove the
      // temporary directory synchronously.
      process.exit(130);
    }
    interrupted = performance.now();
    out.write(`\n${signal}: stopping the demo and cleaning up…\n`);
    controller.abort();
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  try {
    const report = await runDemo({
      tasks,
      ...(values['state-dir'] === undefined ? {} : { stateDir: values['state-dir'] }),
      keep: values.keep === true,
      signal: controller.signal,
      print: (line) => out.write(`${line}\n`),
    });
    if (interrupted !== undefined && values.keep !== true) return 130;
    if (json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
    } else {
      console.log(formatReport(report, paint));
    }
    return report.ok ? ExitCode.Ok : ExitCode.Failure;
  } catch (error) {
    // An interrupt can surface as any error of whatever step it cut short.
    if (error instanceof DemoAborted || interrupted !== undefined) return 130;
    return reportError('demo', error, out);
  } finally {
    for (const signal of SIGNALS) process.off(signal, onSignal);
  }
}
