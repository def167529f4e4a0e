import { describe, expect, it } from 'vitest';
import { EMF_LIMITS, EMF_METRICS, emfLines } from '../../proxy/sidecar/emf.ts';
import { initialState, reduce, type SidecarEvent, type SidecarState } from '../../proxy/sidecar/state.ts';

const AT = new Date('2026-01-01T00:00:00.000Z');
const SETTINGS = { namespace: 'Portcullis', dimensions: { Fleet: 'edge' }, properties: { Host: 'task-1' } };

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
    const { lines } = emfLines(run(serving), SETTINGS, AT, undefined, undefined);
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
    const first = emfLines(run(serving), SETTINGS, AT, { handshakes: 5, verifyFailures: 1 }, undefined);
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
    const second = emfLines(held, SETTINGS, AT, { handshakes: 9, verifyFailures: 1 }, first.cursor);
    expect(emf(second.lines[0]!)).toMatchObject({
      ObjectsOutOfSync: 1,
      OutOfSync: 'certificate:api',
      ApplyFailures: 1,
      TlsHandshakes: 4,
      TlsVerifyFailures: 0,
    });
    expect(emf(second.lines[1]!)).toMatchObject({ CertificateInSync: 0 });
    const third = emfLines(held, SETTINGS, AT, { handshakes: 9, verifyFailures: 1 }, second.cursor);
    expect(emf(third.lines[0]!)).toMatchObject({ ApplyFailures: 0 });
  });
});
