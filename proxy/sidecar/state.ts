/**
 * The sidecar's state as a pure reducer, in the manner of Envoy's xDS client: for every object
 * (certificate, trust bundle, allowlist, fleet config, nudge key) it keeps the version applied,
 * why that version was chosen, and the last version refused. `reduce(state, event)` returns the
 * next state and the effects to run; `main.ts` runs them (fetch, validate, apply through the
 * runtime API) and feeds the outcome back as events. No I/O, no clock: times come in events.
 *
 * Which version to serve (the part worth a table of tests, see {@link pollTarget}):
 * - the poll applies only `AWSCURRENT`;
 * - a nudge may name a version (the control plane's `AWSPENDING`) to serve before promotion;
 *   the poll must not flip it back while it is still staged and `AWSCURRENT` has not moved;
 * - promotion makes the nudged version `AWSCURRENT`: the poll sees it already served;
 * - rollback drops `AWSPENDING` from it (no label left): the poll brings `AWSCURRENT` back,
 *   and so does the control plane's rollback nudge (a nudge without a version means `AWSCURRENT`);
 * - a version refused by validation is not retried by the poll (a nudge naming it retries it),
 *   unless it was refused against another object that has changed since (see `DEPENDENT_CODES`).
 */
import { type GatewayEvent, type GatewayFlags, initialGatewayFlags, reduceGateway } from './gateway-state.ts';

export { toTaskStatus } from './status.ts';
export { nudgeTarget, pollTarget, stillDesired } from './version-choice.ts';

import { nudgeTarget, pollTarget, stillDesired } from './version-choice.ts';

export const ObjectKind = {
  Fleet: 'fleet',
  Certificate: 'certificate',
  Trust: 'trust',
  Allowlist: 'allowlist',
  NudgeKey: 'nudgeKey',
} as const;
export type ObjectKind = (typeof ObjectKind)[keyof typeof ObjectKind];

/** One object the sidecar keeps in step with the store. */
export interface ObjectRef {
  /** `certificate:<name>`, `trust`, `allowlist`, `fleet`, `nudgeKey`. */
  key: string;
  kind: ObjectKind;
  /** Store secret id; for a fleet config read from a file, `file:<path>`. */
  secretId: string;
  /** Certificate name (the status key). */
  name?: string;
}

/** Public facts about what is applied, for status and metrics. */
export interface AppliedFacts {
  serial?: string;
  notAfter?: string;
  size?: number;
  caCount?: number;
  crl?: boolean;
  /** Certificates: when the control plane renews it (ISO time). */
  renewAt?: string;
}

export type Origin = 'current' | 'explicit';

export interface AppliedVersion {
  versionId: string;
  /** `current`: chosen as `AWSCURRENT`; `explicit`: named by a nudge. */
  origin: Origin;
  /** `AWSCURRENT` when it was applied: an explicit version stays until this moves. */
  currentAtApply: string | undefined;
  at: string;
  facts: AppliedFacts;
}

export interface Refusal {
  versionId: string;
  code: string;
  message: string;
  at: string;
}

/** The version last asked for (by the poll or a nudge), whether or not it could be applied. */
export interface DesiredVersion {
  versionId: string;
  origin: Origin;
}

export interface ObjectState {
  ref: ObjectRef;
  desired?: DesiredVersion;
  applied?: AppliedVersion;
  rejected?: Refusal;
  /** How the last apply of this object ended (refused and failed alike). */
  lastResult?: { ok: boolean; at: string; code?: string };
}

export const Phase = {
  /** No valid state rendered yet: HAProxy must not start (`/healthz` 503). */
  Starting: 'starting',
  /** Files rendered; HAProxy not (yet) confirmed serving them. */
  Rendered: 'rendered',
  /** HAProxy serves what was applied and its ready flag is set. */
  Ready: 'ready',
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

export interface LastApply {
  at: string;
  ok: boolean;
  key?: string;
  versionId?: string;
  code?: string;
  error?: string;
}

export interface SidecarState {
  phase: Phase;
  objects: Record<string, ObjectState>;
  lastApply?: LastApply;
  /** Why the sidecar is not (yet) rendered, when it is not. */
  startError?: { code: string; message: string; at: string };
  /** HAProxy worker pid last confirmed serving. */
  haproxyPid?: number;
  /** `kind|ok` or `kind|failed|reason` → count; exported as a Prometheus counter. */
  applyCounts: Record<string, number>;
  /** What HAProxy may have loaded (see `gateway-state.ts`). */
  gateway: GatewayFlags;
}

/** What a poll or a nudge learned about a secret from the store (`describe`). */
export interface StoreView {
  current: string | undefined;
  /** Versions with at least one label. */
  versions: readonly { versionId: string; stages: readonly string[] }[];
}

export type SidecarEvent =
  | { type: 'configured'; refs: readonly ObjectRef[] }
  | { type: 'polled'; key: string; view: StoreView }
  | { type: 'nudged'; key: string; versionId?: string; view: StoreView }
  | {
      type: 'applied';
      key: string;
      versionId: string;
      origin: Origin;
      currentAtApply: string | undefined;
      facts: AppliedFacts;
      at: string;
    }
  | { type: 'rejected'; key: string; versionId: string; code: string; message: string; at: string }
  | { type: 'failed'; key: string; versionId: string; message: string; at: string }
  | { type: 'startFailed'; code: string; message: string; at: string }
  | { type: 'rendered'; at: string }
  | { type: 'haproxyUp'; pid: number }
  | { type: 'haproxyReady'; pid: number }
  | { type: 'haproxyDown' }
  | GatewayEvent;

export type SidecarEffect =
  /** Fetch `versionId` of the object's secret, validate it and apply it. */
  | { type: 'apply'; key: string; versionId: string; origin: Origin; currentAtApply: string | undefined }
  /** Compare what HAProxy serves with what was applied, re-apply drift, then set the ready flag. */
  | { type: 'verifyHaproxy'; pid: number };

export function initialState(): SidecarState {
  return { phase: Phase.Starting, objects: {}, applyCounts: {}, gateway: initialGatewayFlags() };
}

/**
 * Drops a refusal of a version the object is no longer asked for (a rollback dropped it, or a
 * nudge brought the object back to what it serves): the refusal gauge and status then stop
 * reporting it. A refusal of the version still desired stays, so the poll does not retry it.
 */
function forgetRefusal(object: ObjectState): ObjectState {
  if (object.rejected === undefined || object.rejected.versionId === object.desired?.versionId) return object;
  const { rejected: _dropped, ...rest } = object;
  return rest;
}

/**
 * Refusals that judge a version against other objects, not on its content alone: a fleet config
 * against the certificates in service (`san-mismatch`), a trust bundle against the leaves it
 * would strand and a certificate against the bundle (`untrusted-chain`). Once another object
 * changes, the same version may pass, so the refusal is forgotten and the poll tries it again.
 */
const DEPENDENT_CODES: ReadonlySet<string> = new Set(['san-mismatch', 'untrusted-chain']);

function count(state: SidecarState, label: string): Record<string, number> {
  return { ...state.applyCounts, [label]: (state.applyCounts[label] ?? 0) + 1 };
}

function withObject(state: SidecarState, key: string, update: (o: ObjectState) => ObjectState): SidecarState {
  const object = state.objects[key];
  if (object === undefined) return state;
  return { ...state, objects: { ...state.objects, [key]: update(object) } };
}

/** The transition function. Unknown keys leave the state unchanged and produce no effect. */
export function reduce(
  state: SidecarState,
  event: SidecarEvent,
): { state: SidecarState; effects: SidecarEffect[] } {
  switch (event.type) {
    case 'configured': {
      // Keep what is known about objects that stay (same key and secret); forget the rest.
      const objects: Record<string, ObjectState> = {};
      for (const ref of event.refs) {
        const previous = state.objects[ref.key];
        objects[ref.key] =
          previous !== undefined && previous.ref.secretId === ref.secretId ? { ...previous, ref } : { ref };
      }
      return { state: { ...state, objects }, effects: [] };
    }
    case 'polled': {
      const object = state.objects[event.key];
      if (object === undefined) return { state, effects: [] };
      const target = pollTarget(object, event.view);
      if (target === undefined) {
        const desired = stillDesired(object.desired, event.view);
        if (desired === object.desired) return { state, effects: [] };
        return { state: withObject(state, event.key, (o) => forgetRefusal({ ...o, desired })), effects: [] };
      }
      const desired: DesiredVersion = { versionId: target, origin: 'current' };
      return {
        state: withObject(state, event.key, (o) => ({ ...o, desired })),
        effects: [
          {
            type: 'apply',
            key: event.key,
            versionId: target,
            origin: 'current',
            currentAtApply: event.view.current,
          },
        ],
      };
    }
    case 'nudged': {
      const object = state.objects[event.key];
      if (object === undefined) return { state, effects: [] };
      const target = nudgeTarget(event.versionId, event.view);
      if (target === undefined) return { state, effects: [] };
      if (object.applied?.versionId === target.versionId) {
        // Already serving it; only remember why, so the poll's rule sees the current reason.
        const applied = { ...object.applied, origin: target.origin, currentAtApply: event.view.current };
        return {
          state: withObject(state, event.key, (o) => forgetRefusal({ ...o, applied, desired: target })),
          effects: [],
        };
      }
      return {
        state: withObject(state, event.key, (o) => ({ ...o, desired: target })),
        effects: [
          {
            type: 'apply',
            key: event.key,
            versionId: target.versionId,
            origin: target.origin,
            currentAtApply: event.view.current,
          },
        ],
      };
    }
    case 'applied': {
      const object = state.objects[event.key];
      if (object === undefined) return { state, effects: [] };
      const objects: Record<string, ObjectState> = {};
      for (const [key, other] of Object.entries(state.objects)) {
        if (key !== event.key && other.rejected !== undefined && DEPENDENT_CODES.has(other.rejected.code)) {
          const { rejected: _retry, ...rest } = other;
          objects[key] = rest;
        } else {
          objects[key] = other;
        }
      }
      const next = withObject({ ...state, objects }, event.key, (o) => {
        const { rejected: _dropped, ...rest } = o;
        return {
          ...rest,
          lastResult: { ok: true, at: event.at },
          desired: { versionId: event.versionId, origin: event.origin },
          applied: {
            versionId: event.versionId,
            origin: event.origin,
            currentAtApply: event.currentAtApply,
            at: event.at,
            facts: event.facts,
          },
        };
      });
      return {
        state: {
          ...next,
          lastApply: { at: event.at, ok: true, key: event.key, versionId: event.versionId },
          applyCounts: count(state, `${object.ref.kind}|ok|`),
        },
        effects: [],
      };
    }
    case 'rejected': {
      const object = state.objects[event.key];
      if (object === undefined) return { state, effects: [] };
      const rejected: Refusal = {
        versionId: event.versionId,
        code: event.code,
        message: event.message,
        at: event.at,
      };
      const next = withObject(state, event.key, (o) => ({
        ...o,
        rejected,
        lastResult: { ok: false, at: event.at, code: event.code },
      }));
      return {
        state: {
          ...next,
          lastApply: {
            at: event.at,
            ok: false,
            key: event.key,
            versionId: event.versionId,
            code: event.code,
            error: event.message,
          },
          applyCounts: count(state, `${object.ref.kind}|failed|${event.code}`),
        },
        effects: [],
      };
    }
    case 'failed': {
      const object = state.objects[event.key];
      if (object === undefined) return { state, effects: [] };
      // Not remembered as refused: HAProxy trouble is transient, the next poll tries again.
      const next = withObject(state, event.key, (o) => ({
        ...o,
        lastResult: { ok: false, at: event.at, code: 'apply-failed' },
      }));
      return {
        state: {
          ...next,
          lastApply: {
            at: event.at,
            ok: false,
            key: event.key,
            versionId: event.versionId,
            code: 'apply-failed',
            error: event.message,
          },
          applyCounts: count(state, `${object.ref.kind}|failed|apply-failed`),
        },
        effects: [],
      };
    }
    case 'startFailed':
      return {
        state: { ...state, startError: { code: event.code, message: event.message, at: event.at } },
        effects: [],
      };
    case 'rendered': {
      const { startError: _cleared, ...rest } = state;
      return {
        state: { ...rest, phase: state.phase === Phase.Ready ? Phase.Ready : Phase.Rendered },
        effects: [],
      };
    }
    case 'haproxyUp': {
      // A HAProxy answered: it may hold files older than the disk, and it is no longer awaited.
      const { haproxyAwaitedSinceMs, ...flags } = state.gateway;
      const seen =
        state.gateway.haproxySeen && haproxyAwaitedSinceMs === undefined
          ? state
          : { ...state, gateway: { ...flags, haproxySeen: true } };
      if (seen.phase === Phase.Starting) return { state: seen, effects: [] };
      if (seen.phase === Phase.Ready && seen.haproxyPid === event.pid) return { state: seen, effects: [] };
      return {
        state: { ...seen, phase: Phase.Rendered },
        effects: [{ type: 'verifyHaproxy', pid: event.pid }],
      };
    }
    case 'haproxyReady':
      if (state.phase === Phase.Starting) return { state, effects: [] };
      return { state: { ...state, phase: Phase.Ready, haproxyPid: event.pid }, effects: [] };
    case 'haproxyDown': {
      if (state.phase !== Phase.Ready) return { state, effects: [] };
      const { haproxyPid: _gone, ...rest } = state;
      return { state: { ...rest, phase: Phase.Rendered }, effects: [] };
    }
    case 'started':
    case 'reloadNeeded':
    case 'reloaded':
    case 'staging':
    case 'crlRendered':
    case 'haproxyAwaited':
    case 'haproxyWaitWarned':
    case 'startRetried':
      return { state: { ...state, gateway: reduceGateway(state.gateway, event) }, effects: [] };
  }
}
