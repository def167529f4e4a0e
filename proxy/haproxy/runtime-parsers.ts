/**
 * Parsers for HAProxy runtime-API answers. Pure functions over the text of one answer (final
 * empty line already removed); each throws `RuntimeProtocolError` on a shape it does not know
 * rather than guessing. Formats were captured from 2.6.12 and 3.2.0 (see the unit tests).
 */
import { RuntimeApiError, RuntimeErrorReason, RuntimeProtocolError } from './errors.ts';
import { errorMessage, failure } from './runtime-protocol.ts';

/** `show info`: every `Key: value` line, plus the fields callers use typed. */
export interface HaproxyInfo {
  fields: Record<string, string>;
  version: string;
  pid: number;
  uptimeSeconds: number;
  currentConnections: number;
  cumulativeConnections: number;
  stopping: boolean;
}

function toInt(command: string, field: string, text: string | undefined): number {
  if (text === undefined || !/^-?\d+$/.test(text)) {
    throw new RuntimeProtocolError(command, `field ${field} is not an integer`);
  }
  return Number(text);
}

/** Parses `Key: value` lines (the value keeps any further colons). */
export function parseKeyValues(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf(':');
    if (at <= 0) continue;
    fields[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return fields;
}

export function parseShowInfo(text: string): HaproxyInfo {
  const fields = parseKeyValues(text);
  if (fields['Name'] === undefined || fields['Version'] === undefined) {
    throw new RuntimeProtocolError('show info', 'no Name/Version fields');
  }
  return {
    fields,
    version: fields['Version'],
    pid: toInt('show info', 'Pid', fields['Pid']),
    uptimeSeconds: toInt('show info', 'Uptime_sec', fields['Uptime_sec']),
    currentConnections: toInt('show info', 'CurrConns', fields['CurrConns']),
    cumulativeConnections: toInt('show info', 'CumConns', fields['CumConns']),
    stopping: fields['Stopping'] === '1',
  };
}

/** One ACL entry: HAProxy's reference (a pointer, usable as `#<ref>` in `del acl`) and the pattern. */
export interface AclEntry {
  ref: string;
  value: string;
}

const ENTRY_LINE = /^(0x[0-9a-f]+) (.*)$/;

/** `show acl <ref>`: `0x<ptr> <pattern>` per line. */
export function parseAclEntries(text: string): AclEntry[] {
  if (text === '') return [];
  return text.split('\n').map((line) => {
    const m = ENTRY_LINE.exec(line);
    if (!m) throw new RuntimeProtocolError('show acl', 'unrecognised entry line');
    return { ref: m[1]!, value: m[2]! };
  });
}

/** `prepare acl`: `New version created: <n>`. */
export function parsePreparedVersion(command: string, text: string): number {
  const m = /^New version created: (\d+)$/.exec(text);
  if (!m) throw new RuntimeProtocolError(command, 'no "New version created" line');
  return Number(m[1]);
}

/** `show ssl cert <file>` (or `*<file>` for the uncommitted transaction). */
export interface SslCertificateInfo {
  filename: string;
  /** `Used` once a bind line or crt-list serves it, `Unused` otherwise (and for transactions). */
  status: string;
  /** Uppercase hex without separators or leading zeros, as HAProxy prints it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  subject: string;
  issuer: string;
  /** `DNS:a.example`, `IP:…` entries as HAProxy prints them (2.6 prints only DNS names reliably). */
  subjectAltNames: string[];
  dnsNames: string[];
  algorithm: string;
  sha1Fingerprint: string;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** OpenSSL's `ASN1_TIME_print` form: `Nov 25 16:13:05 2026 GMT`. */
export function parseAsn1Time(command: string, text: string | undefined): Date {
  const m = /^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT$/.exec(text ?? '');
  const month = m ? MONTHS.indexOf(m[1]!) : -1;
  if (!m || month < 0) throw new RuntimeProtocolError(command, 'unrecognised certificate date');
  return new Date(Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])));
}

export function parseSslCertificate(text: string): SslCertificateInfo {
  const command = 'show ssl cert';
  const f = parseKeyValues(text);
  if (f['Filename'] === undefined || f['Serial'] === undefined) {
    throw new RuntimeProtocolError(command, 'no Filename/Serial fields');
  }
  const sans = (f['Subject Alternative Name'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return {
    filename: f['Filename'],
    status: f['Status'] ?? '',
    serial: f['Serial'].toUpperCase(),
    notBefore: parseAsn1Time(command, f['notBefore']),
    notAfter: parseAsn1Time(command, f['notAfter']),
    subject: f['Subject'] ?? '',
    issuer: f['Issuer'] ?? '',
    subjectAltNames: sans,
    dnsNames: sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
    algorithm: f['Algorithm'] ?? '',
    sha1Fingerprint: f['SHA1 FingerPrint'] ?? '',
  };
}

/** One stream of `show sess`. */
export interface SessionInfo {
  /** The session pointer, the id `shutdown session` takes. */
  id: string;
  proto: string;
  /**
   * The client address as HAProxy 2.6 prints it: the direct peer. With `accept-proxy` 2.6.12
   * still shows the peer that sent the PROXY header, not the address the header carried.
   */
  source: { address: string; port: number } | undefined;
  frontend: string;
  backend: string | undefined;
  server: string | undefined;
  ageSeconds: number;
}

/** HAProxy's `human_time`: `1d2h`, `3m4s`, `5s`. */
export function parseHumanTime(text: string): number | undefined {
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === '') return undefined;
  return Number(m[1] ?? 0) * 86400 + Number(m[2] ?? 0) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
}

function parseEndpoint(text: string | undefined): SessionInfo['source'] {
  if (text === undefined || text.startsWith('unix:')) return undefined;
  const at = text.lastIndexOf(':');
  if (at <= 0) return undefined;
  const port = Number(text.slice(at + 1));
  if (!Number.isInteger(port)) return undefined;
  return { address: text.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port };
}

function absent(value: string | undefined): string | undefined {
  return value === undefined || value === '<NONE>' || value === '<none>' ? undefined : value;
}

/**
 * `show sess`, one entry per client stream. Streams HAProxy opens itself from an applet (the log
 * ring's forwarder to the sidecar: `proto=?` and no `fe=`) belong to no client and are left out.
 */
export function parseShowSessions(text: string): SessionInfo[] {
  if (text === '') return [];
  return text.split('\n').flatMap((line) => {
    const m = /^(0x[0-9a-f]+): (.*)$/.exec(line);
    if (!m) throw new RuntimeProtocolError('show sess', 'unrecognised session line');
    const kv: Record<string, string> = {};
    for (const token of m[2]!.split(' ')) {
      const eq = token.indexOf('=');
      // Only the first occurrence: later tokens (`rq[f=…`) reuse short names.
      if (eq > 0 && !(token.slice(0, eq) in kv)) kv[token.slice(0, eq)] = token.slice(eq + 1);
    }
    if (kv['proto'] === '?' && kv['fe'] === undefined) return [];
    if (kv['proto'] === undefined || kv['fe'] === undefined) {
      throw new RuntimeProtocolError('show sess', 'session line without proto/fe');
    }
    return {
      id: m[1]!,
      proto: kv['proto'],
      source: parseEndpoint(kv['src']),
      frontend: kv['fe'],
      backend: absent(kv['be']),
      server: absent(kv['srv']),
      ageSeconds: parseHumanTime(kv['age'] ?? '') ?? 0,
    };
  });
}

/** The identifying part of `show sess <id>` (the rest of that dump is undocumented and changes). */
export interface SessionDetail {
  id: string;
  /** HAProxy's per-process stream counter (`id=`), unlike the pointer never reused. */
  uniqueId: number;
  source: SessionInfo['source'];
  frontend: string;
}

/** `show sess <id>`; `undefined` when HAProxy answers `Session not found.` */
export function parseSessionDetail(text: string): SessionDetail | undefined {
  if (text.startsWith('Session not found')) return undefined;
  const head = /^(0x[0-9a-f]+): \[[^\]]*\] id=(\d+) proto=\S+ source=(\S+)/.exec(text);
  const fe = /^\s+frontend=(\S+) /m.exec(text);
  if (!head || !fe) throw new RuntimeProtocolError('show sess', 'unrecognised session detail');
  return { id: head[1]!, uniqueId: Number(head[2]), source: parseEndpoint(head[3]), frontend: fe[1]! };
}

/** One process of the master CLI's `show proc`. */
export interface ProcessEntry {
  pid: number;
  type: string;
  /** For the master: how often it was reloaded; for a worker: how many reloads it survived. */
  reloads: number;
  uptimeSeconds: number;
  version: string;
}

export interface ProcessList {
  master: ProcessEntry & { failedReloads: number };
  /** Current workers (serving new connections). */
  workers: ProcessEntry[];
  /** Workers of earlier generations still finishing their connections. */
  oldWorkers: ProcessEntry[];
  programs: ProcessEntry[];
}

/** `0d00h02m45s` → seconds. */
export function parseProcUptime(text: string): number | undefined {
  const m = /^(\d+)d(\d+)h(\d+)m(\d+)s$/.exec(text);
  return m ? Number(m[1]) * 86400 + Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4]) : undefined;
}

export function parseShowProc(text: string): ProcessList {
  const command = 'show proc';
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (!lines[0]?.startsWith('#<PID>')) throw new RuntimeProtocolError(command, 'missing #<PID> header');
  let master: ProcessList['master'] | undefined;
  const sections: Record<'workers' | 'oldWorkers' | 'programs', ProcessEntry[]> = {
    workers: [],
    oldWorkers: [],
    programs: [],
  };
  let section: keyof typeof sections | 'master' = 'master';
  for (const line of lines.slice(1)) {
    if (line.startsWith('#')) {
      const name = line.slice(1).trim();
      if (name === 'workers') section = 'workers';
      else if (name === 'old workers') section = 'oldWorkers';
      else if (name === 'programs') section = 'programs';
      else throw new RuntimeProtocolError(command, 'unknown section');
      continue;
    }
    const m = /^(\d+)\s+(\S+)\s+(\d+)(?:\s+\[failed: (\d+)\])?\s+(\S+)\s+(\S+)\s*$/.exec(line);
    if (!m) throw new RuntimeProtocolError(command, 'unrecognised process line');
    const entry: ProcessEntry = {
      pid: Number(m[1]),
      type: m[2]!,
      reloads: Number(m[3]),
      uptimeSeconds: parseProcUptime(m[5]!) ?? 0,
      version: m[6]!,
    };
    if (section === 'master') {
      if (entry.type !== 'master') throw new RuntimeProtocolError(command, 'first process is not the master');
      master = { ...entry, failedReloads: Number(m[4] ?? 0) };
    } else {
      sections[section].push(entry);
    }
  }
  if (!master) throw new RuntimeProtocolError(command, 'no master line');
  return { master, ...sections };
}

/** What the master CLI's `reload` answered. */
export type ReloadAnswer =
  /** 2.6: the master re-executes and closes the connection; `show proc` tells the outcome. */
  | { kind: 'pending' }
  /** 2.7+: the new worker is up. */
  | { kind: 'loaded' };

/**
 * `reload` on the master CLI. 2.6 answers nothing. 2.7+ answers `Success=1` or `Success=0`, a
 * `--` line and the startup log of the new worker; `Success=0` throws `RuntimeApiError`
 * (`reload-failed`) with the log's `[ALERT]` lines, which name the configuration line at fault.
 */
export function parseReloadAnswer(text: string): ReloadAnswer {
  const answer = text.replace(/\n+$/, '');
  if (answer === '') return { kind: 'pending' };
  const [status, ...rest] = answer.split('\n');
  if (status === 'Success=1') return { kind: 'loaded' };
  if (status === 'Success=0') {
    const log = rest[0] === '--' ? rest.slice(1) : rest;
    const alerts = log
      .filter((line) => line.startsWith('[ALERT]'))
      .map((line) => line.replace(/^\[ALERT\]\s+\(\d+\)\s*:\s*/, ''));
    const message = alerts.length > 0 ? alerts.join('\n') : 'the new worker failed to load';
    throw new RuntimeApiError('reload', errorMessage(message), RuntimeErrorReason.ReloadFailed);
  }
  // Anything else is a refusal of the command itself (`Permission denied`, `Unknown command`).
  throw failure('reload', answer);
}
