/**
 * The sidecar's metrics as CloudWatch embedded metric format (EMF) records: one JSON object per
 * line on stdout, which the task's awslogs driver ships to CloudWatch Logs, where CloudWatch
 * extracts the metrics (no agent, no collector, no `cloudwatch:PutMetricData` permission).
 *
 * Dimensions stay few and bounded, so every task of a fleet writes the same metrics: `Fleet` on
 * everything (what the stack's alarms read, with Minimum/Maximum/Sum across tasks), plus
 * `Fleet, Certificate` for per-certificate graphs and `Fleet, Reason` for refusals by reason
 * (bounded: `KNOWN_REFUSALS` and `other`, see `log-sink.ts`). A per-reason record has the
 * `Fleet, Reason` set only, so a Sum over `Fleet` counts each refusal once (the task record's
 * total). The task id and versions travel as plain properties: searchable in Logs Insights,
 * never a dimension (a metric per task or version would pile up). Limits: at most 100 metrics
 * per directive and 30 dimensions per set (CloudWatch EMF specification); these records carry
 * at most 9 metrics and 2 dimensions.
 */
import type { LogSinkCounts } from './log-sink.ts';
import { objectInSync } from './metrics.ts';
import { Phase, type SidecarState } from './state.ts';

/** Metric names the stack's alarms and dashboard use (serverless/observability.yml). */
export const EMF_METRICS = {
  taskReady: 'TaskReady',
  objectsOutOfSync: 'ObjectsOutOfSync',
  applyFailures: 'ApplyFailures',
  allowlistEntries: 'AllowlistEntries',
  certificateDaysToExpiry: 'CertificateDaysToExpiry',
  certificateInSync: 'CertificateInSync',
  tlsHandshakes: 'TlsHandshakes',
  tlsVerifyFailures: 'TlsVerifyFailures',
  accessLogLinesDropped: 'AccessLogLinesDropped',
  accessLogRingOverflows: 'AccessLogRingOverflows',
  gatewayRefusals: 'GatewayRefusals',
} as const;

/** The dimension of the per-reason refusal records (with the settings' dimensions). */
export const EMF_REASON_DIMENSION = 'Reason';

export const EMF_LIMITS = { metricsPerDirective: 100, dimensionsPerSet: 30 } as const;

export interface EmfSettings {
  namespace: string;
  /** Dimension values every record carries (`{ Fleet: 'edge' }`). */
  dimensions: Readonly<Record<string, string>>;
  /** Plain properties every record carries (`{ TaskId: … }`), not dimensions. */
  properties?: Readonly<Record<string, string>>;
}

/** The access log sink's totals (`log-sink.ts`), refusals summed over listeners. */
export interface AccessLogTotals {
  /** Lines lost before the sink, at least (`LogSink.dropped()`). */
  dropped: number;
  /** HAProxy's announcements of a full ring. */
  overflows: number;
  /** Refusal reason → count. */
  refusals: Readonly<Record<string, number>>;
}

/** What one emission reads besides the state: TLS totals and the access log's, each absent when unavailable. */
export interface EmfReadings {
  tls: { handshakes: number; verifyFailures: number } | undefined;
  accessLog: AccessLogTotals | undefined;
}

/** Totals of the previous emission, so counters go out as the count since then. */
export interface EmfCursor extends EmfReadings {
  failedApplies: number;
}

type Unit = 'None' | 'Count';

interface Record_ {
  metrics: { name: string; unit: Unit; value: number }[];
  dimensions: string[][];
  values: Record<string, string>;
}

function line(settings: EmfSettings, at: Date, record: Record_): string {
  if (record.metrics.length > EMF_LIMITS.metricsPerDirective)
    throw new RangeError(`an EMF directive holds at most ${EMF_LIMITS.metricsPerDirective} metrics`);
  if (record.dimensions.some((set) => set.length > EMF_LIMITS.dimensionsPerSet))
    throw new RangeError(`an EMF dimension set holds at most ${EMF_LIMITS.dimensionsPerSet} dimensions`);
  const document: Record<string, unknown> = {
    _aws: {
      Timestamp: at.getTime(),
      CloudWatchMetrics: [
        {
          Namespace: settings.namespace,
          Dimensions: record.dimensions,
          Metrics: record.metrics.map((m) => ({ Name: m.name, Unit: m.unit })),
        },
      ],
    },
    ...settings.properties,
    ...settings.dimensions,
    ...record.values,
  };
  for (const m of record.metrics) document[m.name] = m.value;
  return JSON.stringify(document);
}

/** Sums of the TLS counters over routes: handshakes, and refusals for a missing, invalid or untrusted client certificate. */
export function tlsTotals(
  tls: Record<string, Record<string, number>> | undefined,
): { handshakes: number; verifyFailures: number } | undefined {
  if (tls === undefined) return undefined;
  let handshakes = 0;
  let verifyFailures = 0;
  for (const counters of Object.values(tls)) {
    handshakes += counters.handshake ?? 0;
    verifyFailures +=
      (counters.failVerifyNoCert ?? 0) + (counters.failVerifyError ?? 0) + (counters.failVerifySan ?? 0);
  }
  return { handshakes, verifyFailures };
}

/** The sink's counters as EMF reads them: refusals summed over listeners by reason. */
export function accessLogTotals(
  counts: Pick<LogSinkCounts, 'overflows' | 'refusals'>,
  dropped: number,
): AccessLogTotals {
  const refusals: Record<string, number> = {};
  for (const [key, n] of counts.refusals) {
    const reason = key.slice(key.indexOf('\u0000') + 1);
    refusals[reason] = (refusals[reason] ?? 0) + n;
  }
  return { dropped, overflows: counts.overflows, refusals };
}

/** `now - before`, 0 without a previous total (first emission) and never negative. */
const since = (now: number, before: number | undefined): number =>
  before === undefined ? 0 : Math.max(0, now - before);

/**
 * The EMF lines for one emission and the cursor for the next. Pure. Counters (failed applies,
 * TLS, lost access-log lines, ring overflows, refusals) go out as the difference from `cursor`;
 * the first emission (no cursor) sends 0 for them, so a restarted sidecar does not replay its
 * history as new failures. A reason's refusal record is written only when its count changed.
 */
export function emfLines(
  state: SidecarState,
  settings: EmfSettings,
  at: Date,
  readings: EmfReadings,
  cursor: EmfCursor | undefined,
): { lines: string[]; cursor: EmfCursor } {
  const { tls, accessLog } = readings;
  const fleetDims = Object.keys(settings.dimensions);
  const failedApplies = Object.entries(state.applyCounts)
    .filter(([key]) => key.split('|')[1] === 'failed')
    .reduce((sum, [, n]) => sum + n, 0);
  const objects = Object.values(state.objects);
  const started = state.phase !== Phase.Starting;
  const outOfSync = objects.filter((o) => !objectInSync(o, started));
  const task: Record_ = {
    dimensions: [fleetDims],
    values: {
      ...(outOfSync.length > 0 ? { OutOfSync: outOfSync.map((o) => o.ref.key).join(',') } : {}),
    },
    metrics: [
      { name: EMF_METRICS.taskReady, unit: 'None', value: state.phase === Phase.Ready ? 1 : 0 },
      { name: EMF_METRICS.objectsOutOfSync, unit: 'Count', value: outOfSync.length },
      {
        name: EMF_METRICS.applyFailures,
        unit: 'Count',
        value: since(failedApplies, cursor?.failedApplies),
      },
    ],
  };
  const allowlist = state.objects.allowlist?.applied?.facts.size;
  if (allowlist !== undefined)
    task.metrics.push({ name: EMF_METRICS.allowlistEntries, unit: 'Count', value: allowlist });
  if (tls !== undefined) {
    const previous = cursor?.tls;
    task.metrics.push(
      {
        name: EMF_METRICS.tlsHandshakes,
        unit: 'Count',
        value: since(tls.handshakes, previous?.handshakes),
      },
      {
        name: EMF_METRICS.tlsVerifyFailures,
        unit: 'Count',
        value: since(tls.verifyFailures, previous?.verifyFailures),
      },
    );
  }
  /** Refusals by reason since the previous emission, only the reasons that changed. */
  const refusedBy: [string, number][] = [];
  if (accessLog !== undefined) {
    const previous = cursor?.accessLog;
    if (previous !== undefined) {
      for (const [reason, n] of Object.entries(accessLog.refusals)) {
        const delta = since(n, previous.refusals[reason] ?? 0);
        if (delta > 0) refusedBy.push([reason, delta]);
      }
    }
    task.metrics.push(
      {
        name: EMF_METRICS.accessLogLinesDropped,
        unit: 'Count',
        value: since(accessLog.dropped, previous?.dropped),
      },
      {
        name: EMF_METRICS.accessLogRingOverflows,
        unit: 'Count',
        value: since(accessLog.overflows, previous?.overflows),
      },
      {
        name: EMF_METRICS.gatewayRefusals,
        unit: 'Count',
        value: refusedBy.reduce((sum, [, n]) => sum + n, 0),
      },
    );
  }
  const lines = [line(settings, at, task)];
  for (const [reason, n] of refusedBy) {
    lines.push(
      line(settings, at, {
        dimensions: [[...fleetDims, EMF_REASON_DIMENSION]],
        values: { [EMF_REASON_DIMENSION]: reason },
        metrics: [{ name: EMF_METRICS.gatewayRefusals, unit: 'Count', value: n }],
      }),
    );
  }
  for (const object of objects) {
    if (object.ref.kind !== 'certificate' || object.ref.name === undefined) continue;
    const notAfter = object.applied?.facts.notAfter;
    const metrics: Record_['metrics'] = [
      { name: EMF_METRICS.certificateInSync, unit: 'None', value: objectInSync(object, started) ? 1 : 0 },
    ];
    if (notAfter !== undefined) {
      const days = (Date.parse(notAfter) - at.getTime()) / 86_400_000;
      metrics.push({
        name: EMF_METRICS.certificateDaysToExpiry,
        unit: 'None',
        value: Math.round(days * 100) / 100,
      });
    }
    lines.push(
      line(settings, at, {
        dimensions: [fleetDims, [...fleetDims, 'Certificate']],
        values: {
          Certificate: object.ref.name,
          ...(object.applied?.facts.serial ? { Serial: object.applied.facts.serial } : {}),
        },
        metrics,
      }),
    );
  }
  return { lines, cursor: { failedApplies, tls, accessLog } };
}
