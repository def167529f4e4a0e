import { describe, expect, it } from 'vitest';
import { MetricsError } from '../../proxy/sidecar/errors.ts';
import {
  MetricsRegistry,
  objectInSync,
  ReloadSafeCounters,
  reloadSafeTls,
  renderMetrics,
  SIDECAR_FAMILIES,
  type TlsCounters,
} from '../../proxy/sidecar/metrics.ts';
import { initialState, reduce, type SidecarEvent, type SidecarState } from '../../proxy/sidecar/state.ts';
import { checkExposition, ExpositionError, parseExposition, sampleValue } from '../support/exposition.ts';

const AT = '2026-01-01T00:00:00.000Z';

function run(events: SidecarEvent[]): SidecarState {
  let state = initialState();
  for (const event of events) state = reduce(state, event).state;
  return state;
}

const view = (current: string, extra: { versionId: string; stages: string[] }[] = []) => ({
  current,
  versions: [{ versionId: current, stages: ['AWSCURRENT'] }, ...extra],
});

/** A sidecar serving certificate api v1, allowlist a1, fleet f1; then asked for api v2, which is refused. */
function heldOnOldSerial(): SidecarState {
  return run([
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
      at: AT,
    },
    {
      type: 'applied',
      key: 'certificate:api',
      versionId: 'v1',
      origin: 'current',
      currentAtApply: 'v1',
      facts: { serial: 'AA01', notAfter: '2026-03-01T00:00:00.000Z', renewAt: '2026-02-10T00:00:00.000Z' },
      at: AT,
    },
    {
      type: 'applied',
      key: 'allowlist',
      versionId: 'a1',
      origin: 'current',
      currentAtApply: 'a1',
      facts: { size: 3 },
      at: AT,
    },
    { type: 'rendered', at: AT },
    { type: 'haproxyReady', pid: 10 },
    {
      type: 'polled',
      key: 'certificate:api',
      view: view('v2', [{ versionId: 'v1', stages: ['AWSPREVIOUS'] }]),
    },
    {
      type: 'rejected',
      key: 'certificate:api',
      versionId: 'v2',
      code: 'untrusted-chain',
      message: 'x',
      at: AT,
    },
  ]);
}

describe('MetricsRegistry', () => {
  it('writes each family once, its samples together, in declaration order', () => {
    const registry = new MetricsRegistry();
    const a = registry.family({ name: 'a_total', type: 'counter', help: 'A.', labels: ['reason'] });
    const b = registry.family({ name: 'b', type: 'gauge', help: 'B\\ and\nmore.', labels: [] });
    registry.add(a, { reason: 'x' }, 1);
    registry.set(b, {}, 2);
    registry.add(a, { reason: 'y' }, 4);
    registry.add(a, { reason: 'x' }, 1);
    const text = registry.render();
    expect(text).toBe(
      [
        '# HELP a_total A.',
        '# TYPE a_total counter',
        'a_total{reason="x"} 2',
        'a_total{reason="y"} 4',
        '# HELP b B\\\\ and\\nmore.',
        '# TYPE b gauge',
        'b 2',
        '',
      ].join('\n'),
    );
    expect(checkExposition(text).get('a_total')?.samples).toHaveLength(2);
  });

  it('refuses a sample whose labels differ from its family', () => {
    const registry = new MetricsRegistry();
    const a = registry.family({ name: 'a', type: 'gauge', help: 'A.', labels: ['object'] });
    expect(() => registry.set(a, {}, 1)).toThrow(MetricsError);
    expect(() => registry.set(a, { object: 'x', version: 'v' }, 1)).toThrow(MetricsError);
  });

  it('refuses a second, different declaration, bad names, and counters not named _total', () => {
    const registry = new MetricsRegistry();
    registry.family({ name: 'a', type: 'gauge', help: 'A.', labels: [] });
    expect(() => registry.family({ name: 'a', type: 'counter', help: 'A.', labels: [] })).toThrow(
      MetricsError,
    );
    expect(() => registry.family({ name: '1a', type: 'gauge', help: '', labels: [] })).toThrow(MetricsError);
    expect(() => registry.family({ name: 'c', type: 'counter', help: '', labels: [] })).toThrow(MetricsError);
    expect(() => registry.family({ name: 'd', type: 'gauge', help: '', labels: ['__x'] })).toThrow(
      MetricsError,
    );
  });

  it('escapes label values so the strict reader reads them back', () => {
    const registry = new MetricsRegistry();
    const a = registry.family({ name: 'a', type: 'gauge', help: 'A.', labels: ['v'] });
    registry.set(a, { v: 'q"b\\n\nz' }, 1);
    expect(parseExposition(registry.render())[0]?.samples[0]?.labels.v).toBe('q"b\\n\nz');
  });
});

describe('renderMetrics', () => {
  it('shows a task held on the old serial as out of sync, with the refusal and without a version label', () => {
    const state = heldOnOldSerial();
    const families = checkExposition(renderMetrics(state, { tls: undefined }));
    expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(0);
    expect(sampleValue(families, 'portcullis_object_in_sync', { object: 'fleet', kind: 'fleet' })).toBe(1);
    expect(
      sampleValue(families, 'portcullis_object_in_sync', { object: 'allowlist', kind: 'allowlist' }),
    ).toBe(1);
    expect(
      sampleValue(families, 'portcullis_certificate_info', {
        certificate: 'api',
        serial: 'AA01',
        served_version: 'v1',
        desired_version: 'v2',
      }),
    ).toBe(1);
    expect(
      sampleValue(families, 'portcullis_sidecar_rejected', {
        object: 'certificate:api',
        code: 'untrusted-chain',
      }),
    ).toBe(1);
    expect(families.get('portcullis_sidecar_rejected')?.samples.every((s) => !('version' in s.labels))).toBe(
      true,
    );
    expect(
      sampleValue(families, 'portcullis_object_last_apply_ok', {
        object: 'certificate:api',
        kind: 'certificate',
      }),
    ).toBe(0);
    expect(
      sampleValue(families, 'portcullis_certificate_not_after_timestamp_seconds', { certificate: 'api' }),
    ).toBe(Date.parse('2026-03-01T00:00:00.000Z') / 1000);
    expect(
      sampleValue(families, 'portcullis_certificate_renew_at_timestamp_seconds', { certificate: 'api' }),
    ).toBe(Date.parse('2026-02-10T00:00:00.000Z') / 1000);
    expect(sampleValue(families, 'portcullis_allowlist_entries')).toBe(3);
    expect(
      sampleValue(families, 'portcullis_sidecar_applies_total', {
        kind: 'certificate',
        result: 'failed',
        reason: 'untrusted-chain',
      }),
    ).toBe(1);
  });

  it('clears once the store no longer asks for the refused version', () => {
    let state = heldOnOldSerial();
    // AWSCURRENT moved back to v1 (the refused v2 was abandoned): the poll finds nothing to apply.
    state = reduce(state, { type: 'polled', key: 'certificate:api', view: view('v1') }).state;
    expect(objectInSync(state.objects['certificate:api']!)).toBe(true);
    const families = checkExposition(renderMetrics(state, { tls: undefined }));
    expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(1);
    // The refusal of a version no longer asked for is not reported any more.
    expect(families.get('portcullis_sidecar_rejected')?.samples).toEqual([]);
  });

  it('keeps the refusal while the refused version is still asked for, so the poll does not retry it', () => {
    let state = heldOnOldSerial();
    const again = reduce(state, {
      type: 'polled',
      key: 'certificate:api',
      view: view('v2', [{ versionId: 'v1', stages: ['AWSPREVIOUS'] }]),
    });
    expect(again.effects).toEqual([]);
    state = again.state;
    expect(state.objects['certificate:api']?.rejected?.versionId).toBe('v2');
    // A rollback's nudge back to what it serves forgets it.
    state = reduce(state, { type: 'nudged', key: 'certificate:api', view: view('v1') }).state;
    expect(state.objects['certificate:api']?.rejected).toBeUndefined();
    expect(objectInSync(state.objects['certificate:api']!)).toBe(true);
  });

  it('clears when the refused version is applied at last', () => {
    let state = heldOnOldSerial();
    state = reduce(state, {
      type: 'applied',
      key: 'certificate:api',
      versionId: 'v2',
      origin: 'current',
      currentAtApply: 'v2',
      facts: { serial: 'AA02', notAfter: '2026-04-01T00:00:00.000Z' },
      at: AT,
    }).state;
    const families = checkExposition(renderMetrics(state, { tls: undefined }));
    expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(1);
    expect(families.get('portcullis_sidecar_rejected')?.samples).toEqual([]);
  });

  it('keeps a nudged AWSPENDING desired while it is staged, then follows AWSCURRENT once it is dropped', () => {
    let state = heldOnOldSerial();
    const staged = view('v1', [{ versionId: 'p', stages: ['AWSPENDING'] }]);
    state = reduce(state, { type: 'nudged', key: 'certificate:api', versionId: 'p', view: staged }).state;
    state = reduce(state, {
      type: 'failed',
      key: 'certificate:api',
      versionId: 'p',
      message: 'x',
      at: AT,
    }).state;
    state = reduce(state, { type: 'polled', key: 'certificate:api', view: staged }).state;
    expect(state.objects['certificate:api']?.desired?.versionId).toBe('p');
    expect(objectInSync(state.objects['certificate:api']!)).toBe(false);
    state = reduce(state, { type: 'polled', key: 'certificate:api', view: view('v1') }).state;
    expect(objectInSync(state.objects['certificate:api']!)).toBe(true);
  });

  it('writes valid exposition for every state of a run, with contributors after the sidecar families', () => {
    const tls: TlsCounters = {
      'api.test': {
        handshake: 4,
        noCertificate: 1,
        failVerifyNoCert: 1,
        failVerifyError: 0,
        failVerifySan: 0,
      },
    };
    const text = renderMetrics(heldOnOldSerial(), {
      tls,
      contributors: [
        (registry) => {
          const f = registry.family({
            name: 'portcullis_refusals_total',
            type: 'counter',
            help: 'Refusals by reason.',
            labels: ['reason'],
          });
          registry.add(f, { reason: 'allowlist' }, 2);
        },
      ],
    });
    const families = checkExposition(text);
    const names = [...families.keys()];
    expect(names.slice(0, Object.keys(SIDECAR_FAMILIES).length)).toEqual(
      Object.values(SIDECAR_FAMILIES).map((f) => f.name),
    );
    expect(names.at(-1)).toBe('portcullis_refusals_total');
    expect(sampleValue(families, 'portcullis_tls_handshakes_total', { route: 'api.test' })).toBe(4);
    expect(checkExposition(renderMetrics(initialState()))).toBeInstanceOf(Map);
  });
});

describe('objectInSync', () => {
  const ref = { key: 'certificate:spare', kind: 'certificate' as const, secretId: 's', name: 'spare' };
  it('counts an object with nothing applied as out of sync while starting, or once something was asked for', () => {
    expect(objectInSync({ ref }, false)).toBe(false);
    expect(objectInSync({ ref, desired: { versionId: 'v1', origin: 'current' } }, true)).toBe(false);
  });

  it('counts a running sidecar’s object whose secret has no AWSCURRENT (nothing asked) as in sync', () => {
    expect(objectInSync({ ref }, true)).toBe(true);
    const state = run([
      { type: 'configured', refs: [ref] },
      { type: 'rendered', at: AT },
      { type: 'polled', key: 'certificate:spare', view: { current: undefined, versions: [] } },
    ]);
    const families = checkExposition(renderMetrics(state, { tls: undefined }));
    expect(sampleValue(families, 'portcullis_certificate_in_sync', { certificate: 'spare' })).toBe(1);
  });
});

describe('parseExposition', () => {
  const bad: { name: string; text: string }[] = [
    { name: 'interleaved families', text: '# TYPE a gauge\na{x="1"} 1\n# TYPE b gauge\nb 1\na{x="2"} 1\n' },
    { name: 'a second TYPE', text: '# TYPE a gauge\n# TYPE a gauge\na 1\n' },
    { name: 'a second HELP', text: '# HELP a x\n# HELP a y\na 1\n' },
    { name: 'TYPE after samples', text: 'a 1\n# TYPE a gauge\n' },
    { name: 'a repeated series', text: 'a{x="1"} 1\na{x="1"} 2\n' },
    { name: 'different label names in a family', text: 'a{x="1"} 1\na{y="1"} 2\n' },
    { name: 'an invalid escape', text: 'a{x="\\t"} 1\n' },
    { name: 'an unknown type', text: '# TYPE a meter\na 1\n' },
    { name: 'a missing final newline', text: 'a 1' },
    { name: 'an invalid value', text: 'a one\n' },
  ];
  it.each(bad)('refuses $name', ({ text }) => {
    expect(() => parseExposition(text)).toThrow(ExpositionError);
  });

  it('reads histograms as one family', () => {
    const text =
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n# TYPE g gauge\ng NaN\n';
    expect(parseExposition(text).map((f) => f.name)).toEqual(['h', 'g']);
  });
});

describe('ReloadSafeCounters', () => {
  it('keeps counting across a reload (another pid) and a reset (a lower value)', () => {
    const totals = new ReloadSafeCounters();
    expect(totals.observe(1, { a: 5 })).toEqual({ a: 5 });
    expect(totals.observe(1, { a: 7 })).toEqual({ a: 7 });
    // Reload: the new worker's table starts over, even when it already counted past the old value.
    expect(totals.observe(2, { a: 8 })).toEqual({ a: 15 });
    expect(totals.observe(2, { a: 9 })).toEqual({ a: 16 });
    // Same pid but lower: a restart the pid did not show.
    expect(totals.observe(2, { a: 1 })).toEqual({ a: 17 });
  });

  it('sums TLS counters by route and drops routes no longer served', () => {
    const totals = new ReloadSafeCounters();
    const counters = (n: number) => ({
      handshake: n,
      noCertificate: 0,
      failVerifyNoCert: 0,
      failVerifyError: 0,
      failVerifySan: 0,
    });
    reloadSafeTls(totals, 1, { a: counters(3), b: counters(1) });
    const after = reloadSafeTls(totals, 2, { a: counters(2) });
    expect(after).toEqual({ a: counters(5) });
  });
});
