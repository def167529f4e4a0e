/**
 * What every effect module of the sidecar shares: its config and dependencies, the state of
 * the reducer (`state.ts`, changed only by `dispatch`), the material applied, and the queue that
 * keeps applies, polls, nudges, reconciliation and renders from interleaving.
 */
import type { FleetConfig } from '../../lib/config/index.ts';
import type { ObjectStoreFor } from '../../lib/secrets/allowlist-storage.ts';
import type { GatewayLayout } from '../haproxy/index.ts';
import type { ApplyTarget } from './apply.ts';
import type { SidecarConfig } from './config.ts';
import type { Logger } from './log.ts';
import type { GatewayRuntime } from './runtime-port.ts';
import {
  initialState,
  type ObjectRef,
  Phase,
  reduce,
  type SidecarEffect,
  type SidecarEvent,
  type SidecarState,
} from './state.ts';
import type { StoreReader } from './store-view.ts';
import type { CheckedCertificate, CheckedTrust } from './validate.ts';

/** Material applied and kept in memory (the reconciliation needs it). Secret: never logged. */
export interface Material {
  fleet?: FleetConfig;
  nudgeKey?: Buffer;
  trust?: CheckedTrust;
  certificates: Map<string, CheckedCertificate>;
  allowlist?: string[];
}

export interface SidecarContext {
  readonly config: SidecarConfig;
  readonly layout: GatewayLayout;
  readonly log: Logger;
  readonly now: () => Date;
  readonly store: StoreReader;
  /** Where manifests' allowlist objects are read. */
  readonly objects: ObjectStoreFor;
  readonly runtime: GatewayRuntime;
  readonly worker: (pid: number) => GatewayRuntime;
  /** The fleet config's own object (a secret, or `file:<path>`). */
  readonly fleetRef: ObjectRef;
  /** Addresses of this task the gateway must not proxy to. */
  readonly ownAddresses: readonly string[];
  readonly material: Material;
  /** The reducer's state; only `dispatch` changes it. */
  readonly state: SidecarState;
  dispatch(event: SidecarEvent): SidecarEffect[];
  /** Runs `work` after everything queued before it. */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
  /** Settles once everything queued so far has run. */
  idle(): Promise<void>;
}

export type ContextDeps = Omit<SidecarContext, 'material' | 'state' | 'dispatch' | 'exclusive' | 'idle'>;

/** A context with the initial state; `onPhase` hears every phase change. */
export function createContext(deps: ContextDeps, onPhase: () => void = () => undefined): SidecarContext {
  let state = initialState();
  let queue: Promise<unknown> = Promise.resolve();
  return {
    ...deps,
    material: { certificates: new Map() },
    get state() {
      return state;
    },
    dispatch(event) {
      const before = state.phase;
      const result = reduce(state, event);
      state = result.state;
      if (state.phase !== before) {
        deps.log.info('phase', { from: before, to: state.phase });
        onPhase();
      }
      return result.effects;
    },
    exclusive(work) {
      const run = queue.then(work, work);
      queue = run.catch(() => undefined);
      return run;
    },
    async idle() {
      await queue.catch(() => undefined);
    },
  };
}

/** HAProxy serves what was applied (ready): changes go through the runtime API. */
export function live(ctx: SidecarContext): boolean {
  return ctx.state.phase === Phase.Ready;
}

/** Where an object is installed: files always, the runtime API when HAProxy is live and no fleet change stages. */
export function applyTarget(ctx: SidecarContext): ApplyTarget {
  const runtime = live(ctx) && !ctx.state.gateway.filesOnly ? ctx.runtime : undefined;
  return { layout: ctx.layout, runtime, worker: ctx.worker };
}

export function message(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
