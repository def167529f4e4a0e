/**
 * The control plane's `TaskClient` for a fleet whose TLS listener expects PROXY protocol from its
 * trusted peers (the NLB). A verification handshake from a trusted address without a header
 * would be read as a malformed header, and one from elsewhere is refused as an untrusted peer;
 * so the handshake goes out the way the NLB's own health checks do: a PROXY v2 `LOCAL` header
 * first (no client address, no allowlist entry needed, not logged), then a real TLS handshake.
 * Nudges and status go to the sidecar unchanged through {@link HttpTaskClient}.
 */
import { connect as netConnect } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { TaskUnreachable } from '../errors.ts';
import { encodeProxyV2 } from '../net/proxy-protocol.ts';
import { normaliseSerial } from '../pki/serial.ts';
import type { FleetTask, NudgeRequest, TaskClient, TaskStatus } from '../ports.ts';
import type { ClientCertificate, HttpTaskClient } from '../task-client/http-task-client.ts';

export interface ProxyLocalTaskClientOptions {
  /** Nudges and status. */
  http: HttpTaskClient;
  /** Send the PROXY v2 `LOCAL` header before the handshake. Default true. */
  proxyLocal?: boolean;
  /** Presented when a terminate route asks for a client certificate. `keyPem` is secret. */
  clientCertificate?: ClientCertificate;
  /** Default 5000 ms. */
  timeoutMs?: number;
}

/** `TaskClient` whose verification handshakes arrive like NLB health checks. */
export class ProxyLocalTaskClient implements TaskClient {
  readonly #http: HttpTaskClient;
  readonly #proxyLocal: boolean;
  readonly #client: ClientCertificate | undefined;
  readonly #timeoutMs: number;

  constructor(options: ProxyLocalTaskClientOptions) {
    this.#http = options.http;
    this.#proxyLocal = options.proxyLocal ?? true;
    this.#client = options.clientCertificate;
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  nudge(task: FleetTask, request: NudgeRequest): Promise<TaskStatus> {
    return this.#http.nudge(task, request);
  }

  status(task: FleetTask): Promise<TaskStatus> {
    return this.#http.status(task);
  }

  servedCertificate(
    task: FleetTask,
    serverName: string,
  ): Promise<{ serial: string; fingerprint256: string; notAfter: string }> {
    if (!this.#proxyLocal) return this.#http.servedCertificate(task, serverName);
    const where = `${task.tlsAddress}:${task.tlsPort} (task ${task.taskId}, SNI ${serverName})`;
    return new Promise((resolve, reject) => {
      let settled = false;
      let tlsSocket: TLSSocket | undefined;
      const raw = netConnect({ host: task.tlsAddress, port: task.tlsPort });
      const finish = (
        error: Error | undefined,
        value?: { serial: string; fingerprint256: string; notAfter: string },
      ) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (value !== undefined && tlsSocket !== undefined) {
          // Close gracefully, so a listener requiring a client certificate sees a whole handshake.
          const closing = tlsSocket;
          closing.on('error', () => {});
          closing.end();
          setTimeout(() => closing.destroy(), 1000).unref();
        } else {
          tlsSocket?.destroy();
          raw.destroy();
        }
        if (error !== undefined) reject(error);
        else resolve(value!);
      };
      const timer = setTimeout(
        () =>
          finish(new TaskUnreachable(`TLS handshake with ${where} timed out after ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      raw.once('error', (error) =>
        finish(new TaskUnreachable(`TLS handshake with ${where} failed: ${error.message}`, { cause: error })),
      );
      raw.write(encodeProxyV2({ command: 'local' }));
      tlsSocket = tlsConnect({
        socket: raw,
        servername: serverName,
        // We read what is served, we do not decide whether to trust it (see HttpTaskClient).
        rejectUnauthorized: false,
        ...(this.#client === undefined
          ? {}
          : { cert: this.#client.certificatePem, key: this.#client.keyPem }),
      });
      tlsSocket.once('secureConnect', () => {
        const leaf = tlsSocket?.getPeerX509Certificate();
        const serial = leaf === undefined ? undefined : normaliseSerial(leaf.serialNumber);
        if (leaf === undefined || serial === undefined) {
          finish(new TaskUnreachable(`${where} completed a handshake without a readable certificate`));
          return;
        }
        finish(undefined, {
          serial,
          fingerprint256: leaf.fingerprint256,
          notAfter: new Date(leaf.validTo).toISOString(),
        });
      });
      tlsSocket.once('error', (error) =>
        finish(new TaskUnreachable(`TLS handshake with ${where} failed: ${error.message}`, { cause: error })),
      );
      tlsSocket.once('close', () =>
        finish(new TaskUnreachable(`${where} closed before the handshake completed`)),
      );
    });
  }
}
