/**
 * Prometheus text for `GET /metrics`: the sidecar's own gauges and counters from its state, and
 * the terminate routes' TLS counters read from HAProxy's `st_terminate` stick table (see
 * `proxy/haproxy/render-terminate.ts` for why they live there).
 *
 * Every family is declared once in {@link SIDECAR_FAMILIES} (or by a contributor through
 * {@link MetricsRegistry.family}); the registry (metrics-registry.ts) renders each family whole,
 * so families never interleave and a family's label set never varies. Label values stay
 * bounded: versions and serials appear only on `…_info` gauges, one series per object at a
 * time, never on a counter or on the refusal gauge.
 *
 * Counters read from HAProxy restart at 0 when it reloads (a new worker, new stick tables);
 * {@link ReloadSafeCounters} keeps the sum in the sidecar, so what Prometheus sees only grows.
 */
import { TLS_COUNTER, type TlsCounter } from '../haproxy/render-terminate.ts';
import {
  type MetricFamily,
  type MetricsContributor,
  MetricsRegistry,
  type ReloadSafeCounters,
} from './metrics-registry.ts';
import { type ObjectState, Phase, type SidecarState } from './state.ts';

export {
  type Labels,
  labelValue,
  type MetricFamily,
  type MetricsContributor,
  MetricsRegistry,
  type MetricType,
  ReloadSafeCounters,
} from './metrics-registry.ts';

/** The sidecar's own families. Names and label sets are the contract dashboards and alarms use. */
export const SIDECAR_FAMILIES = {
  ready: {
    name: 'portcullis_sidecar_ready',
    type: 'gauge',
    help: '1 when HAProxy serves the applied state and its ready flag is set.',
    labels: [],
  },
  rendered: {
    name: 'portcullis_sidecar_rendered',
    type: 'gauge',
    help: '1 once valid state was rendered for HAProxy.',
    labels: [],
  },
  startError: {
    name: 'portcullis_sidecar_start_error',
    type: 'gauge',
    help: '1 while the start is blocked, labelled with the check code.',
    labels: ['code'],
  },
  applies: {
    name: 'portcullis_sidecar_applies_total',
    type: 'counter',
    help: 'Applies by object kind, result and refusal reason.',
    labels: ['kind', 'result', 'reason'],
  },
  lastApplyOk: {
    name: 'portcullis_sidecar_last_apply_ok',
    type: 'gauge',
    help: '1 when the last apply (of any object) succeeded.',
    labels: [],
  },
  lastApplyTime: {
    name: 'portcullis_sidecar_last_apply_timestamp_seconds',
    type: 'gauge',
    help: 'When the last apply (of any object) ended.',
    labels: [],
  },
  objectInSync: {
    name: 'portcullis_object_in_sync',
    type: 'gauge',
    help: '1 when the object serves the version last asked for (poll or nudge), 0 while it does not (refused, failed, or not applied yet).',
    labels: ['object', 'kind'],
  },
  objectLastApplyOk: {
    name: 'portcullis_object_last_apply_ok',
    type: 'gauge',
    help: '1 when the last apply of this object succeeded, 0 when it was refused or failed.',
    labels: ['object', 'kind'],
  },
  objectLastApplyTime: {
    name: 'portcullis_object_last_apply_timestamp_seconds',
    type: 'gauge',
    help: 'When the last apply of this object ended, whatever its result.',
    labels: ['object', 'kind'],
  },
  objectInfo: {
    name: 'portcullis_object_info',
    type: 'gauge',
    help: 'The version each object serves and the version last asked for (value 1).',
    labels: ['object', 'kind', 'served_version', 'desired_version'],
  },
  certificateInSync: {
    name: 'portcullis_certificate_in_sync',
    type: 'gauge',
    help: '1 when the certificate served is the version last asked for, else 0.',
    labels: ['certificate'],
  },
  certificateInfo: {
    name: 'portcullis_certificate_info',
    type: 'gauge',
    help: 'The serial and version of each certificate served, and the version asked for (value 1).',
    labels: ['certificate', 'serial', 'served_version', 'desired_version'],
  },
  notAfter: {
    name: 'portcullis_certificate_not_after_timestamp_seconds',
    type: 'gauge',
    help: 'Expiry of each certificate served.',
    labels: ['certificate'],
  },
  renewAt: {
    name: 'portcullis_certificate_renew_at_timestamp_seconds',
    type: 'gauge',
    help: 'When the control plane renews each certificate served (2/3 of its lifetime, or renewBeforeDays).',
    labels: ['certificate'],
  },
  allowlistEntries: {
    name: 'portcullis_allowlist_entries',
    type: 'gauge',
    help: 'CIDRs in the source allowlist HAProxy enforces.',
    labels: [],
  },
  rejected: {
    name: 'portcullis_sidecar_rejected',
    type: 'gauge',
    help: 'Objects whose latest version was refused by validation and is not served (value 1).',
    labels: ['object', 'code'],
  },
} as const satisfies Record<string, MetricFamily>;

/** One entry of `show table <name>`: its key and every `name=value` number after it. */
export interface StickEntry {
  key: string;
  values: Record<string, number>;
}

/**
 * Parses `show table <name>` (2.6): a `# table: …` header, then
 * `0x55…: key=api.example use=0 exp=0 gpc0=3 gpc1=1 …` per entry. Keys never contain spaces here
 * (route names and `client@peer:port`).
 */
export function parseStickTable(text: string): StickEntry[] {
  const entries: StickEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^0x[0-9a-f]+: key=(\S+)((?: \S+=\S+)*)\s*$/.exec(line);
    if (!m) continue;
    const values: Record<string, number> = {};
    for (const pair of m[2]!.trim().split(' ')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const value = Number(pair.slice(eq + 1));
      if (Number.isFinite(value)) values[pair.slice(0, eq)] = value;
    }
    entries.push({ key: m[1]!, values });
  }
  return entries;
}

/** Route name → counter name → value, from `st_terminate`. */
export type TlsCounters = Record<string, Record<TlsCounter, number>>;

export function tlsCountersFrom(entries: readonly StickEntry[]): TlsCounters {
  const out: TlsCounters = {};
  for (const entry of entries) {
    const counters = {} as Record<TlsCounter, number>;
    for (const [name, index] of Object.entries(TLS_COUNTER) as [TlsCounter, number][]) {
      counters[name] = entry.values[`gpc${index}`] ?? 0;
    }
    out[entry.key] = counters;
  }
  return out;
}

/** Sums `tls` (this worker's table) into `totals`; returns the summed counters by route. */
export function reloadSafeTls(totals: ReloadSafeCounters, pid: number, tls: TlsCounters): TlsCounters {
  const flat: Record<string, number> = {};
  for (const [route, counters] of Object.entries(tls)) {
    for (const [name, value] of Object.entries(counters)) flat[`${route}\u0000${name}`] = value;
  }
  const summed = totals.observe(pid, flat);
  const out: TlsCounters = {};
  for (const [key, value] of Object.entries(summed)) {
    const [route = '', name = ''] = key.split('\u0000');
    // Only the routes HAProxy serves now: a removed route's series ends.
    if (tls[route] === undefined) continue;
    out[route] ??= {} as Record<TlsCounter, number>;
    out[route][name as TlsCounter] = value;
  }
  return out;
}

const TLS_FAMILIES: Record<TlsCounter, MetricFamily> = {
  handshake: {
    name: 'portcullis_tls_handshakes_total',
    type: 'counter',
    help: 'TLS handshakes completed on terminate routes (Envoy ssl.handshake).',
    labels: ['route'],
  },
  noCertificate: {
    name: 'portcullis_tls_no_certificate_total',
    type: 'counter',
    help: 'Handshakes without a client certificate (Envoy ssl.no_certificate).',
    labels: ['route'],
  },
  failVerifyNoCert: {
    name: 'portcullis_tls_fail_verify_no_cert_total',
    type: 'counter',
    help: 'Connections refused for lack of a client certificate on strict routes (Envoy ssl.fail_verify_no_cert).',
    labels: ['route'],
  },
  failVerifyError: {
    name: 'portcullis_tls_fail_verify_error_total',
    type: 'counter',
    help: 'Connections refused because the client certificate did not verify (Envoy ssl.fail_verify_error).',
    labels: ['route'],
  },
  failVerifySan: {
    name: 'portcullis_tls_fail_verify_san_total',
    type: 'counter',
    help: 'Connections refused because the client certificate has no trusted SAN or subject (Envoy ssl.fail_verify_san).',
    labels: ['route'],
  },
};

/**
 * Whether an object serves the version last asked for: the rule behind `…_in_sync`. Before the
 * sidecar has started (`started` false) anything not applied is out of sync; once it runs, an
 * object never asked for anything (its secret has no `AWSCURRENT`, and no route needs it) has
 * nothing to serve and is in sync.
 */
export function objectInSync(object: ObjectState, started = true): boolean {
  if (object.applied === undefined) return started && object.desired === undefined;
  return object.desired === undefined || object.desired.versionId === object.applied.versionId;
}

/** What one scrape shows besides the state. */
export interface MetricsInput {
  /** `undefined` when HAProxy could not be asked (its families are declared, without samples). */
  tls: TlsCounters | undefined;
  /** Families other parts of the sidecar add (refusals, log lines). */
  contributors?: readonly MetricsContributor[];
}

/** Declares and fills the sidecar's families from its state. */
export function collectSidecar(registry: MetricsRegistry, state: SidecarState): void {
  const f = SIDECAR_FAMILIES;
  for (const family of Object.values(f)) registry.family(family);
  registry.set(f.ready, {}, state.phase === Phase.Ready ? 1 : 0);
  registry.set(f.rendered, {}, state.phase === Phase.Starting ? 0 : 1);
  if (state.startError) registry.set(f.startError, { code: state.startError.code }, 1);
  for (const [key, value] of Object.entries(state.applyCounts)) {
    const [kind = '', result = '', reason = ''] = key.split('|');
    registry.add(f.applies, { kind, result, reason }, value);
  }
  if (state.lastApply) {
    registry.set(f.lastApplyOk, {}, state.lastApply.ok ? 1 : 0);
    registry.set(f.lastApplyTime, {}, Date.parse(state.lastApply.at) / 1000);
  }
  for (const object of Object.values(state.objects)) {
    const { ref, applied, desired, rejected, lastResult } = object;
    const id = { object: ref.key, kind: ref.kind };
    const inSync = objectInSync(object, state.phase !== Phase.Starting);
    registry.set(f.objectInSync, id, inSync ? 1 : 0);
    if (lastResult !== undefined) {
      registry.set(f.objectLastApplyOk, id, lastResult.ok ? 1 : 0);
      registry.set(f.objectLastApplyTime, id, Date.parse(lastResult.at) / 1000);
    }
    registry.set(
      f.objectInfo,
      {
        ...id,
        served_version: applied?.versionId ?? '',
        desired_version: desired?.versionId ?? applied?.versionId ?? '',
      },
      1,
    );
    if (rejected) registry.set(f.rejected, { object: ref.key, code: rejected.code }, 1);
    if (ref.kind === 'certificate' && ref.name !== undefined) {
      const certificate = ref.name;
      registry.set(f.certificateInSync, { certificate }, inSync ? 1 : 0);
      if (applied === undefined) continue;
      registry.set(
        f.certificateInfo,
        {
          certificate,
          serial: applied.facts.serial ?? '',
          served_version: applied.versionId,
          desired_version: desired?.versionId ?? applied.versionId,
        },
        1,
      );
      if (applied.facts.notAfter)
        registry.set(f.notAfter, { certificate }, Date.parse(applied.facts.notAfter) / 1000);
      if (applied.facts.renewAt)
        registry.set(f.renewAt, { certificate }, Date.parse(applied.facts.renewAt) / 1000);
    }
    if (ref.kind === 'allowlist' && applied?.facts.size !== undefined)
      registry.set(f.allowlistEntries, {}, applied.facts.size);
  }
}

/** Declares the TLS counter families and fills them when `tls` is known. */
export function collectTls(registry: MetricsRegistry, tls: TlsCounters | undefined): void {
  for (const [counter, family] of Object.entries(TLS_FAMILIES) as [TlsCounter, MetricFamily][]) {
    registry.family(family);
    if (tls === undefined) continue;
    for (const route of Object.keys(tls)) registry.set(family, { route }, tls[route]?.[counter] ?? 0);
  }
}

/** The full `/metrics` body. Pure: state and counters in, text out. */
export function renderMetrics(state: SidecarState, input: MetricsInput = { tls: undefined }): string {
  const registry = new MetricsRegistry();
  collectSidecar(registry, state);
  collectTls(registry, input.tls);
  for (const contribute of input.contributors ?? []) contribute(registry);
  return registry.render();
}
