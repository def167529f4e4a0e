/**
 * `GET /metrics`: the sidecar's families from its state (`metrics.ts`), HAProxy's TLS counters
 * per terminate route (summed over reloads) and the access log sink's counters; and the same
 * figures for an EMF emission (`emf.ts`). Each reading asks HAProxy for `show info` once.
 */

import { TERMINATE, TLS_COUNTER, type TlsCounter, terminateRoutes } from '../haproxy/render-terminate.ts';
import type { HaproxyInfo } from '../haproxy/runtime.ts';
import { command } from '../haproxy/runtime-protocol.ts';
import { message, type SidecarContext } from './context.ts';
import { accessLogTotals, type EmfReadings, tlsTotals as sumTls } from './emf.ts';
import type { LogSink } from './log-sink.ts';
import {
  type MetricsContributor,
  parseStickTable,
  ReloadSafeCounters,
  reloadSafeTls,
  renderMetrics,
  type TlsCounters,
  tlsCountersFrom,
} from './metrics.ts';
import { Phase } from './state.ts';

/** A route's counters before its first connection (no stick-table entry yet). */
const ZERO_TLS_COUNTERS = () =>
  Object.fromEntries(Object.keys(TLS_COUNTER).map((name) => [name, 0])) as Record<TlsCounter, number>;

export interface Scrape {
  /** The Prometheus text of one scrape. */
  metrics(): Promise<string>;
  /** The TLS and access log totals of one EMF emission. */
  emfReadings(): Promise<EmfReadings>;
}

export function createScrape(
  ctx: SidecarContext,
  accessLog: LogSink | undefined,
  extra: readonly MetricsContributor[] = [],
): Scrape {
  /** TLS counters summed over HAProxy reloads (each worker's stick table starts at 0). */
  const tlsTotals = new ReloadSafeCounters();
  const contributors: MetricsContributor[] = [
    ...(accessLog === undefined ? [] : [accessLog.contributor]),
    ...extra,
  ];
  const readTls = async (info?: HaproxyInfo): Promise<TlsCounters | undefined> => {
    const fleet = ctx.material.fleet;
    if (ctx.state.phase !== Phase.Ready || fleet === undefined || terminateRoutes(fleet).length === 0)
      return undefined;
    try {
      const pid = (info ?? (await ctx.runtime.showInfo())).pid;
      const tls = tlsCountersFrom(
        parseStickTable(await ctx.runtime.execute(command('show table', TERMINATE.table))),
      );
      // Routes without traffic have no table entry yet: show them at 0.
      for (const { route } of terminateRoutes(fleet)) {
        tls[route.serverName] ??= ZERO_TLS_COUNTERS();
      }
      return reloadSafeTls(tlsTotals, pid, tls);
    } catch (error) {
      ctx.log.warn('tls counters unavailable', { error: message(error) });
      return undefined;
    }
  };
  /**
   * One `show info` per reading: HAProxy's DroppedLogs (lines it could not log, summed by the
   * sink across workers) and the worker pid the TLS counters belong to; then the TLS counters.
   */
  const read = async (): Promise<TlsCounters | undefined> => {
    const info =
      accessLog === undefined || ctx.state.phase === Phase.Starting
        ? undefined
        : await ctx.runtime.showInfo().catch(() => undefined);
    if (accessLog !== undefined && info !== undefined) {
      accessLog.observeDropped(info.pid, Number(info.fields['DroppedLogs'] ?? 0));
    }
    return readTls(info);
  };
  return {
    async metrics() {
      return renderMetrics(ctx.state, { tls: await read(), contributors });
    },
    async emfReadings() {
      const tls = sumTls(await read());
      return {
        tls,
        accessLog:
          accessLog === undefined ? undefined : accessLogTotals(accessLog.counts(), accessLog.dropped()),
      };
    },
  };
}
