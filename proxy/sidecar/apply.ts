/**
 * Effects on a running gateway: each object is written to its file first (atomic rename, so a
 * reload or a restart of HAProxy picks the same state), then applied through the runtime API as
 * one transaction, then read back. On any failure the transaction is aborted (the runtime
 * client does that), the previous file is put back and `ApplyFailed` is thrown: HAProxy keeps
 * serving what it served before.
 *
 * | object       | runtime API (HAProxy ≥)                                                  | read back |
 * | ------------ | ------------------------------------------------------------------------ | --------- |
 * | certificate  | `set ssl cert` → `show ssl cert *<f>` → `commit ssl cert` (2.1/2.2)       | `show ssl cert <f>` serial |
 * | trust bundle | file + seamless master `reload` (2.0; see below)                         | `show ssl ca-file <f>` count |
 * | CRL          | file + seamless master `reload`                                          | — |
 * | allowlist    | `prepare acl` → `add acl @<v>` … → `commit acl @<v>` (2.4)               | `show acl <f>` entries |
 * | cut sessions | `show table st_client_sessions`, `show sess`, `shutdown session` (1.4)   | — |
 * | ready flag   | `set map <state.map> ready 1` (1.5)                                      | — |
 *
 * Trust bundles are not committed with `set/commit ssl ca-file` although 2.5+ has it: on
 * HAProxy 2.6.12 (Debian bookworm), 3.0.11 and 3.2.0 (the image) alike (`caFileCommitSafe` in
 * proxy/haproxy/capabilities.ts), after one `commit ssl ca-file` every later `commit ssl cert`
 * of a certificate verified with that CA file reports success and the new serial in
 * `show ssl cert`, yet new handshakes keep getting the old certificate; a second
 * `commit ssl ca-file` then kills the worker (measured here, with `crt-list` lines and with a
 * plain `crt` bind alike). `writeTrustFiles` therefore only writes the files, and the sidecar
 * reloads HAProxy seamlessly (`expose-fd listeners`): new connections get the new bundle,
 * established ones finish on the previous worker. Trust changes are rare (a CA rollover);
 * certificates and allowlists, which change often, stay on the runtime API.
 */
import { readFile, rm } from 'node:fs/promises';
import { cidrContainsAddress, parseCidr, parseIp } from '../../lib/allowlist/index.ts';
import {
  FRONTEND,
  type GatewayLayout,
  parseSessionKey,
  READY_KEY,
  SESSION_TABLE,
  writeFileAtomic,
} from '../haproxy/index.ts';
import { terminatePaths } from '../haproxy/render-terminate.ts';
import { HaproxyRuntime, sameSerial } from '../haproxy/runtime.ts';
import { command } from '../haproxy/runtime-protocol.ts';
import { unixSocketTransport } from '../haproxy/runtime-transport.ts';
import { ApplyFailed } from './errors.ts';
import { parseStickTable } from './metrics.ts';
import type { GatewayRuntime } from './runtime-port.ts';

/** Mode of every file under `certs/` that holds a private key. */
export const KEY_FILE_MODE = 0o600;
/** Public material (CA bundle, CRL, ACL and map files). */
export const PUBLIC_FILE_MODE = 0o644;

/** The runtime-API calls these effects make: the sidecar's, less reloading. */
type Runtime = Omit<GatewayRuntime, 'reload' | 'waitForReload'>;

export interface ApplyTarget {
  layout: GatewayLayout;
  /** Absent while HAProxy is not confirmed serving: files only, the next verification reconciles. */
  runtime: Runtime | undefined;
  /** A client for a worker by pid (default: the master CLI of `layout`, see {@link workerRuntime}). */
  worker?: (pid: number) => Runtime;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function restore(path: string, previous: string | undefined, mode: number): Promise<void> {
  if (previous === undefined) await rm(path, { force: true });
  else await writeFileAtomic(path, previous, mode);
}

function message(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Writes `<certsDir>/<name>.pem` (0600) and, when HAProxy has it loaded, replaces it in one
 * `set/commit ssl cert` transaction checked by serial before and after the commit.
 */
export async function installCertificate(
  target: ApplyTarget,
  secretId: string,
  name: string,
  pem: string,
  serial: string,
  loaded: boolean,
): Promise<void> {
  const path = terminatePaths(target.layout).certificate(name);
  const previous = await readOptional(path);
  // A restarted sidecar finds its files current: leave them (and their mtimes) alone.
  if (previous !== pem) await writeFileAtomic(path, pem, KEY_FILE_MODE);
  if (target.runtime === undefined || !loaded) return;
  try {
    const served = await target.runtime.updateCertificate(path, pem);
    if (!sameSerial(served.serial, serial)) throw new Error(`HAProxy serves serial ${served.serial}`);
  } catch (error) {
    await restore(path, previous, KEY_FILE_MODE);
    throw new ApplyFailed(secretId, `certificate ${name}: ${message(error)}`, { cause: error });
  }
}

/** How many certificates `show ssl ca-file <path>` lists (2.6 numbers them `Certificate #1:` …). */
export function countCaFileCertificates(answer: string): number {
  return (answer.match(/^Certificate #\d+:/gm) ?? []).length;
}

/**
 * Writes `trust.pem` (and `crl.pem`), each atomically. HAProxy picks them up with the seamless
 * reload that follows (see the note above on `commit ssl ca-file`); the reload's reconciliation
 * reads the CA file back by certificate count.
 */
export async function writeTrustFiles(
  layout: GatewayLayout,
  trust: { caPem: string; crlPem: string | undefined },
): Promise<void> {
  const paths = terminatePaths(layout);
  await writeFileAtomic(paths.trust, trust.caPem, PUBLIC_FILE_MODE);
  if (trust.crlPem !== undefined) await writeFileAtomic(paths.crl, trust.crlPem, PUBLIC_FILE_MODE);
}

const MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** The address in both forms HAProxy matches it in: IPv4 and its IPv4-mapped IPv6 (`::ffff:a.b.c.d`). */
function addressForms(bytes: Uint8Array): Uint8Array[] {
  if (bytes.length === 4) return [bytes, Buffer.concat([MAPPED_PREFIX, bytes])];
  if (Buffer.from(bytes.subarray(0, 12)).equals(MAPPED_PREFIX)) return [bytes, bytes.subarray(12)];
  return [bytes];
}

/**
 * Whether an allowlist admits a client the way HAProxy's `src` ACL does: an IPv4 client matches
 * IPv4-mapped IPv6 entries too (and a mapped client IPv4 entries).
 */
function covered(cidrs: readonly string[]): (address: string) => boolean {
  const parsed = cidrs.flatMap((text) => {
    const result = parseCidr(text);
    return result.kind === 'ok' ? [result.cidr] : [];
  });
  return (address) => {
    const bytes = parseIp(address);
    if (bytes === undefined) return false;
    const forms = addressForms(bytes);
    return parsed.some((cidr) => forms.some((form) => cidrContainsAddress(cidr, form)));
  };
}

/**
 * Closes the sessions of clients the previous allowlist admitted and the new one does not.
 * The client is the PROXY source when there is one: `show sess` prints only the direct peer in
 * 2.6, so the gateway's `st_client_sessions` table (`client@peer:port`) maps one to the other.
 * Connections the old list did not cover either (NLB health checks) are left alone.
 */
export async function cutRemovedSources(
  runtime: Runtime,
  previous: readonly string[],
  next: readonly string[],
): Promise<number> {
  const wasAllowed = covered(previous);
  const isAllowed = covered(next);
  const peers = new Set<string>();
  const answer = await runtime.execute(command('show table', SESSION_TABLE));
  for (const entry of parseStickTable(answer)) {
    if ((entry.values['conn_cur'] ?? 0) <= 0) continue;
    const key = parseSessionKey(entry.key);
    if (key === undefined) continue;
    if (wasAllowed(key.client) && !isAllowed(key.client)) peers.add(`${key.peer}|${key.peerPort}`);
  }
  if (peers.size === 0) return 0;
  const frontends = new Set<string>([FRONTEND.tls, FRONTEND.http]);
  return runtime.cutSessions(
    (session) =>
      frontends.has(session.frontend) &&
      session.source !== undefined &&
      peers.has(`${session.source.address}|${session.source.port}`),
  );
}

/**
 * A client for one worker through the master CLI (`@!<pid> <command>`, HAProxy ≥ 2.0): after a
 * seamless reload the previous worker keeps its established connections but no longer owns the
 * stats socket. Single commands only (the prefix applies to one command line).
 */
export function workerRuntime(layout: GatewayLayout, pid: number): HaproxyRuntime {
  return new HaproxyRuntime({
    adminSocket: layout.masterSocket,
    // The master CLI keeps a non-interactive connection open until the client shuts down its side.
    transport: (socket, request, options) =>
      unixSocketTransport(socket, `@!${pid} ${request}`, { ...options, halfClose: true }),
  });
}

/** Cuts removed sources in the current worker and in every previous one still finishing connections. */
export async function cutRemovedSourcesEverywhere(
  runtime: Runtime,
  layout: GatewayLayout,
  previous: readonly string[],
  next: readonly string[],
  worker: (pid: number) => Runtime = (pid) => workerRuntime(layout, pid),
): Promise<number> {
  let cut = await cutRemovedSources(runtime, previous, next);
  const processes = await runtime.showProc().catch(() => undefined);
  // After a failed reload 3.2 lists the serving worker, already cut above, under old workers.
  const serving = await runtime.showInfo().then(
    (info) => info.pid,
    () => undefined,
  );
  for (const old of processes?.oldWorkers ?? []) {
    if (old.pid === serving) continue;
    cut += await cutRemovedSources(worker(old.pid), previous, next).catch(() => 0);
  }
  return cut;
}

/**
 * Writes the allowlist file and replaces the live ACL in one `prepare/commit acl` transaction,
 * reads the entries back, then (optionally) cuts sessions of removed sources.
 */
export async function installAllowlist(
  target: ApplyTarget,
  secretId: string,
  cidrs: readonly string[],
  previous: readonly string[] | undefined,
  options: { cutRemovedSessions: boolean },
): Promise<{ cut: number }> {
  const path = target.layout.allowlist;
  const before = await readOptional(path);
  await writeFileAtomic(path, cidrs.length === 0 ? '' : `${cidrs.join('\n')}\n`, PUBLIC_FILE_MODE);
  if (target.runtime === undefined) return { cut: 0 };
  const runtime = target.runtime;
  try {
    await runtime.replaceAcl(path, cidrs);
    const served = (await runtime.showAclEntries(path)).map((e) => e.value);
    const want = new Set(cidrs);
    if (served.length !== cidrs.length || served.some((value) => !want.has(value))) {
      throw new Error(`HAProxy holds ${served.length} entries, expected ${cidrs.length}`);
    }
  } catch (error) {
    await restore(path, before, PUBLIC_FILE_MODE);
    if (previous !== undefined) await runtime.replaceAcl(path, previous).catch(() => undefined);
    throw new ApplyFailed(secretId, `allowlist: ${message(error)}`, { cause: error });
  }
  if (!options.cutRemovedSessions || previous === undefined) return { cut: 0 };
  // The new list is in force; a failure to cut is reported but does not undo it.
  return {
    cut: await cutRemovedSourcesEverywhere(runtime, target.layout, previous, cidrs, target.worker),
  };
}

/** What HAProxy must serve; compared with what it does after a (re)start. */
export interface ExpectedServing {
  certificates: { name: string; pem: string; serial: string }[];
  allowlist: readonly string[];
  trust: { caPem: string; crlPem: string | undefined; caCount: number } | undefined;
  trustLoaded: { ca: boolean; crl: boolean };
}

/**
 * Reconciles a (re)started or reloaded HAProxy with the applied state, then sets its ready
 * flag (file first, then `set map`). Returns the objects it had to re-apply.
 */
export async function reconcile(
  runtime: Runtime,
  layout: GatewayLayout,
  expected: ExpectedServing,
): Promise<string[]> {
  const reapplied: string[] = [];
  const paths = terminatePaths(layout);
  for (const certificate of expected.certificates) {
    const path = paths.certificate(certificate.name);
    const served = await runtime.showSslCert(path);
    if (!sameSerial(served.serial, certificate.serial)) {
      await runtime.updateCertificate(path, certificate.pem);
      reapplied.push(`certificate:${certificate.name}`);
    }
  }
  const acl = (await runtime.showAclEntries(layout.allowlist)).map((e) => e.value).sort();
  const want = [...expected.allowlist].sort();
  if (acl.length !== want.length || acl.some((value, i) => value !== want[i])) {
    await runtime.replaceAcl(layout.allowlist, expected.allowlist);
    reapplied.push('allowlist');
  }
  if (expected.trust !== undefined && expected.trustLoaded.ca) {
    // Read back only: HAProxy loaded the bundle from the file, which is written before every change.
    const answer = await runtime.execute(command('show ssl ca-file', paths.trust));
    const count = countCaFileCertificates(answer);
    if (count !== expected.trust.caCount) {
      throw new Error(
        `HAProxy holds ${count} CA certificates in ${paths.trust}, expected ${expected.trust.caCount}`,
      );
    }
  }
  await writeFileAtomic(layout.stateMap, `${READY_KEY} 1\n`, PUBLIC_FILE_MODE);
  await runtime.setMap(layout.stateMap, READY_KEY, '1');
  return reapplied;
}
