/**
 * The part of HAProxy's runtime API the sidecar uses, as a dependency: `startSidecar` takes it
 * in `SidecarDeps` (default: the unix-socket client of `proxy/haproxy/runtime.ts` for the
 * gateway layout), so the effect modules run against a fake in unit tests and against a real
 * HAProxy in the integration tests.
 */
import type { GatewayLayout } from '../haproxy/index.ts';
import { type HaproxyRuntime, runtimeClientFor } from '../haproxy/runtime.ts';
import { workerRuntime } from './apply.ts';

/** The runtime-API calls the sidecar makes (a structural subset of `HaproxyRuntime`). */
export type GatewayRuntime = Pick<
  HaproxyRuntime,
  | 'execute'
  | 'showInfo'
  | 'showProc'
  | 'reload'
  | 'waitForReload'
  | 'updateCertificate'
  | 'showSslCert'
  | 'replaceAcl'
  | 'showAclEntries'
  | 'setMap'
  | 'cutSessions'
>;

/** The gateway's runtime: its current worker, and any worker by pid (through the master CLI). */
export interface RuntimePort {
  runtime: GatewayRuntime;
  /** A client for one worker, current or left behind by a reload, by pid. */
  worker(pid: number): GatewayRuntime;
}

/** The unix-socket clients of a gateway layout's admin and master sockets. */
export function socketRuntime(layout: GatewayLayout): RuntimePort {
  return {
    runtime: runtimeClientFor(layout, { timeoutMs: 5000 }),
    worker: (pid) => workerRuntime(layout, pid),
  };
}
