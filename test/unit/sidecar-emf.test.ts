import { describe, expect, it } from 'vitest';
import {
  type AccessLogTotals,
  accessLogTotals,
  EMF_LIMITS,
  EMF_METRICS,
  type EmfReadings,
  emfLines,
} from '../../proxy/sidecar/emf.ts';
import { KNOWN_REFUSALS } from '../../proxy/sidecar/log-sink.ts';
import { initialState, reduce, type SidecarEvent, type SidecarState } from '../../proxy/sidecar/state.ts';

const AT = new Date('2026-01-01T00:00:00.000Z');
const SETTINGS = { namespace: 'Portcullis', dimensions: { Fleet: 'edge' }, properties: { Host: 'task-1' } };

const NONE: EmfReadings = { tls: undefined, accessLog: undefined };
const tls = (handshakes: number, verifyFailures: number): EmfReadings => ({
  tls: { handshakes, verifyFailures },
  accessLog: undefined,
});

function run(events: SidecarEvent[]): SidecarState {
  let state = initialState();
  for (const event of events) state = reduce(state, event).state;
  return state;
}

const serving: SidecarEvent[] = [
  {
    type: 'configured',
    refs: [
      { key: 'fleet', kind: 'fleet', secretId: 'fleet' },
      { key: 'certificate:api', kind: 'certificate', secretId: 'cert/api', name: 'api' },
      { key: 'allowlist', kind: 'allowlist', secretId: 'allow' },
    ],
  },
  {
    type: 'applied',
    key: 'fleet',
    versionId: 'f1',
    origin: 'current',
    currentAtApply: 'f1',
    facts: {},
    at: AT.toISOString(),
  },
  {
    type: 'applied',
    key: 'certificate:api',
    versionId: 'v1',
    origin: 'current',
    currentAtApply: 'v1',
    facts: { serial: 'AA01', notAfter: '2026-01-11T00:00:00.000Z' },
    at: AT.toISOString(),
  },
  {
    type: 'applied',
    key: 'allowlist',
    versionId: 'a1',
    origin: 'current',
    currentAtApply: 'a1',
    facts: { size: 2 },
    at: AT.toISOString(),
  },
  { type: 'rendered', at: AT.toISOString() },
  { type: 'haproxyReady', pid: 1 },
];

/** Checks one line against the EMF specification's structure and returns it parsed. */
function emf(text: string): Record<string, unknown> {
  const doc = JSON.parse(text) as Record<string, unknown> & {
    _aws: {
      Timestamp: number;
      CloudWatchMetrics: {
        Namespace: string;
        Dimensions: string[][];
        Metrics: { Name: string; Unit: string }[];
      }[];
    };
  };
  expect(Number.isInteger(doc._aws.Timestamp)).toBe(true);
  for (const directive of doc._aws.CloudWatchMetrics) {
    expect(directive.Metrics.length).toBeLessThanOrEqual(EMF_LIMITS.metricsPerDirective);
    for (const set of directive.Dimensions) {
      expect(set.length).toBeLessThanOrEqual(EMF_LIMITS.dimensionsPerSet);
      for (const name of set) expect(typeof doc[name]).toBe('string');
    }
    for (const metric of directive.Metrics) expect(typeof doc[metric.Name]).toBe('number');
  }
  return doc;
}

describe('emfLines', () => {
  it('writes a task record and one record per certificate with its days to expiry', () => {
    const { lines } = emfLines(run(serving), SETTINGS, AT, NONE, undefined);
    expect(lines).toHaveLength(2);
    const task = emf(lines[0]!);
    expect(task).toMatchObject({
      Fleet: 'edge',
      Host: 'task-1',
      TaskReady: 1,
      ObjectsOutOfSync: 0,
      AllowlistEntries: 2,
    });
    const cert = emf(lines[1]!);
    expect(cert).toMatchObject({ Fleet: 'edge', Certificate: 'api', Serial: 'AA01', CertificateInSync: 1 });
    expect(cert[EMF_METRICS.certificateDaysToExpiry]).toBe(10);
    expect(
      (cert._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] }).CloudWatchMetrics[0]?.Dimensions,
    ).toEqual([['Fleet'], ['Fleet', 'Certificate']]);
  });

  it('counts an object held on an old version and the failed applies since the last emission', () => {
    const first = emfLines(run(serving), SETTINGS, AT, tls(5, 1), undefined);
    expect(emf(first.lines[0]!)).toMatchObject({ ApplyFailures: 0, TlsHandshakes: 0 });
    const held = run([
      ...serving,
      {
        type: 'polled',
        key: 'certificate:api',
        view: { current: 'v2', versions: [{ versionId: 'v2', stages: ['AWSCURRENT'] }] },
      },
      {
        type: 'rejected',
        key: 'certificate:api',
        versionId: 'v2',
        code: 'untrusted-chain',
        message: 'x',
        at: AT.toISOString(),
      },
    ]);
    const second = emfLines(held, SETTINGS, AT, tls(9, 1), first.cursor);
    expect(emf(second.lines[0]!)).toMatchObject({
      ObjectsOutOfSync: 1,
      OutOfSync: 'certificate:api',
      ApplyFailures: 1,
      TlsHandshakes: 4,
      TlsVerifyFailures: 0,
    });
    expect(emf(second.lines[1]!)).toMatchObject({ CertificateInSync: 0 });
    const third = emfLines(held, SETTINGS, AT, tls(9, 1), second.cursor);
    expect(emf(third.lines[0]!)).toMatchObject({ ApplyFailures: 0 });
  });

  describe('access log', () => {
    const log = (dropped: number, overflows: number, refusals: Record<string, number>): EmfReadings => ({
      tls: undefined,
      accessLog: { dropped, overflows, refusals },
    });
    type Directive = { Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] };
    const directive = (doc: Record<string, unknown>) =>
      (doc._aws as { CloudWatchMetrics: Directive[] }).CloudWatchMetrics[0]!;
    /** The per-reason refusal records of one emission, `Reason` → count. */
    const byReason = (lines: string[]) =>
      Object.fromEntries(
        lines
          .map(emf)
          .filter((doc) => 'Reason' in doc)
          .map((doc) => [doc.Reason, doc[EMF_METRICS.gatewayRefusals]]),
      );

    it('sends 0 for lost lines, overflows and refusals on the first emission, and no per-reason record', () => {
      const state = run(serving);
      const first = emfLines(state, SETTINGS, AT, log(40, 2, { 'no-route': 7, other: 1 }), undefined);
      // task record and the certificate's: no refusal record replays what came before the restart.
      expect(first.lines).toHaveLength(2);
      expect(emf(first.lines[0]!)).toMatchObject({
        AccessLogLinesDropped: 0,
        AccessLogRingOverflows: 0,
        GatewayRefusals: 0,
      });
      expect(directive(emf(first.lines[0]!)).Metrics).toEqual(
        expect.arrayContaining([
          { Name: EMF_METRICS.accessLogLinesDropped, Unit: 'Count' },
          { Name: EMF_METRICS.accessLogRingOverflows, Unit: 'Count' },
          { Name: EMF_METRICS.gatewayRefusals, Unit: 'Count' },
        ]),
      );
    });

    it('sends the counts since the previous emission, and a record per reason whose count changed', () => {
      const state = run(serving);
      const first = emfLines(state, SETTINGS, AT, log(40, 2, { 'no-route': 7, other: 1 }), undefined);
      const second = emfLines(
        state,
        SETTINGS,
        AT,
        log(45, 3, { 'no-route': 10, other: 1, 'invalid-host': 2 }),
        first.cursor,
      );
      expect(emf(second.lines[0]!)).toMatchObject({
        AccessLogLinesDropped: 5,
        AccessLogRingOverflows: 1,
        GatewayRefusals: 5,
      });
      // `other` did not change: no record for it.
      expect(byReason(second.lines)).toEqual({ 'no-route': 3, 'invalid-host': 2 });
      for (const text of second.lines.filter((l) => l.includes('"Reason"'))) {
        const doc = emf(text);
        // Fleet, Reason only: a Sum over Fleet alone reads the task record's total, counted once.
        expect(directive(doc).Dimensions).toEqual([['Fleet', 'Reason']]);
        expect(directive(doc).Metrics).toEqual([{ Name: EMF_METRICS.gatewayRefusals, Unit: 'Count' }]);
        expect(doc).toMatchObject({ Fleet: 'edge', Host: 'task-1' });
      }

      const third = emfLines(
        state,
        SETTINGS,
        AT,
        log(45, 3, { 'no-route': 10, other: 1, 'invalid-host': 2 }),
        second.cursor,
      );
      expect(third.lines).toHaveLength(2);
      expect(emf(third.lines[0]!)).toMatchObject({
        AccessLogLinesDropped: 0,
        AccessLogRingOverflows: 0,
        GatewayRefusals: 0,
      });
    });

    it('writes no access log metric without a sink, and a reason first seen counts from 0', () => {
      const state = run(serving);
      const without = emfLines(state, SETTINGS, AT, NONE, undefined);
      const task = emf(without.lines[0]!);
      for (const name of [
        EMF_METRICS.accessLogLinesDropped,
        EMF_METRICS.accessLogRingOverflows,
        EMF_METRICS.gatewayRefusals,
      ])
        expect(task).not.toHaveProperty(name);
      const first = emfLines(state, SETTINGS, AT, log(0, 0, {}), without.cursor);
      // The previous emission had no sink figures: still the first for the access log.
      expect(emf(first.lines[0]!)).toMatchObject({ AccessLogLinesDropped: 0, GatewayRefusals: 0 });
      const next = emfLines(state, SETTINGS, AT, log(0, 0, { 'not-allowlisted': 4 }), first.cursor);
      expect(byReason(next.lines)).toEqual({ 'not-allowlisted': 4 });
      expect(emf(next.lines[0]!)).toMatchObject({ GatewayRefusals: 4 });
    });

    it('keeps every record within the EMF limits with every reason and the most dimensions the config allows', () => {
      const dimensions = Object.fromEntries(
        Array.from({ length: EMF_LIMITS.dimensionsPerSet - 1 }, (_, i) => [`D${i}`, `v${i}`]),
      );
      const settings = { ...SETTINGS, dimensions };
      const reasons = [...KNOWN_REFUSALS, 'other'];
      const before: AccessLogTotals = { dropped: 0, overflows: 0, refusals: {} };
      const after = Object.fromEntries(reasons.map((r, i) => [r, i + 1]));
      const state = run(serving);
      const first = emfLines(
        state,
        settings,
        AT,
        { tls: { handshakes: 0, verifyFailures: 0 }, accessLog: before },
        undefined,
      );
      const { lines } = emfLines(
        state,
        settings,
        AT,
        {
          tls: { handshakes: 1, verifyFailures: 0 },
          accessLog: { dropped: 1, overflows: 1, refusals: after },
        },
        first.cursor,
      );
      // Task record, one per reason, one per certificate; each checked against the limits by emf().
      expect(lines).toHaveLength(1 + reasons.length + 1);
      for (const text of lines) emf(text);
      expect(byReason(lines)).toEqual(after);
      const total = reasons.reduce((sum, _, i) => sum + i + 1, 0);
      expect(emf(lines[0]!)[EMF_METRICS.gatewayRefusals]).toBe(total);
      // One dimension more than a set may hold is refused rather than written.
      const tooMany = { ...dimensions, Extra: 'x' };
      expect(() =>
        emfLines(state, { ...SETTINGS, dimensions: tooMany }, AT, log(0, 0, { other: 1 }), first.cursor),
      ).toThrow(RangeError);
    });

    it('sums refusals over listeners by reason from the sink’s counts', () => {
      const counts = {
        overflows: 2,
        refusals: new Map([
          ['fe_tls\u0000no-route', 3],
          ['fe_http\u0000no-route', 4],
          ['other\u0000other', 1],
        ]),
      };
      expect(accessLogTotals(counts, 9)).toEqual({
        dropped: 9,
        overflows: 2,
        refusals: { 'no-route': 7, other: 1 },
      });
    });
  });
});
