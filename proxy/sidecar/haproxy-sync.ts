/**
 * Bringing HAProxy to the files on disk: a re-render that writes what changed and reloads
 * seamlessly when something did, and the verification that compares what a (re)started or
 * reloaded HAProxy serves with what was applied, re-applies drift and sets its ready flag.
 */
import type { FleetConfig } from '../../lib/config/index.ts';
import { reconcile } from './apply.ts';
import { live, message, type SidecarContext } from './context.ts';
import { expectedServing, render, writeChanged } from './gateway-files.ts';
import { mayServeOldFiles } from './gateway-state.ts';
import { Phase } from './state.ts';

/** Seamless reload through the master CLI; resolves once a new worker serves. */
export async function reloadHaproxy(ctx: SidecarContext): Promise<void> {
  const before = await ctx.runtime.showProc();
  await ctx.runtime.reload();
  const after = await ctx.runtime.waitForReload(before, { timeoutMs: 15_000 });
  ctx.dispatch({ type: 'reloaded' });
  ctx.log.info('haproxy reloaded', { workers: after.workers.map((w) => String(w.pid)) });
}

/** Writes what changed; reloads HAProxy seamlessly when something did (or when asked to). */
export async function rerender(
  ctx: SidecarContext,
  fleet: FleetConfig,
  options: { reload?: boolean } = {},
): Promise<void> {
  const written = await writeChanged(ctx, render(ctx, fleet, ctx.state.gateway.renderedCrl));
  const changed = written.length > 0 || options.reload === true;
  if ((!changed && !ctx.state.gateway.reloadPending) || ctx.state.phase === Phase.Starting) return;
  if (written.length > 0) ctx.log.info('rendered', { files: written });
  if (!live(ctx)) {
    // A HAProxy that is not running reads the new files when it starts; one that is (its
    // socket did not answer) must reload once it is reachable again.
    if (changed && mayServeOldFiles(ctx.state.gateway)) ctx.dispatch({ type: 'reloadNeeded' });
    return;
  }
  await reloadHaproxy(ctx);
  const info = await ctx.runtime.showInfo();
  await verifyHaproxy(ctx, info.pid);
}

/**
 * Reloads first when HAProxy holds files older than the applied state, reconciles, and reports
 * `haproxyReady`. A failure is logged; the next watch round tries again.
 */
export async function verifyHaproxy(ctx: SidecarContext, seenPid: number): Promise<void> {
  try {
    let pid = seenPid;
    if (ctx.state.gateway.reloadPending) {
      ctx.log.info('haproxy holds files older than the applied state: reloading', { pid });
      await reloadHaproxy(ctx);
      pid = (await ctx.runtime.showInfo()).pid;
    }
    const reapplied = await reconcile(ctx.runtime, ctx.layout, expectedServing(ctx));
    ctx.dispatch({ type: 'haproxyReady', pid });
    ctx.log.info('haproxy serving applied state', { pid, reapplied });
  } catch (error) {
    ctx.log.warn('haproxy reconciliation failed', { pid: seenPid, error: message(error) });
  }
}
