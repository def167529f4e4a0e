import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  initialState,
  nudgeTarget,
  type ObjectRef,
  Phase,
  pollTarget,
  reduce,
  type SidecarEvent,
  type SidecarState,
  type StoreView,
  toTaskStatus,
} from '../../proxy/sidecar/state.ts';

const AT = '2026-11-23T12:00:00.000Z';
const cert: ObjectRef = { key: 'certificate:api', kind: 'certificate', secretId: 'cert/api', name: 'api' };
const allowlist: ObjectRef = { key: 'allowlist', kind: 'allowlist', secretId: 'allowlist' };

const view = (current: string | undefined, versions: Record<string, string[]> = {}): StoreView => ({
  current,
  versions: Object.entries(versions).map(([versionId, stages]) => ({ versionId, stages })),
});

function run(events: SidecarEvent[], from: SidecarState = initialState()) {
  let state = from;
  const effects = [];
  for (const event of events) {
    const result = reduce(state, event);
    state = result.state;
    effects.push(...result.effects);
  }
  return { state, effects };
}

const configured: SidecarEvent = { type: 'configured', refs: [cert, allowlist] };
const applied = (
  versionId: string,
  origin: 'current' | 'explicit',
  currentAtApply: string,
): SidecarEvent => ({
  type: 'applied',
  key: cert.key,
  versionId,
  origin,
  currentAtApply,
  facts: { serial: `serial-${versionId}`, notAfter: AT },
  at: AT,
});

describe('pollTarget', () => {
  const cases: {
    name: string;
    object: Parameters<typeof pollTarget>[0];
    view: StoreView;
    expected: string | undefined;
  }[] = [
    {
      name: 'applies AWSCURRENT when nothing is applied',
      object: {},
      view: view('C', { C: ['AWSCURRENT'] }),
      expected: 'C',
    },
    {
      name: 'does nothing when the secret has no AWSCURRENT',
      object: {},
      view: view(undefined),
      expected: undefined,
    },
    {
      name: 'does nothing when AWSCURRENT is served',
      object: { applied: { versionId: 'C', origin: 'current', currentAtApply: 'C', at: AT, facts: {} } },
      view: view('C', { C: ['AWSCURRENT'] }),
      expected: undefined,
    },
    {
      name: 'follows a new AWSCURRENT',
      object: { applied: { versionId: 'C', origin: 'current', currentAtApply: 'C', at: AT, facts: {} } },
      view: view('D', { D: ['AWSCURRENT'], C: ['AWSPREVIOUS'] }),
      expected: 'D',
    },
    {
      name: 'keeps a nudged AWSPENDING version while it is staged and AWSCURRENT has not moved',
      object: { applied: { versionId: 'P', origin: 'explicit', currentAtApply: 'C', at: AT, facts: {} } },
      view: view('C', { C: ['AWSCURRENT'], P: ['AWSPENDING'] }),
      expected: undefined,
    },
    {
      name: 'keeps the nudged version once it is promoted',
      object: { applied: { versionId: 'P', origin: 'explicit', currentAtApply: 'C', at: AT, facts: {} } },
      view: view('P', { P: ['AWSCURRENT'], C: ['AWSPREVIOUS'] }),
      expected: undefined,
    },
    {
      name: 'returns to AWSCURRENT when a rollback dropped AWSPENDING',
      object: { applied: { versionId: 'P', origin: 'explicit', currentAtApply: 'C', at: AT, facts: {} } },
      view: view('C', { C: ['AWSCURRENT'] }),
      expected: 'C',
    },
    {
      name: 'follows AWSCURRENT when it moved to another version since the nudge',
      object: { applied: { versionId: 'P', origin: 'explicit', currentAtApply: 'C', at: AT, facts: {} } },
      view: view('D', { D: ['AWSCURRENT'], P: ['AWSPENDING'] }),
      expected: 'D',
    },
    {
      name: 'does not retry a version validation refused',
      object: {
        applied: { versionId: 'C', origin: 'current', currentAtApply: 'C', at: AT, facts: {} },
        rejected: { versionId: 'D', code: 'expired', message: 'x', at: AT },
      },
      view: view('D', { D: ['AWSCURRENT'], C: ['AWSPREVIOUS'] }),
      expected: undefined,
    },
  ];
  it.each(cases)('$name', ({ object, view: v, expected }) => {
    expect(pollTarget(object, v)).toBe(expected);
  });

  it('never asks for anything but AWSCURRENT', () => {
    fc.assert(
      fc.property(
        fc.option(fc.constantFrom('A', 'B', 'C'), { nil: undefined }),
        fc.option(fc.constantFrom('A', 'B', 'C'), { nil: undefined }),
        fc.constantFrom<'current' | 'explicit'>('current', 'explicit'),
        fc.subarray(['A', 'B', 'C']),
        (current, appliedVersion, origin, staged) => {
          const object = appliedVersion
            ? { applied: { versionId: appliedVersion, origin, currentAtApply: 'A', at: AT, facts: {} } }
            : {};
          const v = view(current, Object.fromEntries(staged.map((id) => [id, ['X']])));
          const target = pollTarget(object, v);
          return target === undefined || target === current;
        },
      ),
    );
  });
});

describe('nudgeTarget', () => {
  it('serves AWSCURRENT for a nudge without a version, and an explicit version as named', () => {
    expect(nudgeTarget(undefined, view('C'))).toEqual({ versionId: 'C', origin: 'current' });
    expect(nudgeTarget('P', view('C'))).toEqual({ versionId: 'P', origin: 'explicit' });
    expect(nudgeTarget('C', view('C'))).toEqual({ versionId: 'C', origin: 'current' });
    expect(nudgeTarget(undefined, view(undefined))).toBeUndefined();
  });
});

describe('reduce', () => {
  it('asks to apply the nudged version, and the poll then keeps it', () => {
    const { state, effects } = run([
      configured,
      applied('C', 'current', 'C'),
      {
        type: 'nudged',
        key: cert.key,
        versionId: 'P',
        view: view('C', { C: ['AWSCURRENT'], P: ['AWSPENDING'] }),
      },
    ]);
    expect(effects).toEqual([
      { type: 'apply', key: cert.key, versionId: 'P', origin: 'explicit', currentAtApply: 'C' },
    ]);
    expect(state.objects[cert.key]).toMatchObject({
      desired: { versionId: 'P', origin: 'explicit' },
      applied: { versionId: 'C' },
    });
    const after = run(
      [
        applied('P', 'explicit', 'C'),
        { type: 'polled', key: cert.key, view: view('C', { C: ['AWSCURRENT'], P: ['AWSPENDING'] }) },
      ],
      state,
    );
    expect(after.effects).toEqual([]);
    expect(toTaskStatus(after.state).certificates.api).toEqual({
      secretId: 'cert/api',
      versionId: 'P',
      serial: 'serial-P',
      notAfter: AT,
    });
  });

  it('re-marks an already served version as current on a nudge without applying it again', () => {
    const { state, effects } = run([
      configured,
      applied('P', 'explicit', 'C'),
      { type: 'nudged', key: cert.key, view: view('P', { P: ['AWSCURRENT'] }) },
    ]);
    expect(effects).toEqual([]);
    expect(state.objects[cert.key]?.applied).toMatchObject({
      versionId: 'P',
      origin: 'current',
      currentAtApply: 'P',
    });
  });

  it('records a refusal in status and counts it by reason, keeping the applied version', () => {
    const { state } = run([
      configured,
      applied('C', 'current', 'C'),
      { type: 'rejected', key: cert.key, versionId: 'D', code: 'key-mismatch', message: 'no', at: AT },
    ]);
    const status = toTaskStatus(state);
    expect(status.certificates.api?.versionId).toBe('C');
    expect(status.lastApply).toMatchObject({ ok: false, error: 'no', code: 'key-mismatch' });
    expect(state.applyCounts).toEqual({ 'certificate|ok|': 1, 'certificate|failed|key-mismatch': 1 });
  });

  it('retries on the next poll a fleet config refused for a certificate that has since been updated', () => {
    // A route change and the certificate covering its new name become AWSCURRENT together; the
    // poll reaches the fleet config first and refuses it against the certificate still served.
    const fleet: ObjectRef = { key: 'fleet', kind: 'fleet', secretId: 'fleet' };
    const { state } = run([
      { type: 'configured', refs: [fleet, cert] },
      { type: 'rejected', key: fleet.key, versionId: 'F2', code: 'san-mismatch', message: 'no', at: AT },
      applied('C2', 'current', 'C2'),
    ]);
    expect(pollTarget(state.objects[fleet.key]!, view('F2'))).toBe('F2');
  });

  it('retries a trust bundle refused for stranding a certificate once that certificate is replaced', () => {
    const trust: ObjectRef = { key: 'trust', kind: 'trust', secretId: 'trust' };
    const { state } = run([
      { type: 'configured', refs: [trust, cert] },
      { type: 'rejected', key: trust.key, versionId: 'T2', code: 'untrusted-chain', message: 'no', at: AT },
      applied('C2', 'current', 'C2'),
    ]);
    expect(pollTarget(state.objects[trust.key]!, view('T2'))).toBe('T2');
  });

  it('keeps a refusal of bad content when another object is applied', () => {
    const { state } = run([
      configured,
      { type: 'rejected', key: allowlist.key, versionId: 'A2', code: 'cidr-invalid', message: 'no', at: AT },
      applied('C2', 'current', 'C2'),
    ]);
    expect(pollTarget(state.objects[allowlist.key]!, view('A2'))).toBeUndefined();
    expect(toTaskStatus(state).objects).toMatchObject({ allowlist: { rejected: { versionId: 'A2' } } });
  });

  it('does not remember an apply failure as a refusal (the next poll retries)', () => {
    const { state } = run([
      configured,
      applied('C', 'current', 'C'),
      { type: 'failed', key: cert.key, versionId: 'D', message: 'socket', at: AT },
    ]);
    expect(state.objects[cert.key]?.rejected).toBeUndefined();
    expect(pollTarget(state.objects[cert.key]!, view('D'))).toBe('D');
  });

  const phases: { name: string; events: SidecarEvent[]; phase: string; effects: string[] }[] = [
    { name: 'starts not rendered', events: [], phase: Phase.Starting, effects: [] },
    {
      name: 'ignores HAProxy before anything is rendered',
      events: [{ type: 'haproxyUp', pid: 1 }],
      phase: Phase.Starting,
      effects: [],
    },
    {
      name: 'verifies a HAProxy that comes up after rendering',
      events: [
        { type: 'rendered', at: AT },
        { type: 'haproxyUp', pid: 1 },
      ],
      phase: Phase.Rendered,
      effects: ['verifyHaproxy'],
    },
    {
      name: 'is ready once the verification set the flag',
      events: [
        { type: 'rendered', at: AT },
        { type: 'haproxyUp', pid: 1 },
        { type: 'haproxyReady', pid: 1 },
      ],
      phase: Phase.Ready,
      effects: ['verifyHaproxy'],
    },
    {
      name: 'verifies again when the worker pid changes (restart or reload)',
      events: [
        { type: 'rendered', at: AT },
        { type: 'haproxyReady', pid: 1 },
        { type: 'haproxyUp', pid: 1 },
        { type: 'haproxyUp', pid: 2 },
      ],
      phase: Phase.Rendered,
      effects: ['verifyHaproxy'],
    },
    {
      name: 'is no longer ready while HAProxy is unreachable',
      events: [{ type: 'rendered', at: AT }, { type: 'haproxyReady', pid: 1 }, { type: 'haproxyDown' }],
      phase: Phase.Rendered,
      effects: [],
    },
  ];
  it.each(phases)('$name', ({ events, phase, effects }) => {
    const result = run(events);
    expect(result.state.phase).toBe(phase);
    expect(result.effects.map((e) => e.type)).toEqual(effects);
  });

  it('keeps what it knows about objects that stay when the fleet config changes', () => {
    const { state } = run([
      configured,
      applied('C', 'current', 'C'),
      { type: 'configured', refs: [cert] },
      { type: 'configured', refs: [{ ...cert, secretId: 'cert/api-v2' }] },
    ]);
    expect(state.objects[cert.key]?.applied).toBeUndefined();
    expect(state.objects.allowlist).toBeUndefined();
    const kept = run([configured, applied('C', 'current', 'C'), { type: 'configured', refs: [cert] }]).state;
    expect(kept.objects[cert.key]?.applied?.versionId).toBe('C');
  });

  it('ignores events about objects it does not know', () => {
    const before = run([configured]).state;
    const result = reduce(before, { type: 'polled', key: 'certificate:ghost', view: view('C') });
    expect(result).toEqual({ state: before, effects: [] });
  });
});
