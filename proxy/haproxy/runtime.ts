/**
 * Typed client for HAProxy's runtime API: the worker stats socket (`level admin`) and the
 * master CLI socket (`-S`). Parsing and encoding live in `runtime-protocol.ts` and
 * `runtime-parsers.ts` (pure); sockets in `runtime-transport.ts`.
 *
 * Runtime-API commands used and the first HAProxy release that has each (from the upstream
 * changelog shipped with Debian's 2.6.12; every command was exercised against 2.6.12 itself):
 *
 * | command                                                    | needs | socket |
 * | ---------------------------------------------------------- | ----- | ------ |
 * | `show info`, `show sess`, `show sess <id>`                 | ≤ 1.4 | worker |
 * | `shutdown session <id>`                                    | ≤ 1.7 | worker |
 * | `show acl <ref>`, `add acl`, `set map`                     | ≤ 1.5 | worker |
 * | `prepare acl`, `commit\|clear acl @<ver>`, `@<ver>` in `add`/`show` | 2.4 | worker |
 * | CLI payloads (`<<`)                                        | 1.9   | worker |
 * | `set ssl cert <f> <<`, `commit ssl cert`, `abort ssl cert` | 2.1   | worker |
 * | `show ssl cert [<f>\|*<f>]` with details                   | 2.2   | worker |
 * | `show proc` (with reload counts), `reload`                 | 1.9   | master |
 *
 * These are the calls the sidecar makes; the client has no others. Trust bundles and CRLs are
 * not changed with `commit ssl ca-file`/`crl-file` but by a seamless reload (see
 * `caFileCommitSafe` in `capabilities.ts`), and routes by a reload too, so neither those
 * commands nor map replacement are here. `execute` sends any other encoded command.
 *
 * `add acl` takes no payload in 2.6 (only `add map` does). A `level user` socket may change
 * ACLs and maps in 2.6 (sessions and servers need `operator`/`admin`): keep every stats socket
 * `level admin` and mode 0600, as the config renderer does.
 *
 * Batching (`executeBatch`: `;`-lines under the buffer, see `chunkBatch` in runtime-protocol.ts
 * for why) is how 10 000 `add acl @<ver>` take ~50–130 ms instead of ~8.5 s.
 */
import { ServedVersionMismatch, ValidationError } from '../../lib/errors.ts';
import { sameSerial } from '../../lib/pki/serial.ts';
import { RuntimeApiError, RuntimeProtocolError, RuntimeTimeout, RuntimeUnavailable } from './errors.ts';
import type { GatewayLayout } from './layout.ts';
import {
  type AclEntry,
  type HaproxyInfo,
  type ProcessList,
  parseAclEntries,
  parsePreparedVersion,
  parseReloadAnswer,
  parseSessionDetail,
  parseShowInfo,
  parseShowProc,
  parseShowSessions,
  parseSslCertificate,
  type ReloadAnswer,
  type SessionInfo,
  type SslCertificateInfo,
} from './runtime-parsers.ts';
import {
  BUFFER_RESERVE,
  chunkBatch,
  command,
  type EncodedCommand,
  encodeArgument,
  encodeReference,
  encodeVersion,
  expectEmpty,
  expectMatch,
  failure,
  leafOf,
  rejectErrorText,
  renderBatch,
  renderRequest,
  singleAnswer,
  splitAnswers,
  withPayload,
} from './runtime-protocol.ts';
import { type RuntimeTransport, unixSocketTransport } from './runtime-transport.ts';

export type {
  AclEntry,
  HaproxyInfo,
  ProcessEntry,
  ProcessList,
  ReloadAnswer,
  SessionDetail,
  SessionInfo,
  SslCertificateInfo,
} from './runtime-parsers.ts';
export { chunkBatch, leafOf } from './runtime-protocol.ts';
export type { RuntimeTransport } from './runtime-transport.ts';

/** An ACL or map: its file name as loaded, or its numeric id. */
export type PatternRef = string | number;

export interface RuntimeClientOptions {
  /** Worker stats socket (`stats socket … level admin`). */
  adminSocket: string;
  /** Master CLI socket (`-S`); needed for `reload`, `showProc`, `waitForReload`. */
  masterSocket?: string;
  /** Deadline for each connection (one command, or one chunk of a batch). Default 5000 ms. */
  timeoutMs?: number;
  /** Commands per connection in batched mode. Default 1000. */
  batchSize?: number;
  /** HAProxy's `tune.bufsize`: a command with its payload must fit in it. Default 16384. */
  bufferSize?: number;
  /** Largest answer accepted. Default 64 MiB. */
  maxAnswerBytes?: number;
  transport?: RuntimeTransport;
}

/** What `updateCertificate` left serving. */
export interface CertificateUpdate {
  serial: string;
  notAfter: Date;
  info: SslCertificateInfo;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// Serials are compared as lib/pki reads them (HAProxy prints uppercase hex without leading zeros,
// node:crypto with them); re-exported for the runtime's callers.
export { sameSerial };

/**
 * Client for one HAProxy instance's runtime API.
 *
 * @example
 * const rt = runtimeClientFor(gatewayLayout('/run/portcullis'));
 * await rt.replaceAcl(layout.allowlist, ['10.0.0.0/8', 'fd00::/8']);
 * await rt.updateCertificate('/run/portcullis/certs/api.pem', pemBundle);
 */
export class HaproxyRuntime {
  readonly adminSocket: string;
  readonly masterSocket: string | undefined;
  readonly timeoutMs: number;
  readonly batchSize: number;
  readonly bufferSize: number;
  readonly #maxAnswerBytes: number;
  readonly #transport: RuntimeTransport;
  /** Per-object queues: two transactions on the same ACL/map/certificate never interleave here. */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(options: RuntimeClientOptions) {
    this.adminSocket = options.adminSocket;
    this.masterSocket = options.masterSocket;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.batchSize = options.batchSize ?? 1000;
    this.bufferSize = options.bufferSize ?? 16384;
    this.#maxAnswerBytes = options.maxAnswerBytes ?? 64 * 1024 * 1024;
    this.#transport = options.transport ?? unixSocketTransport;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) {
      throw new ValidationError('batchSize must be a positive integer', { path: 'batchSize' });
    }
  }

  // ---- transport -------------------------------------------------------------------------

  async #send(socket: string, request: string): Promise<string> {
    return this.#transport(socket, request, {
      timeoutMs: this.timeoutMs,
      maxAnswerBytes: this.#maxAnswerBytes,
      // The worker closes by itself after a non-interactive line, and stops executing the
      // rest of a line once it sees our shutdown; the master waits for the shutdown.
      halfClose: socket === this.masterSocket,
    });
  }

  /** Runs one command on the worker socket and returns its answer (final empty line removed). */
  async execute(cmd: EncodedCommand): Promise<string> {
    return this.#executeOn(this.adminSocket, cmd);
  }

  async #executeOn(socket: string, cmd: EncodedCommand): Promise<string> {
    const request = renderRequest(cmd);
    if (cmd.payload !== undefined && Buffer.byteLength(request) >= this.bufferSize) {
      // Beyond tune.bufsize HAProxy closes the connection without a word; say why instead.
      throw new ValidationError(
        `'${cmd.verb}' with its payload is ${Buffer.byteLength(request)} bytes, HAProxy's buffer is ${this.bufferSize}`,
        { path: 'payload' },
      );
    }
    const raw = await this.#send(socket, request);
    if (raw === '')
      throw new RuntimeUnavailable(socket, `closed the connection without answering '${cmd.verb}'`);
    return singleAnswer(cmd.verb, raw);
  }

  /**
   * Runs payload-free commands on the worker socket, `batchSize` per connection as one
   * `;`-separated line, and returns one answer per command in order. Every command runs even
   * when an earlier one fails: check the answers.
   */
  async executeBatch(cmds: readonly EncodedCommand[]): Promise<string[]> {
    const answers: string[] = [];
    for (const chunk of chunkBatch(cmds, this.batchSize, this.bufferSize - BUFFER_RESERVE)) {
      const raw = await this.#send(this.adminSocket, renderBatch(chunk));
      if (raw === '')
        throw new RuntimeUnavailable(this.adminSocket, 'closed the connection without answering');
      const got = splitAnswers(raw);
      if (got.length !== chunk.length) {
        throw new RuntimeProtocolError(
          chunk[0]!.verb,
          `answered ${got.length} of ${chunk.length} batched commands`,
        );
      }
      answers.push(...got);
    }
    return answers;
  }

  async #locked<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const run = previous.then(work, work);
    const tail = run.catch(() => undefined);
    this.#locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }

  // ---- info ------------------------------------------------------------------------------

  async showInfo(): Promise<HaproxyInfo> {
    const answer = await this.execute(command('show info'));
    rejectErrorText('show info', answer);
    return parseShowInfo(answer);
  }

  // ---- ACLs ------------------------------------------------------------------------------

  /** The entries of one ACL (current version, or `version` when given). */
  async showAclEntries(ref: PatternRef, options: { version?: number } = {}): Promise<AclEntry[]> {
    const args = options.version === undefined ? [] : [encodeVersion(options.version)];
    const answer = await this.execute(command('show acl', ...args, encodeReference(ref, 'acl')));
    rejectErrorText('show acl', answer);
    return parseAclEntries(answer);
  }

  /** Allocates a new version for an atomic replacement; returns its number. */
  async prepareAcl(ref: PatternRef): Promise<number> {
    const answer = await this.execute(command('prepare acl', encodeReference(ref, 'acl')));
    rejectErrorText('prepare acl', answer);
    return parsePreparedVersion('prepare acl', answer);
  }

  async commitAcl(ref: PatternRef, version: number): Promise<void> {
    const cmd = command('commit acl', encodeVersion(version), encodeReference(ref, 'acl'));
    expectEmpty('commit acl', await this.execute(cmd));
  }

  /** Clears the current version, or a prepared one (frees an abandoned transaction's entries). */
  async clearAcl(ref: PatternRef, options: { version?: number } = {}): Promise<void> {
    const args = options.version === undefined ? [] : [encodeVersion(options.version)];
    expectEmpty('clear acl', await this.execute(command('clear acl', ...args, encodeReference(ref, 'acl'))));
  }

  /**
   * Atomically replaces an ACL's contents: `prepare acl` → batched `add acl @<ver>` →
   * `commit acl @<ver>`. Readers see the old entries until the commit and the new ones after
   * it, never a mix. On any failure nothing is committed (the prepared version is cleared,
   * best effort) and the error is thrown.
   */
  async replaceAcl(ref: PatternRef, entries: readonly string[]): Promise<{ version: number; count: number }> {
    const encodedRef = encodeReference(ref, 'acl');
    // Validate everything before touching HAProxy: a bad entry must not leave a half-built version.
    const encodedEntries = entries.map((e, i) => encodeArgument(e, 'value', `entries.${i}`));
    return this.#locked(`acl:${ref}`, async () => {
      const version = await this.prepareAcl(ref);
      try {
        const at = encodeVersion(version);
        const answers = await this.executeBatch(
          encodedEntries.map((e) => command('add acl', at, encodedRef, e)),
        );
        const bad = answers.findIndex((a) => a !== '');
        if (bad >= 0) throw failure('add acl', answers[bad]!);
        await this.commitAcl(ref, version);
        return { version, count: entries.length };
      } catch (error) {
        await this.clearAcl(ref, { version }).catch(() => undefined);
        throw error;
      }
    });
  }

  // ---- the state map ---------------------------------------------------------------------

  /** Changes the value of an existing key (`RuntimeApiError` reason `not-found` when absent). */
  async setMap(ref: PatternRef, key: string, value: string): Promise<void> {
    const cmd = command(
      'set map',
      encodeReference(ref, 'map'),
      encodeArgument(key, 'key', 'key'),
      encodeArgument(value, 'value', 'value'),
    );
    expectEmpty('set map', await this.execute(cmd));
  }

  // ---- TLS: certificates -----------------------------------------------------------------

  /** Details of a loaded certificate, or of its uncommitted transaction with `transaction: true`. */
  async showSslCert(path: string, options: { transaction?: boolean } = {}): Promise<SslCertificateInfo> {
    const name = encodeArgument(path, 'identifier', 'path');
    const answer = await this.execute(command('show ssl cert', options.transaction ? `*${name}` : name));
    if (!answer.startsWith('Filename:')) throw failure('show ssl cert', answer);
    return parseSslCertificate(answer);
  }

  /** Opens (or updates) a transaction with a new PEM bundle: certificate chain and private key. */
  async setSslCert(path: string, pem: string): Promise<void> {
    const cmd = withPayload(command('set ssl cert', encodeArgument(path, 'identifier', 'path')), pem);
    expectMatch('set ssl cert', await this.execute(cmd), /^Transaction (created|updated) for certificate /);
  }

  async commitSslCert(path: string): Promise<void> {
    const answer = await this.execute(command('commit ssl cert', encodeArgument(path, 'identifier', 'path')));
    expectMatch('commit ssl cert', answer, /\nSuccess!$/);
  }

  /** Drops an open transaction; resolves `false` when there was none (idempotent). */
  async abortSslCert(path: string): Promise<boolean> {
    return this.#abort('abort ssl cert', path);
  }

  /**
   * Replaces the certificate served from `path` as one transaction: `set ssl cert` → `show ssl
   * cert *<path>` (the uncommitted serial must be the PEM's leaf serial) → `commit ssl cert` →
   * read back. On any failure the transaction is aborted and the previous certificate keeps
   * serving. Errors: `ValidationError` (no parseable leaf, payload too large),
   * `RuntimeApiError` (HAProxy refused the bundle, e.g. key mismatch), `ServedVersionMismatch`.
   */
  async updateCertificate(path: string, pem: string): Promise<CertificateUpdate> {
    const expected = leafOf(pem).serialNumber;
    return this.#locked(`cert:${path}`, async () => {
      try {
        await this.setSslCert(path, pem);
        const staged = await this.showSslCert(path, { transaction: true });
        if (!sameSerial(staged.serial, expected)) {
          throw new ServedVersionMismatch(
            `staged certificate for ${path} has serial ${staged.serial}, expected ${expected}`,
          );
        }
        await this.commitSslCert(path);
      } catch (error) {
        await this.abortSslCert(path).catch(() => undefined);
        throw error;
      }
      const info = await this.showSslCert(path);
      if (!sameSerial(info.serial, expected)) {
        throw new ServedVersionMismatch(
          `${path} serves serial ${info.serial} after commit, expected ${expected}`,
        );
      }
      return { serial: info.serial, notAfter: info.notAfter, info };
    });
  }

  async #abort(verb: string, path: string): Promise<boolean> {
    const answer = await this.execute(command(verb, encodeArgument(path, 'identifier', 'path')));
    if (/^No ongoing transaction/.test(answer)) return false;
    expectMatch(verb, answer, /^Transaction aborted for /);
    return true;
  }

  // ---- sessions ---------------------------------------------------------------------------

  /** Streams in progress. HAProxy's own CLI streams (`fe=GLOBAL`, unix) are left out. */
  async showSessions(): Promise<SessionInfo[]> {
    const answer = await this.execute(command('show sess'));
    rejectErrorText('show sess', answer);
    return parseShowSessions(answer).filter((s) => s.frontend !== 'GLOBAL');
  }

  /** Closes one stream; `RuntimeApiError` reason `not-found` when it already ended. */
  async shutdownSession(id: string): Promise<void> {
    if (!/^0x[0-9a-f]{1,16}$/i.test(id)) {
      throw new ValidationError('session id must be a pointer like 0x55e0…', { path: 'id' });
    }
    expectEmpty('shutdown session', await this.execute(command('shutdown session', id)));
  }

  /**
   * Closes every stream `predicate` selects; streams that ended meanwhile are not an error.
   * Session ids are pointers HAProxy reuses as soon as a stream ends, so each one is looked up
   * again (`show sess <id>`: same frontend and source) right before `shutdown session`; this
   * narrows, but cannot close, the window in which a reused id names another stream.
   * Returns how many it closed.
   */
  async cutSessions(predicate: (session: SessionInfo) => boolean): Promise<number> {
    let cut = 0;
    for (const session of (await this.showSessions()).filter(predicate)) {
      const answer = await this.execute(command('show sess', session.id));
      rejectErrorText('show sess', answer);
      const now = parseSessionDetail(answer);
      if (
        !now ||
        now.frontend !== session.frontend ||
        now.source?.address !== session.source?.address ||
        now.source?.port !== session.source?.port
      ) {
        continue;
      }
      try {
        await this.shutdownSession(session.id);
        cut++;
      } catch (error) {
        if (!(error instanceof RuntimeApiError && error.reason === 'not-found')) throw error;
      }
    }
    return cut;
  }

  // ---- master CLI ------------------------------------------------------------------------

  #master(): string {
    if (!this.masterSocket)
      throw new ValidationError('no master socket configured', { path: 'masterSocket' });
    return this.masterSocket;
  }

  /** The master and its workers (current, old, programs). */
  async showProc(): Promise<ProcessList> {
    const answer = await this.#executeOn(this.#master(), command('show proc'));
    rejectErrorText('show proc', answer);
    return parseShowProc(answer);
  }

  /**
   * Asks the master to reload (re-read the configuration, start new workers, let old ones
   * finish their connections). 2.7+ waits for the new worker and answers `Success=1|0` with the
   * startup log: `Success=0` throws `RuntimeApiError` (reason `reload-failed`) carrying the
   * alerts. 2.6 closes the connection without answering (`pending`). Either way
   * `waitForReload` then tells when the new worker serves.
   */
  async reload(): Promise<ReloadAnswer> {
    const socket = this.#master();
    return parseReloadAnswer(await this.#send(socket, renderRequest(command('reload'))));
  }

  /**
   * Waits until a worker that was not in `previous` serves. With a full `ProcessList` it also
   * fails fast (`RuntimeApiError` reason `reload-failed`) when the master counts a failed reload.
   * While the master re-executes its socket may refuse connections; that is retried until the
   * deadline (`RuntimeTimeout`).
   */
  async waitForReload(
    previous: ProcessList | readonly number[],
    options: { timeoutMs?: number; intervalMs?: number } = {},
  ): Promise<ProcessList> {
    // 3.2 lists the serving worker under old workers after a failed reload: neither list is new.
    const oldPids = new Set(
      Array.isArray(previous)
        ? previous
        : [...(previous as ProcessList).workers, ...(previous as ProcessList).oldWorkers].map((w) => w.pid),
    );
    const failedBefore = Array.isArray(previous) ? undefined : (previous as ProcessList).master.failedReloads;
    const timeoutMs = options.timeoutMs ?? 10_000;
    const intervalMs = options.intervalMs ?? 100;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        const now = await this.showProc();
        if (failedBefore !== undefined && now.master.failedReloads > failedBefore) {
          throw new RuntimeApiError(
            'reload',
            `master reports ${now.master.failedReloads} failed reloads`,
            'reload-failed',
          );
        }
        if (now.workers.some((w) => !oldPids.has(w.pid))) return now;
      } catch (error) {
        if (!(error instanceof RuntimeUnavailable) || error instanceof RuntimeTimeout) throw error;
      }
      await sleep(intervalMs);
    }
    throw new RuntimeTimeout(this.#master(), timeoutMs);
  }
}

/** A client for the sockets of a gateway layout. */
export function runtimeClientFor(
  layout: Pick<GatewayLayout, 'adminSocket' | 'masterSocket'>,
  options: Omit<RuntimeClientOptions, 'adminSocket' | 'masterSocket'> = {},
): HaproxyRuntime {
  return new HaproxyRuntime({
    ...options,
    adminSocket: layout.adminSocket,
    masterSocket: layout.masterSocket,
  });
}
