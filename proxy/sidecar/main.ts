/**
 * The sidecar process: keeps a gateway task's HAProxy in step with the fleet's secrets.
 *
 * Start: read the fleet config, fetch `AWSCURRENT` of every referenced secret, validate, render
 * HAProxy's configuration and files into the shared directory (`/healthz` 200 from then on, so
 * ECS starts HAProxy), wait for HAProxy's admin socket, read back, set its ready flag. Anything
 * missing or invalid: not rendered, the error in status/log/metric, retried with backoff.
 * Then: apply on a signed nudge and on a jittered poll; watch HAProxy for restarts and
 * reconcile. The decisions are `state.ts` (pure); the effect modules run them and report back
 * as events (see README.md for the module layout). This file wires them together.
 *
 * A sidecar restart recovers from the store and what HAProxy serves: files identical to what
 * it would render are not rewritten, HAProxy is not reloaded, and the served serials are
 * compared before anything is re-applied, so traffic never sees a gap.
 */
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SecretStore, TaskStatus } from '../../lib/ports.ts';
import type { ObjectStoreFor } from '../../lib/secrets/allowlist-storage.ts';
import { type GatewayLayout, gatewayLayout } from '../haproxy/index.ts';
import { defaultObjectStores } from './allowlist-source.ts';
import type { SidecarConfig } from './config.ts';
import { createContext, message } from './context.ts';
import { interfaceAddresses } from './gateway-files.ts';
import { jsonLogger, type Logger } from './log.ts';
import { type LogSink, startLogSink } from './log-sink.ts';
import { createLoops } from './loops.ts';
import type { MetricsContributor } from './metrics.ts';
import { nudgeHandler } from './nudge.ts';
import { type RuntimePort, socketRuntime } from './runtime-port.ts';
import { createScrape } from './scrape.ts';
import { type AdminServer, startAdminServer } from './server.ts';
import { type ObjectRef, Phase, type SidecarState, toTaskStatus } from './state.ts';
import { defaultStore, FILE_PREFIX, storeReader } from './store-view.ts';

export { hostnamesFor, interfaceAddresses, loadedCertificates, objectRefs } from './gateway-files.ts';

export interface SidecarDeps {
  /** The secret store; default: built from `config.store`. */
  store?: SecretStore;
  /** Where manifests' allowlist objects are read; default: beside the file store, or S3. */
  objects?: ObjectStoreFor;
  /** Where log lines go; default stdout. */
  write?: (line: string) => void;
  now?: () => Date;
  random?: () => number;
  /** Families added to every `/metrics` scrape after the sidecar's own (see `metrics.ts`). */
  metrics?: readonly MetricsContributor[];
  /** HAProxy's runtime API; default: the unix sockets of the gateway layout (`socketRuntime`). */
  runtime?: RuntimePort;
}

export interface RunningSidecar {
  /** Port of the admin API. */
  readonly port: number;
  /** `http://host:port` of the admin API. */
  readonly url: string;
  readonly layout: GatewayLayout;
  status(): TaskStatus & Record<string, unknown>;
  state(): SidecarState;
  /** Resolves once valid state is rendered (HAProxy may start). */
  whenRendered(timeoutMs?: number): Promise<void>;
  /** Resolves once HAProxy serves the applied state and its ready flag is set. */
  whenReady(timeoutMs?: number): Promise<void>;
  /** One poll round now (tests; the timer keeps running). */
  pollNow(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts the sidecar: admin API at once, then the start loop (render → wait for HAProxy → ready),
 * the poll backstop and the HAProxy watch.
 * @example
 * const sidecar = await startSidecar(parseSidecarConfig({ store: { kind: 'file', dir }, fleetConfig: { secretId: 'fleet' }, gatewayDir }));
 * await sidecar.whenRendered(); // start HAProxy now
 */
export async function startSidecar(config: SidecarConfig, deps: SidecarDeps = {}): Promise<RunningSidecar> {
  const store = deps.store ?? (await defaultStore(config));
  const log: Logger = jsonLogger(deps.write, config.logLevel);
  const layout = gatewayLayout(config.gatewayDir);
  const { runtime, worker } = deps.runtime ?? socketRuntime(layout);
  // HAProxy's access log arrives here (its ring's one server) and goes to stdout: see log-sink.ts.
  const accessLog: LogSink | undefined = await startLogSink({
    path: layout.logSocket,
    ...(deps.write === undefined ? {} : { output: deps.write }),
  }).catch((error: unknown) => {
    log.error('access log sink unavailable: HAProxy keeps its lines until the ring is full', {
      error: message(error),
    });
    return undefined;
  });
  const fleetRef: ObjectRef =
    'secretId' in config.fleetConfig
      ? { key: 'fleet', kind: 'fleet', secretId: config.fleetConfig.secretId }
      : { key: 'fleet', kind: 'fleet', secretId: `${FILE_PREFIX}${config.fleetConfig.file}` };
  const ownAddresses = [
    ...(config.autoOwnAddresses ? interfaceAddresses() : []),
    ...config.ownAddresses,
    ...(config.bindAddress === undefined ? [] : [config.bindAddress]),
  ];

  const waiters = new Set<() => void>();
  const ctx = createContext(
    {
      config,
      layout,
      log,
      now: deps.now ?? (() => new Date()),
      store: storeReader(store),
      objects: deps.objects ?? defaultObjectStores(config),
      runtime,
      worker,
      fleetRef,
      ownAddresses,
    },
    () => {
      for (const wake of [...waiters]) wake();
    },
  );

  // A restarted sidecar container finds the files it rendered before (only validated state is
  // ever written there) and HAProxy serving them: a store outage at that moment must not turn
  // into a failing health check and a replaced task. A new task's volume starts empty.
  const previouslyRendered = await stat(layout.config).then(
    () => true,
    () => false,
  );
  ctx.dispatch({ type: 'started', previouslyRendered });

  const write = deps.write ?? ((line: string) => process.stdout.write(line));
  const scrape = createScrape(ctx, accessLog, deps.metrics);
  const loops = createLoops(ctx, {
    random: deps.random ?? Math.random,
    emfReadings: scrape.emfReadings,
    write,
  });

  const server: AdminServer = await startAdminServer(
    config.admin.host,
    config.admin.port,
    {
      healthy: () => ctx.state.phase !== Phase.Starting || ctx.state.gateway.previouslyRendered,
      status: () => toTaskStatus(ctx.state),
      metrics: scrape.metrics,
      nudge: nudgeHandler(ctx, loops.startAttempt),
    },
    {
      maxBodyBytes: config.maxNudgeBytes,
      onError: (error) => log.error('admin api error', { error: message(error) }),
    },
  );
  log.info('sidecar started', {
    admin: `${config.admin.host}:${server.port}`,
    gatewayDir: layout.root,
    previouslyRendered,
  });
  loops.start();

  const waitFor = (predicate: () => boolean, what: string, timeoutMs: number): Promise<void> =>
    new Promise((resolve, reject) => {
      if (predicate()) {
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        waiters.delete(check);
        const state = ctx.state;
        reject(
          new Error(
            `sidecar not ${what} within ${timeoutMs} ms: ${JSON.stringify(state.startError ?? state.lastApply ?? {})}`,
          ),
        );
      }, timeoutMs);
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
    });

  const host = config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host;
  return {
    port: server.port,
    url: `http://${host}:${server.port}`,
    layout,
    status: () => toTaskStatus(ctx.state),
    state: () => ctx.state,
    whenRendered: (timeoutMs = 10_000) =>
      waitFor(() => ctx.state.phase !== Phase.Starting, 'rendered', timeoutMs),
    whenReady: (timeoutMs = 10_000) => waitFor(() => ctx.state.phase === Phase.Ready, 'ready', timeoutMs),
    pollNow: () => ctx.exclusive(loops.pollOnce),
    async close() {
      loops.stop();
      await server.close();
      await loops.settled();
      await ctx.idle();
      await accessLog?.close();
      // Let a timer callback that had already fired settle before the caller removes files.
      await sleep(0);
      log.info('sidecar stopped');
    },
  };
}
