/**
 * Prometheus text for `GET /metrics`: the sidecar's own gauges and counters from its state, and
 * the terminate routes' TLS counters read from HAProxy's `st_terminate` stick table (see
 * `proxy/haproxy/render-terminate.ts` for why they live there). Pure: text in, text out.
 */
import { TLS_COUNTER, type TlsCounter } from '../haproxy/render-terminate.ts';
import { Phase, type SidecarState } from './state.ts';

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

const TLS_METRICS: Record<TlsCounter, { name: string; help: string }> = {
  handshake: {
    name: 'portcullis_tls_handshakes_total',
    help: 'TLS handshakes completed on terminate routes (Envoy ssl.handshake).',
  },
  noCertificate: {
    name: 'portcullis_tls_no_certificate_total',
    help: 'Handshakes without a client certificate (Envoy ssl.no_certificate).',
  },
  failVerifyNoCert: {
    name: 'portcullis_tls_fail_verify_no_cert_total',
    help: 'Connections refused for lack of a client certificate on strict routes (Envoy ssl.fail_verify_no_cert).',
  },
  failVerifyError: {
    name: 'portcullis_tls_fail_verify_error_total',
    help: 'Connections refused because the client certificate did not verify (Envoy ssl.fail_verify_error).',
  },
  failVerifySan: {
    name: 'portcullis_tls_fail_verify_san_total',
    help: 'Connections refused because the client certificate has no trusted SAN or subject (Envoy ssl.fail_verify_san).',
  },
};

/** Escapes a label value (backslash, quote, newline) as the exposition format wants. */
export function labelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labels(pairs: Record<string, string>): string {
  const inner = Object.entries(pairs)
    .map(([k, v]) => `${k}="${labelValue(v)}"`)
    .join(',');
  return inner === '' ? '' : `{${inner}}`;
}

/** The full `/metrics` body. `tls` is `undefined` when HAProxy could not be asked (its lines are left out). */
export function renderMetrics(state: SidecarState, tls: TlsCounters | undefined): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter', help: string) =>
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);

  family(
    'portcullis_sidecar_ready',
    'gauge',
    '1 when HAProxy serves the applied state and its ready flag is set.',
  );
  out.push(`portcullis_sidecar_ready ${state.phase === Phase.Ready ? 1 : 0}`);
  family('portcullis_sidecar_rendered', 'gauge', '1 once valid state was rendered for HAProxy.');
  out.push(`portcullis_sidecar_rendered ${state.phase === Phase.Starting ? 0 : 1}`);
  family(
    'portcullis_sidecar_start_error',
    'gauge',
    '1 while the start is blocked, labelled with the check code.',
  );
  if (state.startError)
    out.push(`portcullis_sidecar_start_error${labels({ code: state.startError.code })} 1`);

  family('portcullis_sidecar_applies_total', 'counter', 'Applies by object kind, result and refusal reason.');
  for (const [key, value] of Object.entries(state.applyCounts).sort(([a], [b]) => a.localeCompare(b))) {
    const [kind = '', result = '', reason = ''] = key.split('|');
    out.push(`portcullis_sidecar_applies_total${labels({ kind, result, reason })} ${value}`);
  }
  if (state.lastApply) {
    family('portcullis_sidecar_last_apply_ok', 'gauge', '1 when the last apply succeeded.');
    out.push(`portcullis_sidecar_last_apply_ok ${state.lastApply.ok ? 1 : 0}`);
    family('portcullis_sidecar_last_apply_timestamp_seconds', 'gauge', 'When the last apply ended.');
    out.push(`portcullis_sidecar_last_apply_timestamp_seconds ${Date.parse(state.lastApply.at) / 1000}`);
  }

  family('portcullis_certificate_not_after_timestamp_seconds', 'gauge', 'Expiry of each certificate served.');
  family(
    'portcullis_certificate_info',
    'gauge',
    'The serial and version of each certificate served (value 1).',
  );
  const expiry: string[] = [];
  const info: string[] = [];
  let allowlistSize: number | undefined;
  const rejected: string[] = [];
  for (const object of Object.values(state.objects)) {
    const applied = object.applied;
    if (object.rejected) {
      rejected.push(
        `portcullis_sidecar_rejected${labels({ object: object.ref.key, code: object.rejected.code, version: object.rejected.versionId })} 1`,
      );
    }
    if (applied === undefined) continue;
    if (object.ref.kind === 'certificate' && object.ref.name !== undefined && applied.facts.notAfter) {
      expiry.push(
        `portcullis_certificate_not_after_timestamp_seconds${labels({ certificate: object.ref.name })} ${Date.parse(applied.facts.notAfter) / 1000}`,
      );
      info.push(
        `portcullis_certificate_info${labels({ certificate: object.ref.name, serial: applied.facts.serial ?? '', version: applied.versionId })} 1`,
      );
    }
    if (object.ref.kind === 'allowlist') allowlistSize = applied.facts.size;
  }
  out.push(...expiry.sort(), ...info.sort());
  family('portcullis_allowlist_entries', 'gauge', 'CIDRs in the source allowlist HAProxy enforces.');
  if (allowlistSize !== undefined) out.push(`portcullis_allowlist_entries ${allowlistSize}`);
  family('portcullis_sidecar_rejected', 'gauge', 'Versions refused by validation and not served (value 1).');
  out.push(...rejected.sort());

  if (tls !== undefined) {
    for (const [counter, meta] of Object.entries(TLS_METRICS) as [
      TlsCounter,
      { name: string; help: string },
    ][]) {
      family(meta.name, 'counter', meta.help);
      for (const route of Object.keys(tls).sort()) {
        out.push(`${meta.name}${labels({ route })} ${tls[route]?.[counter] ?? 0}`);
      }
    }
  }
  return `${out.join('\n')}\n`;
}
