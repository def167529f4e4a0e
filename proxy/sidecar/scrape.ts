/**
 * `GET /metrics`: the sidecar's families from its state (`metrics.ts`), HAProxy's TLS counters
 * per terminate route (summed over reloads) and the access log sink's counters.
 */
import { TERMINATE, terminateRoutes } from '../haproxy/render-terminate.ts';
import { command } from '../haproxy/runtime-protocol.ts';
import { message, type SidecarContext } from './context.ts';
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

export interface Scrape {
  /** TLS counters of the terminate routes while HAProxy is ready, else `undefined`. */
  readTls(): Promise<TlsCounters | undefined>;
  /** The Prometheus text of one scrape. */
  metrics(): Promise<string>;
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
  const readTls = async (): Promise<TlsCounters | undefined> => {
    const fleet = ctx.material.fleet;
    if (ctx.state.phase !== Phase.Ready || fleet === undefined || terminateRoutes(fleet).length === 0)
      return undefined;
    try {
      const pid = (await ctx.runtime.showInfo()).pid;
      const tls = tlsCountersFrom(
        parseStickTable(await ctx.runtime.execute(command('show table', TERMINATE.table))),
      );
      // Routes without traffic have no table entry yet: show them at 0.
      for (const { route } of terminateRoutes(fleet)) {
        tls[route.serverName] ??= {
          handshake: 0,
          noCertificate: 0,
          failVerifyNoCert: 0,
          failVerifyError: 0,
          failVerifySan: 0,
        };
      }
      return reloadSafeTls(tlsTotals, pid, tls);
    } catch (error) {
      ctx.log.warn('tls counters unavailable', { error: message(error) });
      return undefined;
    }
  };
  /** HAProxy's DroppedLogs (lines its ring had no room for), summed by the sink across workers. */
  const readDroppedLogs = async (): Promise<void> => {
    if (accessLog === undefined || ctx.state.phase === Phase.Starting) return;
    const info = await ctx.runtime.showInfo().catch(() => undefined);
    if (info !== undefined) accessLog.observeDropped(info.pid, Number(info.fields['DroppedLogs'] ?? 0));
  };
  return {
    readTls,
    async metrics() {
      await readDroppedLogs();
      return renderMetrics(ctx.state, { tls: await readTls(), contributors });
    },
  };
}
