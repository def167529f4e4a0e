/**
 * `TaskClient` over the sidecar's admin HTTP API and the gateway's TLS listener: signed nudges
 * (`POST /v1/nudge`), status (`GET /v1/status`) and a real handshake to see what is served.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { z } from 'zod';
import { NotFoundError, TaskUnreachable, ValidationError } from '../errors.ts';
import { normaliseSerial } from '../pki/serial.ts';
import type { FleetTask, NudgeRequest, TaskClient, TaskStatus } from '../ports.ts';
import { NudgeHeaders, signNudge } from '../secrets/nudge.ts';
import { NudgeUnauthorized, TaskProtocolError } from './errors.ts';

/** Client certificate and key (PEM) for a handshake with a listener that requires one. `keyPem` is secret. */
export interface ClientCertificate {
  certificatePem: string;
  keyPem: string;
}

export interface HttpTaskClientOptions {
  /** The nudge HMAC key, or a function that fetches it (called per nudge; cache inside it if you like). */
  nudgeKey: Buffer | (() => Promise<Buffer>);
  /**
   * Upper bound for each whole call (connect, request, the sidecar applying, response) and for
   * each handshake. Default 10 000 ms: a nudge answers only after the task has applied.
   */
  timeoutMs?: number;
  tls?: {
    /** CA bundle (PEM) sent as trust for the handshake; used only to report `authorized`. */
    ca?: string;
    /** Default client certificate for handshakes, for terminate routes that require one. */
    clientCertificate?: ClientCertificate;
  };
  /** Clock for the nudge timestamp (ms), for tests. */
  now?: () => number;
}

/** What {@link HttpTaskClient.servedCertificate} saw: the port's fields plus the trust verdict. */
export interface ServedCertificate {
  /** Lowercase hex, no separators, no leading zeros (`normaliseSerial`). */
  serial: string;
  /** SHA-256 of the DER certificate as Node prints it: uppercase hex pairs joined by colons. */
  fingerprint256: string;
  /** ISO-8601. */
  notAfter: string;
  /** Whether the served chain verified against `tls.ca` (always false without a `ca`). */
  authorized: boolean;
  /** OpenSSL's reason when `authorized` is false. */
  authorizationError?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** A TaskStatus is small; anything much larger is not a sidecar talking. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

/** Node's error codes for "nobody there (now)": each means try again later or elsewhere. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ABORT_ERR',
  'UND_ERR_SOCKET',
]);

const TaskStatusSchema = z.looseObject({
  ready: z.boolean(),
  certificates: z.record(
    z.string(),
    z.looseObject({ versionId: z.string(), serial: z.string(), notAfter: z.string() }),
  ),
  trust: z.looseObject({ versionId: z.string() }).optional(),
  allowlist: z.looseObject({ versionId: z.string(), size: z.number() }).optional(),
  lastApply: z.looseObject({ at: z.string(), ok: z.boolean(), error: z.string().optional() }).optional(),
});

const ErrorBodySchema = z.object({ error: z.object({ name: z.string().optional(), message: z.string() }) });

/** Where a task's admin API is, for messages (`10.0.1.23:9901`, `[fd00::1]:9901`). */
function adminEndpoint(task: FleetTask): string {
  return isIP(task.address) === 6
    ? `[${task.address}]:${task.adminPort}`
    : `${task.address}:${task.adminPort}`;
}

function tlsEndpoint(task: FleetTask): string {
  return isIP(task.tlsAddress) === 6
    ? `[${task.tlsAddress}]:${task.tlsPort}`
    : `${task.tlsAddress}:${task.tlsPort}`;
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { code?: unknown; name?: unknown };
  if (typeof e.code === 'string') return e.code;
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return 'ABORT_ERR';
  return undefined;
}

/**
 * HTTP/TLS adapter for the `TaskClient` port.
 *
 * | Sidecar answer | Result |
 * | --- | --- |
 * | 200 with a TaskStatus | the status |
 * | connection refused/reset, no route, timeout, 5xx (503: not ready) | `TaskUnreachable` (retryable; the workflow rolls such tasks) |
 * | 422 `{error:{name,message}}` | `ValidationError` with the sidecar's message (it rejected the content) |
 * | 401 | `NudgeUnauthorized` (signing key or clock mismatch) |
 * | 404 to a nudge, and the sidecar's status says `ready: false` | `TaskUnreachable` (still starting: no fleet config loaded yet) |
 * | 404 from a ready sidecar | `NotFoundError` (the sidecar does not know the secret) |
 * | anything else | `TaskProtocolError` |
 *
 * Each call uses a fresh connection (`agent: false`): tasks come and go behind the same
 * private addresses, and a pooled keep-alive socket to a replaced task would only fail late.
 *
 * @example
 * const client = new HttpTaskClient({ nudgeKey: () => loadNudgeKey(store), timeoutMs: 5000 });
 * const status = await client.nudge(task, { secretId: 'prod/cert/api', versionId: pendingVersion });
 * const served = await client.servedCertificate(task, 'api.example.internal');
 */
export class HttpTaskClient implements TaskClient {
  readonly #nudgeKey: () => Promise<Buffer>;
  readonly #timeoutMs: number;
  readonly #ca: string | undefined;
  readonly #clientCertificate: ClientCertificate | undefined;
  readonly #now: () => number;

  constructor(options: HttpTaskClientOptions) {
    const key = options.nudgeKey;
    if (Buffer.isBuffer(key)) {
      if (key.length === 0) throw new ValidationError('the nudge key is empty', { path: 'nudgeKey' });
      this.#nudgeKey = async () => key;
    } else if (typeof key === 'function') {
      this.#nudgeKey = key;
    } else {
      throw new ValidationError('nudgeKey must be a Buffer or a function returning one', {
        path: 'nudgeKey',
      });
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new ValidationError(`timeoutMs must be a positive number, got ${timeoutMs}`, {
        path: 'timeoutMs',
      });
    }
    this.#timeoutMs = timeoutMs;
    this.#ca = options.tls?.ca;
    this.#clientCertificate = options.tls?.clientCertificate;
    this.#now = options.now ?? Date.now;
  }

  async nudge(task: FleetTask, request: NudgeRequest): Promise<TaskStatus> {
    if (!request.secretId) throw new ValidationError('secretId is required', { path: 'secretId' });
    const body = JSON.stringify(
      request.versionId
        ? { secretId: request.secretId, versionId: request.versionId }
        : { secretId: request.secretId },
    );
    const key = await this.#nudgeKey();
    const timestamp = this.#now();
    const response = await this.#request(
      task,
      'POST',
      '/v1/nudge',
      body,
      {
        'content-type': 'application/json',
        [NudgeHeaders.timestamp]: String(timestamp),
        [NudgeHeaders.signature]: signNudge(key, timestamp, body),
      },
      request.timeoutMs,
    );
    try {
      return this.#statusFrom(task, 'nudge', response, request.secretId);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      throw await this.#notReadyOr(task, error);
    }
  }

  /**
   * A sidecar that is still starting has loaded no fleet config yet, so it answers 404 for
   * every secret: that task is not ready, not wrong, and must not roll back a whole rotation.
   * Its status tells the two apart: `ready: false` (or no answer) is `TaskUnreachable`, which
   * the machines retry or roll; a ready sidecar that does not serve the secret keeps the 404's
   * `NotFoundError` (its fleet config and the control plane's disagree).
   */
  async #notReadyOr(task: FleetTask, notFound: NotFoundError): Promise<Error> {
    let ready: boolean;
    try {
      ready = (await this.status(task)).ready;
    } catch (error) {
      return new TaskUnreachable(`${notFound.message}; its status then failed too`, { cause: error });
    }
    return ready
      ? notFound
      : new TaskUnreachable(`${notFound.message}; the sidecar is not ready yet`, { cause: notFound });
  }

  async status(task: FleetTask): Promise<TaskStatus> {
    const response = await this.#request(task, 'GET', '/v1/status', undefined, {
      accept: 'application/json',
    });
    return this.#statusFrom(task, 'status', response);
  }

  /**
   * A real TLS handshake with the task's listener for `serverName`; returns the served leaf.
   * `clientCertificate` (or the constructor's default) is presented when the route asks for one.
   * Errors: `TaskUnreachable` (no connection, handshake failure, timeout).
   */
  servedCertificate(
    task: FleetTask,
    serverName: string,
    options: { clientCertificate?: ClientCertificate } = {},
  ): Promise<ServedCertificate> {
    const where = `${tlsEndpoint(task)} (task ${task.taskId}, SNI ${serverName})`;
    const client = options.clientCertificate ?? this.#clientCertificate;
    return new Promise<ServedCertificate>((resolve, reject) => {
      let settled = false;
      let socket: TLSSocket | undefined;
      const finish = (outcome: { ok: ServedCertificate } | { error: Error }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if ('ok' in outcome && socket) {
          // A graceful close: under TLS 1.3 our certificate and Finished are still on their way
          // when `secureConnect` fires, and a listener that requires a client certificate
          // should see a complete handshake (and count it) rather than a reset.
          const closing = socket;
          closing.on('error', () => {}); // the listener may still object (no client cert): we have what we came for
          closing.end();
          setTimeout(() => closing.destroy(), 1000).unref();
        } else {
          socket?.destroy();
        }
        if ('ok' in outcome) resolve(outcome.ok);
        else reject(outcome.error);
      };
      const timer = setTimeout(
        () =>
          finish({
            error: new TaskUnreachable(`TLS handshake with ${where} timed out after ${this.#timeoutMs} ms`),
          }),
        this.#timeoutMs,
      );
      try {
        socket = tlsConnect({
          host: task.tlsAddress,
          port: task.tlsPort,
          // SNI carries names only (RFC 6066); Node warns and sends nothing useful for an IP.
          ...(isIP(serverName) === 0 ? { servername: serverName } : {}),
          // We are reading what the task serves, not deciding whether to trust it: the verify
          // step compares the served serial with the one just issued, and that comparison must
          // also work for a certificate that does not (yet) chain to what this client trusts —
          // a wrong or expired certificate is exactly what it has to be able to report.
          rejectUnauthorized: false,
          ...(this.#ca ? { ca: this.#ca } : {}),
          ...(client ? { cert: client.certificatePem, key: client.keyPem } : {}),
        });
      } catch (error) {
        finish({
          error: new TaskUnreachable(`cannot start a TLS handshake with ${where}`, { cause: error }),
        });
        return;
      }
      socket.once('secureConnect', () => {
        const leaf = socket?.getPeerX509Certificate();
        if (!leaf) {
          finish({ error: new TaskUnreachable(`${where} completed a handshake without a certificate`) });
          return;
        }
        const serial = normaliseSerial(leaf.serialNumber);
        if (serial === undefined) {
          finish({ error: new TaskProtocolError(`${where} served a certificate with an unreadable serial`) });
          return;
        }
        const authorizationError = socket?.authorizationError;
        finish({
          ok: {
            serial,
            fingerprint256: leaf.fingerprint256,
            notAfter: new Date(leaf.validTo).toISOString(),
            authorized: socket?.authorized === true,
            ...(authorizationError ? { authorizationError: String(authorizationError) } : {}),
          },
        });
      });
      socket.once('error', (error) => {
        finish({
          error: new TaskUnreachable(
            `TLS handshake with ${where} failed: ${errorCode(error) ?? error.message}`,
            {
              cause: error,
            },
          ),
        });
      });
      socket.once('close', () => {
        finish({
          error: new TaskUnreachable(`${where} closed the connection before the handshake completed`),
        });
      });
    });
  }

  #request(
    task: FleetTask,
    method: 'GET' | 'POST',
    path: string,
    body: string | undefined,
    headers: Record<string, string>,
    timeoutMs = this.#timeoutMs,
  ): Promise<{ statusCode: number; headers: IncomingHttpHeaders; text: string }> {
    const where = `${adminEndpoint(task)} (task ${task.taskId})`;
    return new Promise((resolve, reject) => {
      const signal = AbortSignal.timeout(timeoutMs);
      // Every transport failure is "cannot talk to this task now"; the code says which.
      const fail = (error: unknown) => {
        const code = errorCode(error);
        const why =
          code === 'ABORT_ERR'
            ? `no answer within ${timeoutMs} ms`
            : code && UNREACHABLE_CODES.has(code)
              ? code
              : String(error);
        reject(new TaskUnreachable(`${method} ${path} to ${where} failed: ${why}`, { cause: error }));
      };
      const req = httpRequest(
        {
          host: task.address,
          port: task.adminPort,
          method,
          path,
          agent: false,
          signal,
          headers: {
            ...headers,
            ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              res.destroy();
              reject(
                new TaskProtocolError(
                  `${method} ${path} to ${where}: response larger than ${MAX_RESPONSE_BYTES} bytes`,
                ),
              );
              return;
            }
            chunks.push(chunk);
          });
          res.once('end', () =>
            resolve({
              statusCode: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.once('error', fail);
        },
      );
      req.once('error', fail);
      req.end(body);
    });
  }

  #statusFrom(
    task: FleetTask,
    what: 'nudge' | 'status',
    response: { statusCode: number; text: string },
    secretId?: string,
  ): TaskStatus {
    const where = `task ${task.taskId} at ${adminEndpoint(task)}`;
    const { statusCode, text } = response;
    if (statusCode === 200) {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new TaskProtocolError(`${where} answered the ${what} with a body that is not JSON`, {
          statusCode,
        });
      }
      const parsed = TaskStatusSchema.safeParse(json);
      if (!parsed.success) {
        throw new TaskProtocolError(
          `${where} answered the ${what} with something that is not a TaskStatus: ${parsed.error.issues[0]?.message}`,
          { statusCode },
        );
      }
      return parsed.data as TaskStatus;
    }
    const sidecarError = readErrorBody(text);
    const detail = sidecarError
      ? `: ${sidecarError.name ? `${sidecarError.name}: ` : ''}${sidecarError.message}`
      : '';
    if (statusCode === 422) {
      throw new ValidationError(
        `${where} rejected ${secretId ? `secret '${secretId}'` : 'the content'}${detail || ' (no reason given)'}`,
      );
    }
    if (statusCode === 401) {
      throw new NudgeUnauthorized(
        `${where} refused the nudge signature (401)${detail}: the control plane signs with a different nudge key ` +
          'than the task verifies with, or the clocks differ by more than the nudge window',
      );
    }
    if (statusCode === 404) throw new NotFoundError(`${where} answered the ${what} with 404${detail}`);
    if (statusCode >= 500) {
      throw new TaskUnreachable(`${where} answered the ${what} with ${statusCode}${detail}`);
    }
    throw new TaskProtocolError(`${where} answered the ${what} with HTTP ${statusCode}${detail}`, {
      statusCode,
    });
  }
}

function readErrorBody(text: string): { name?: string | undefined; message: string } | undefined {
  try {
    const parsed = ErrorBodySchema.safeParse(JSON.parse(text));
    if (!parsed.success) return undefined;
    // The sidecar's message names the check that failed; cut it so a log line stays a line.
    return { name: parsed.data.error.name, message: parsed.data.error.message.slice(0, 500) };
  } catch {
    return undefined;
  }
}
