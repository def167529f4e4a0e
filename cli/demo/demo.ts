/**
 * `npm run demo`: the whole loop on one machine, for real. The local world of
 * `environment.ts` comes up (CA, store, upstreams, DNS, N tasks of real HAProxy + real sidecar,
 * secrets created as `portcullis init` creates them); traffic flows (mTLS through the terminate
 * route, end-to-end mTLS through the passthrough route, new connections in a loop and long-lived
 * streams); then the real rotate-certificates and update-allowlist state machines run against
 * it through aws-local-stepfunctions. Every figure of the report is measured while it happens.
 */
import {
  connectOnce,
  openLongLived,
  type TrafficGenerator,
  type TrafficRoute,
} from '../../embedded/traffic.ts';
import { type AlertScenarioReport, heldOnOldSerial } from './alert.ts';
import {
  DEMO_FLEET,
  DemoAborted,
  type DemoEnvironment,
  DemoSources,
  demoTraffic,
  firstServed,
  measureRotation,
  type RotationMeasurement,
  rotateDemoCertificate,
  round,
  servedSerials,
  sleep,
  startDemoEnvironment,
} from './environment.ts';
import { runLocalWorkflow, type WorkflowOutcome } from './workflow.ts';

export { DemoAborted } from './environment.ts';

export interface DemoOptions {
  tasks: number;
  /** Keep everything here instead of a fresh temp directory (kept afterwards). */
  stateDir?: string;
  /** Progress lines. */
  print: (line: string) => void;
  /** Bail out early (Ctrl-C): the demo stops at the next step and cleans up. */
  signal?: AbortSignal;
  /** After the report, keep the fleet running until `signal` aborts (for `portcullis status --local`). */
  keep?: boolean;
  /** The sidecar command (default: this repository's `cli/main.ts sidecar`). */
  sidecarCommand?: readonly string[];
}

export interface DemoReport {
  tasks: number;
  stateDir: string;
  /** What this tree lacks for the full demo; empty when everything ran. */
  missing: string[];
  rotation: RotationMeasurement & {
    status: string;
    certificate: string;
    executionSeconds: number;
    error?: string;
    cause?: string;
  };
  traffic: {
    handshakes: number;
    failedHandshakes: number;
    longLived: number;
    droppedLongLived: number;
    longLivedBytes: number;
    byRoute: Record<string, { handshakes: number; failed: number }>;
    failures: string[];
  };
  allowlist: {
    status: string;
    removed: string;
    removedSourceRefused: boolean;
    /** Long-lived sessions of the removed source that the gateway closed. */
    cutLongLived: number;
    longLivedOfRemovedSource: number;
    /** The other source's sessions and new connections were unaffected. */
    otherSourceUnaffected: boolean;
    /** From the start of update-allowlist to the last task verified serving the new version. */
    seconds: number | null;
    restoreStatus: string;
    restored: boolean;
    error?: string;
  };
  /** The out-of-sync alert on a task held on the old serial: fired, then cleared by the rollback. */
  alert?: AlertScenarioReport;
  events: string[];
  totalSeconds: number;
  ok: boolean;
}

/** Seconds from the execution's start to its last successful `UpdateTaskBatch` (every task nudged and verified). */
function untilLastVerify(outcome: WorkflowOutcome): number {
  const exits = outcome.events
    .filter((e) => e.type === 'StateExited' && e.stateName === 'UpdateTaskBatch')
    .map((e) => e.at.getTime());
  const end = exits.length > 0 ? Math.max(...exits) : outcome.finishedAt.getTime();
  return (end - outcome.startedAt.getTime()) / 1000;
}

/** One connection per task and route, claiming `source`. */
async function probeAll(env: DemoEnvironment, routes: readonly TrafficRoute[], source: string) {
  const probes = env.fleet.endpoints().flatMap((endpoint) => routes.map((route) => ({ endpoint, route })));
  return Promise.all(probes.map((p) => connectOnce({ ...p, source, timeoutMs: 3000 })));
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await sleep(50);
}

/**
 * Runs the demo and returns its report. Everything it started is stopped before it returns or
 * throws (and the temp directory removed unless `stateDir` was given).
 */
export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  const t0 = performance.now();
  const print = options.print;
  const checkAbort = () => {
    if (options.signal?.aborted) throw new DemoAborted();
  };
  const env = await startDemoEnvironment({
    tasks: options.tasks,
    print,
    ...(options.stateDir === undefined ? {} : { stateDir: options.stateDir }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.sidecarCommand === undefined ? {} : { sidecarCommand: options.sidecarCommand }),
  });
  const extra: { close(): void }[] = [];
  let traffic: TrafficGenerator | undefined;
  try {
    const canRotate = env.routes.some((r) => r.name === 'mtls');

    // --- traffic --------------------------------------------------------------------------
    checkAbort();
    traffic = demoTraffic(env);
    await traffic.start();
    print(
      `traffic: new connections in a loop over ${env.routes.map((r) => r.name).join(' + ')}, ${traffic.sessions().length} long-lived streams, source ${DemoSources.traffic} (PROXY v2)`,
    );
    await sleep(1000, options.signal);

    // --- rotation -----------------------------------------------------------------------------
    checkAbort();
    const before = await servedSerials(env.fleet, env.observed);
    print(
      `rotate-certificates: certificate api (served now: ${before[0]?.serial?.slice(0, 16) ?? 'nothing'}…)`,
    );
    let rotation: WorkflowOutcome | undefined;
    if (canRotate) {
      rotation = await rotateDemoCertificate(env.ports, {
        rolloutMaxPolls: 60,
        print: (line) => print(`  ${line}`),
      });
    } else {
      print('  skipped: see "missing"');
    }
    // Traffic keeps flowing a moment after the rotation, still counted in its figures.
    await sleep(1000, options.signal);
    const rotationTraffic = traffic.stats();
    const after = await servedSerials(env.fleet, env.observed);
    const measured = measureRotation({
      succeeded: rotation?.status === 'SUCCEEDED',
      before,
      after,
      issuedAt: env.issuedAt,
      firstServedAt: (serial, taskId) => firstServed(serial, taskId, env.observed, rotationTraffic),
    });
    for (const p of measured.perTask) {
      const when = p.servingNewAfterSeconds === null ? '' : ` (${p.servingNewAfterSeconds} s after issuance)`;
      print(`  ${p.taskId}: ${p.before?.slice(0, 16) ?? '-'}… → ${p.after?.slice(0, 16) ?? '-'}…${when}`);
    }

    // --- allowlist: remove the traffic's source, then restore it --------------------------------
    checkAbort();
    await traffic.pauseLoops();
    const sessionsOfRemoved = traffic.sessions().filter((s) => s.droppedReason() === undefined);
    const lastRoute = env.routes[env.routes.length - 1]!;
    const others = env.fleet
      .endpoints()
      .map((endpoint) => openLongLived({ endpoint, route: lastRoute, source: DemoSources.other }));
    extra.push(...others);
    await Promise.all(others.map((s) => s.established.catch(() => undefined)));
    print(
      `update-allowlist: remove ${DemoSources.trafficCidr} (${sessionsOfRemoved.length} long-lived sessions from ${DemoSources.traffic}, ${others.length} from ${DemoSources.other})`,
    );
    const removal = await runLocalWorkflow(
      'update-allowlist',
      {
        fleet: DEMO_FLEET,
        remove: [DemoSources.trafficCidr],
        reason: 'demo: block the traffic source',
        updatedBy: 'portcullis demo',
      },
      env.ports,
      { print: (line) => print(`  ${line}`) },
    );
    // The sidecar cuts removed sources' sessions as part of its apply; let the closes land.
    await waitFor(() => sessionsOfRemoved.every((s) => s.droppedReason() !== undefined), 5000);
    const cut = sessionsOfRemoved.filter((s) => s.droppedReason() !== undefined).length;
    const probes = await probeAll(env, env.routes, DemoSources.traffic);
    const refused = removal.status === 'SUCCEEDED' && probes.length > 0 && probes.every((p) => !p.ok);
    const otherProbes = await probeAll(env, env.routes, DemoSources.other);
    const otherUnaffected =
      otherProbes.every((p) => p.ok) && others.every((s) => s.droppedReason() === undefined);
    print(
      `  new connections from ${DemoSources.traffic}: ${probes.filter((p) => !p.ok).length}/${probes.length} refused; its long-lived sessions cut: ${cut}/${sessionsOfRemoved.length}; ${DemoSources.other}: ${otherUnaffected ? 'unaffected' : 'AFFECTED'}`,
    );
    checkAbort();
    print(`update-allowlist: restore ${DemoSources.trafficCidr}`);
    const restore = await runLocalWorkflow(
      'update-allowlist',
      {
        fleet: DEMO_FLEET,
        add: [DemoSources.trafficCidr],
        reason: 'demo: restore the traffic source',
        updatedBy: 'portcullis demo',
      },
      env.ports,
      { print: (line) => print(`  ${line}`) },
    );
    const again = await probeAll(env, env.routes, DemoSources.traffic);
    const restored = restore.status === 'SUCCEEDED' && again.every((p) => p.ok);
    print(
      `  new connections from ${DemoSources.traffic}: ${again.filter((p) => p.ok).length}/${again.length} accepted again`,
    );
    for (const s of others) s.close();

    // --- alert: a task held on the old serial fires the out-of-sync alert, the rollback clears it
    checkAbort();
    const alert = canRotate
      ? await heldOnOldSerial(env, { ...(options.signal === undefined ? {} : { signal: options.signal }) })
      : undefined;
    if (alert !== undefined) {
      print(
        `alert ${alert.rule}: ${alert.task} held on ${alert.heldSerial?.slice(0, 16) ?? '-'}… (refused: ${alert.refusal ?? '-'}); fired ${alert.fired ? `after ${alert.firedAfterSeconds?.toFixed(1)} s` : 'NOT'}; cleared ${alert.cleared ? `${alert.clearedAfterSeconds?.toFixed(1)} s after the rollback` : 'NOT'}`,
      );
    }

    const report: DemoReport = {
      tasks: options.tasks,
      stateDir: env.stateDir,
      missing: env.missing,
      rotation: {
        status: rotation?.status ?? 'SKIPPED',
        certificate: 'api',
        ...measured,
        executionSeconds:
          rotation === undefined
            ? 0
            : round((rotation.finishedAt.getTime() - rotation.startedAt.getTime()) / 1000),
        ...(rotation?.error ? { error: rotation.error, cause: rotation.cause ?? '' } : {}),
      },
      traffic: {
        handshakes: rotationTraffic.handshakes,
        failedHandshakes: rotationTraffic.failedHandshakes,
        longLived: rotationTraffic.longLived,
        droppedLongLived: rotationTraffic.droppedLongLived,
        longLivedBytes: rotationTraffic.longLivedBytes,
        byRoute: rotationTraffic.byRoute,
        failures: rotationTraffic.failures,
      },
      allowlist: {
        status: removal.status,
        removed: DemoSources.trafficCidr,
        removedSourceRefused: refused,
        cutLongLived: cut,
        longLivedOfRemovedSource: sessionsOfRemoved.length,
        otherSourceUnaffected: otherUnaffected,
        seconds: removal.status === 'SUCCEEDED' ? round(untilLastVerify(removal)) : null,
        restoreStatus: restore.status,
        restored,
        ...(removal.error ? { error: `${removal.error}: ${removal.cause ?? ''}` } : {}),
      },
      ...(alert === undefined ? {} : { alert }),
      events: [...env.events],
      totalSeconds: 0,
      ok: false,
    };
    report.ok = demoSucceeded(report);
    if (options.keep === true && options.signal !== undefined && !options.signal.aborted) {
      print(
        `fleet kept running; try: node cli/main.ts status --fleet ${DEMO_FLEET} --local ${env.stateDir}   (Ctrl-C to stop)`,
      );
      await new Promise<void>((resolve) =>
        options.signal?.addEventListener('abort', () => resolve(), { once: true }),
      );
    }
    report.totalSeconds = round((performance.now() - t0) / 1000);
    return report;
  } finally {
    for (const s of extra) s.close();
    await traffic?.stop().catch(() => undefined);
    await env.close();
  }
}

/** Whether a report shows the whole loop working. Pure. */
export function demoSucceeded(report: DemoReport): boolean {
  const r = report.rotation;
  const a = report.allowlist;
  return (
    report.missing.length === 0 &&
    r.status === 'SUCCEEDED' &&
    r.tasksServingNew === report.tasks &&
    r.newSerial !== null &&
    r.newSerial !== r.previousSerial &&
    report.traffic.handshakes > 0 &&
    report.traffic.failedHandshakes === 0 &&
    report.traffic.droppedLongLived === 0 &&
    a.status === 'SUCCEEDED' &&
    a.removedSourceRefused &&
    a.cutLongLived === a.longLivedOfRemovedSource &&
    a.otherSourceUnaffected &&
    a.restored &&
    report.alert?.fired === true &&
    report.alert.cleared &&
    report.alert.otherTasksInSync
  );
}
