/**
 * The sidecar's timers: the start loop (retried with exponential backoff until rendered), the
 * HAProxy watch (`show info` every `watchIntervalMs`: a new pid is verified and reconciled), the
 * jittered poll backstop and the EMF emission. Every round but EMF runs in the context's queue.
 */
import { hostname } from 'node:os';
import { runEffects } from './apply-object.ts';
import { message, type SidecarContext } from './context.ts';
import { type EmfCursor, type EmfReadings, emfLines } from './emf.ts';
import { haproxyWaitOverdue } from './gateway-state.ts';
import { tryStart } from './start.ts';
import { Phase } from './state.ts';

export interface LoopDeps {
  random: () => number;
  /** TLS and access log totals for an EMF emission (see `scrape.ts`). */
  emfReadings: () => Promise<EmfReadings>;
  /** Where EMF lines go. */
  write: (line: string) => void;
}

export interface Loops {
  /** One start attempt now (in the caller's turn of the queue); notes when HAProxy is awaited from. */
  startAttempt(): Promise<void>;
  /** One poll round (outside the queue: callers queue it). */
  pollOnce(): Promise<void>;
  /** Schedules the first round of every loop. */
  start(): void;
  /** Stops every timer. */
  stop(): void;
  /** Resolves once a start attempt in flight has settled. */
  settled(): Promise<void>;
}

export function createLoops(ctx: SidecarContext, deps: LoopDeps): Loops {
  const { config, log } = ctx;
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  let starting: Promise<void> | undefined;
  let emfCursor: EmfCursor | undefined;

  const later = (delayMs: number, run: () => void) => {
    if (closed) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, delayMs);
    timers.add(timer);
  };

  const startAttempt = async (): Promise<void> => {
    if (closed || ctx.state.phase !== Phase.Starting) return;
    await tryStart(ctx, ctx.state.gateway.startAttempts);
    if (ctx.state.phase !== Phase.Starting) ctx.dispatch({ type: 'haproxyAwaited', atMs: Date.now() });
  };

  const scheduleStart = (delayMs: number) =>
    later(delayMs, () => {
      starting = ctx
        .exclusive(startAttempt)
        .catch((error: unknown) => log.error('start attempt failed', { error: message(error) }))
        .then(() => {
          if (ctx.state.phase === Phase.Starting) {
            ctx.dispatch({ type: 'startRetried' });
            const attempt = ctx.state.gateway.startAttempts;
            scheduleStart(
              Math.min(config.retry.maxMs, config.retry.initialMs * 2 ** Math.min(attempt - 1, 16)),
            );
          }
        });
    });

  const watch = async (): Promise<void> => {
    if (ctx.state.phase === Phase.Starting) return;
    let pid: number;
    try {
      pid = (await ctx.runtime.showInfo()).pid;
    } catch (error) {
      if (ctx.state.phase === Phase.Ready) log.warn('haproxy unreachable', { error: message(error) });
      ctx.dispatch({ type: 'haproxyDown' });
      const since = ctx.state.gateway.haproxyAwaitedSinceMs;
      if (
        since !== undefined &&
        haproxyWaitOverdue(ctx.state.gateway, Date.now(), config.haproxyStartWaitMs)
      ) {
        ctx.dispatch({ type: 'haproxyWaitWarned' });
        log.warn('haproxy has not started', { waitedMs: Date.now() - since });
      }
      return;
    }
    await runEffects(ctx, ctx.dispatch({ type: 'haproxyUp', pid }));
  };

  const scheduleWatch = () =>
    later(config.watchIntervalMs, () => {
      ctx
        .exclusive(watch)
        .catch((error: unknown) => log.error('watch failed', { error: message(error) }))
        .finally(scheduleWatch);
    });

  const pollOnce = async (): Promise<void> => {
    if (ctx.state.phase === Phase.Starting) return;
    for (const key of Object.keys(ctx.state.objects)) {
      const object = ctx.state.objects[key];
      if (object === undefined) continue;
      try {
        const view = await ctx.store.describe(object.ref.secretId);
        await runEffects(ctx, ctx.dispatch({ type: 'polled', key, view }));
      } catch (error) {
        log.warn('poll failed', { object: key, secretId: object.ref.secretId, error: message(error) });
      }
    }
  };

  const schedulePoll = () =>
    later(config.pollIntervalMs + Math.floor(deps.random() * config.pollJitterMs), () => {
      ctx
        .exclusive(pollOnce)
        .catch((error: unknown) => log.error('poll round failed', { error: message(error) }))
        .finally(schedulePoll);
    });

  const scheduleEmf = () => {
    const emf = config.emf;
    if (emf === undefined) return;
    later(emf.intervalMs, () => {
      deps
        .emfReadings()
        .then((readings) => {
          // The host name (the task's on Fargate) finds the task in Logs Insights; never a dimension.
          const settings = { ...emf, properties: { Host: hostname() } };
          const out = emfLines(ctx.state, settings, ctx.now(), readings, emfCursor);
          emfCursor = out.cursor;
          for (const text of out.lines) deps.write(`${text}\n`);
        })
        .catch((error: unknown) => log.warn('emf emission failed', { error: message(error) }))
        .finally(scheduleEmf);
    });
  };

  return {
    startAttempt,
    pollOnce,
    start() {
      scheduleStart(0);
      scheduleWatch();
      schedulePoll();
      scheduleEmf();
    },
    stop() {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
    async settled() {
      await starting?.catch(() => undefined);
    },
  };
}
