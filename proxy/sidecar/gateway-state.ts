/**
 * What the sidecar knows about the files HAProxy has loaded, as part of the reducer's state
 * (`SidecarState.gateway`). Pure: the effect modules report what they did as events and read
 * the flags back; none keeps a flag of its own.
 *
 * - `previouslyRendered`: the gateway directory held a rendered config when the sidecar started
 *   (a restarted sidecar container: HAProxy may serve those files);
 * - `haproxySeen`: a HAProxy answered this sidecar (it may hold files older than the disk);
 * - `reloadPending`: files only a reload brings in (config, trust bundle, CRL) changed while
 *   HAProxy was not confirmed serving; the runtime API cannot apply them and the reconciliation
 *   compares certificates and ACLs only, so the next verification reloads first;
 * - `filesOnly`: a fleet change is staging the objects it adds: they are written as files and
 *   loaded by the reload that follows, not through the runtime API;
 * - `renderedCrl`: the rendered config references the CRL file;
 * - `haproxyAwaitedSinceMs`, `warnedHaproxyWait`: since when files are rendered and no HAProxy
 *   answered, and whether that was already logged (once past `haproxyStartWaitMs`);
 * - `startAttempts`: start attempts that did not render, since the last that did (the backoff).
 */
export interface GatewayFlags {
  previouslyRendered: boolean;
  haproxySeen: boolean;
  reloadPending: boolean;
  filesOnly: boolean;
  renderedCrl: boolean;
  haproxyAwaitedSinceMs?: number;
  warnedHaproxyWait: boolean;
  startAttempts: number;
}

export type GatewayEvent =
  | { type: 'started'; previouslyRendered: boolean }
  /** Files only a reload brings in were written while HAProxy may serve older ones. */
  | { type: 'reloadNeeded' }
  /** A new HAProxy worker serves the files on disk. */
  | { type: 'reloaded' }
  /** A fleet change starts (`filesOnly: true`) or ends staging the objects it adds. */
  | { type: 'staging'; filesOnly: boolean }
  /** Whether the config now rendered (or about to be) references the CRL file. */
  | { type: 'crlRendered'; crl: boolean }
  /** Files rendered by a start attempt at `atMs` (epoch ms): HAProxy is awaited from then. */
  | { type: 'haproxyAwaited'; atMs: number }
  /** The wait for HAProxy was logged as too long. */
  | { type: 'haproxyWaitWarned' }
  /** A start attempt ended without rendering; the next waits longer. */
  | { type: 'startRetried' };

export function initialGatewayFlags(): GatewayFlags {
  return {
    previouslyRendered: false,
    haproxySeen: false,
    reloadPending: false,
    filesOnly: false,
    renderedCrl: false,
    warnedHaproxyWait: false,
    startAttempts: 0,
  };
}

export function reduceGateway(flags: GatewayFlags, event: GatewayEvent): GatewayFlags {
  switch (event.type) {
    case 'started':
      return { ...flags, previouslyRendered: event.previouslyRendered };
    case 'reloadNeeded':
      return { ...flags, reloadPending: true };
    case 'reloaded':
      return { ...flags, reloadPending: false };
    case 'staging':
      return { ...flags, filesOnly: event.filesOnly };
    case 'crlRendered':
      return { ...flags, renderedCrl: event.crl };
    case 'haproxyAwaited':
      return { ...flags, haproxyAwaitedSinceMs: event.atMs, startAttempts: 0 };
    case 'haproxyWaitWarned':
      return { ...flags, warnedHaproxyWait: true };
    case 'startRetried':
      return { ...flags, startAttempts: flags.startAttempts + 1 };
  }
}

/** A running HAProxy may have loaded earlier files: a restarted sidecar, or a HAProxy seen. */
export function mayServeOldFiles(flags: GatewayFlags): boolean {
  return flags.haproxySeen || flags.previouslyRendered;
}

/** Whether the wait for HAProxy is long enough to log, and not logged yet. */
export function haproxyWaitOverdue(flags: GatewayFlags, nowMs: number, limitMs: number): boolean {
  return (
    flags.haproxyAwaitedSinceMs !== undefined &&
    !flags.warnedHaproxyWait &&
    nowMs - flags.haproxyAwaitedSinceMs > limitMs
  );
}
