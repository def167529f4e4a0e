import { describe, expect, it } from 'vitest';
import { AlertEvaluator, sampleValue } from '../../cli/demo/alert.ts';
import { renderMetrics } from '../../proxy/sidecar/metrics.ts';
import { initialState, reduce } from '../../proxy/sidecar/state.ts';

const rule = {
  metric: 'portcullis_certificate_in_sync',
  labels: { certificate: 'api' },
  breaching: (v: number) => v === 0,
  forMs: 1000,
  text: 'in_sync == 0 for 1s',
};

describe('AlertEvaluator', () => {
  it('goes pending, fires once the condition held for forMs, and clears at the first good value', () => {
    const alert = new AlertEvaluator(rule);
    expect(alert.observe(0, 1)).toBe('inactive');
    expect(alert.observe(100, 0)).toBe('pending');
    expect(alert.observe(900, 0)).toBe('pending');
    expect(alert.observe(1100, 0)).toBe('firing');
    expect(alert.observe(1200, 1)).toBe('inactive');
    expect(alert.transitions.map((t) => t.state)).toEqual(['pending', 'firing', 'inactive']);
  });

  it('restarts the wait after a good value or a missing sample', () => {
    const alert = new AlertEvaluator(rule);
    alert.observe(0, 0);
    alert.observe(500, undefined);
    expect(alert.observe(1200, 0)).toBe('pending');
    expect(alert.observe(2200, 0)).toBe('firing');
  });
});

describe('sampleValue', () => {
  it('reads a sample of the sidecar’s exposition by its exact labels', () => {
    let state = reduce(initialState(), {
      type: 'configured',
      refs: [{ key: 'certificate:api', kind: 'certificate', secretId: 'c', name: 'api' }],
    }).state;
    state = reduce(state, {
      type: 'applied',
      key: 'certificate:api',
      versionId: 'v1',
      origin: 'current',
      currentAtApply: 'v1',
      facts: { serial: 'aa' },
      at: '2026-01-01T00:00:00.000Z',
    }).state;
    const text = renderMetrics(state);
    expect(sampleValue(text, 'portcullis_certificate_in_sync', { certificate: 'api' })).toBe(1);
    expect(sampleValue(text, 'portcullis_certificate_in_sync', { certificate: 'other' })).toBeUndefined();
    expect(sampleValue(text, 'portcullis_sidecar_ready', {})).toBe(0);
  });
});
