/**
 * The reducer's gateway flags (`gateway-state.ts`): what HAProxy may have loaded, changed only
 * by events, and the rule built on them (a running HAProxy may serve older files).
 */
import { describe, expect, it } from 'vitest';
import { haproxyWaitOverdue, mayServeOldFiles } from '../../proxy/sidecar/gateway-state.ts';
import { initialState, reduce, type SidecarEvent, type SidecarState } from '../../proxy/sidecar/state.ts';

function run(events: SidecarEvent[], from: SidecarState = initialState()): SidecarState {
  let state = from;
  for (const event of events) {
    const result = reduce(state, event);
    if (event.type !== 'haproxyUp') expect(result.effects).toEqual([]);
    state = result.state;
  }
  return state;
}

describe('gateway flags', () => {
  it('start all false', () => {
    expect(initialState().gateway).toEqual({
      previouslyRendered: false,
      haproxySeen: false,
      reloadPending: false,
      filesOnly: false,
      renderedCrl: false,
      warnedHaproxyWait: false,
      startAttempts: 0,
    });
    expect(mayServeOldFiles(initialState().gateway)).toBe(false);
  });

  it('a pending reload is set and cleared by events, whatever the phase', () => {
    const pending = run([{ type: 'reloadNeeded' }]);
    expect(pending.gateway.reloadPending).toBe(true);
    expect(pending.phase).toBe('starting');
    expect(run([{ type: 'reloaded' }], pending).gateway.reloadPending).toBe(false);
  });

  it('staging and the rendered CRL follow their events', () => {
    const staged = run([
      { type: 'staging', filesOnly: true },
      { type: 'crlRendered', crl: true },
    ]);
    expect(staged.gateway).toMatchObject({ filesOnly: true, renderedCrl: true });
    expect(run([{ type: 'staging', filesOnly: false }], staged).gateway).toMatchObject({
      filesOnly: false,
      renderedCrl: true,
    });
  });

  it('a HAProxy answering, or files found at start, mean it may serve older files', () => {
    expect(mayServeOldFiles(run([{ type: 'started', previouslyRendered: true }]).gateway)).toBe(true);
    // Seen even while starting (no verification then) and when the same worker answers again.
    const starting = run([{ type: 'haproxyUp', pid: 7 }]);
    expect(starting.gateway.haproxySeen).toBe(true);
    expect(reduce(starting, { type: 'haproxyUp', pid: 7 }).effects).toEqual([]);
    const rendered = run([{ type: 'rendered', at: 't' }]);
    expect(reduce(rendered, { type: 'haproxyUp', pid: 7 })).toMatchObject({
      state: { phase: 'rendered', gateway: { haproxySeen: true } },
      effects: [{ type: 'verifyHaproxy', pid: 7 }],
    });
  });

  it('counts start attempts until one renders, then awaits HAProxy until it answers', () => {
    const retried = run([{ type: 'startRetried' }, { type: 'startRetried' }]);
    expect(retried.gateway.startAttempts).toBe(2);
    const awaited = run(
      [
        { type: 'rendered', at: 't' },
        { type: 'haproxyAwaited', atMs: 1000 },
      ],
      retried,
    );
    expect(awaited.gateway).toMatchObject({ startAttempts: 0, haproxyAwaitedSinceMs: 1000 });
    expect(haproxyWaitOverdue(awaited.gateway, 1500, 1000)).toBe(false);
    expect(haproxyWaitOverdue(awaited.gateway, 2001, 1000)).toBe(true);
    // Logged once.
    const warned = run([{ type: 'haproxyWaitWarned' }], awaited);
    expect(haproxyWaitOverdue(warned.gateway, 5000, 1000)).toBe(false);
    const answered = reduce(awaited, { type: 'haproxyUp', pid: 3 }).state;
    expect(answered.gateway.haproxyAwaitedSinceMs).toBeUndefined();
    expect(haproxyWaitOverdue(answered.gateway, 5000, 1000)).toBe(false);
  });

  it('other events leave the flags as they are', () => {
    const flagged = run([{ type: 'reloadNeeded' }, { type: 'crlRendered', crl: true }]);
    const after = run([{ type: 'rendered', at: 't' }, { type: 'haproxyDown' }], flagged);
    expect(after.gateway).toEqual(flagged.gateway);
  });
});
